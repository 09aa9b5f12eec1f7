import keras
import numpy as np
import pytest

from kerasrecon.kspace import fft2c_np
from kerasrecon.masks import make_mask
from kerasrecon.models.discriminator import build_discriminator
from kerasrecon.models.generator import DataConsistency, build_generator
from tests.conftest import random_complex


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def expected_generator_params(blocks, f=64):
    head = conv(3, 2, f) + f  # conv + PReLU (one slope per channel)
    # Convs followed by BN have no bias.
    block = 2 * conv(3, f, f, bias=False) + 2 * 4 * f + f  # two convs, two BN (γ, β, mean, var), one PReLU
    tail = conv(3, f, f, bias=False) + 4 * f + conv(3, f, 2)
    return head + blocks * block + tail


def expected_discriminator_params(patch=96):
    filters = [64, 64, 128, 128, 256, 256, 512, 512]
    total, cin = 0, 1
    for i, f in enumerate(filters):
        total += conv(3, cin, f, bias=(i == 0)) + (4 * f if i > 0 else 0)
        cin = f
    side = patch // 16  # four stride-2 convs
    return total + (side * side * 512 * 1024 + 1024) + (1024 + 1)


@pytest.mark.slow
def test_full_size_parameter_counts():
    g = build_generator()
    assert g.count_params() == expected_generator_params(16) == 1_228_418
    d = build_discriminator(96)
    assert d.count_params() == expected_discriminator_params(96) == 23_566_209
    convs = [lay for lay in d.layers if isinstance(lay, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.strides[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert not any(isinstance(lay, keras.layers.MaxPooling2D) for lay in d.layers)
    assert sum(isinstance(lay, keras.layers.Conv2D) for lay in g.layers) == 2 + 2 * 16 + 1


def test_generator_any_size_and_dc_exact(rng):
    g = build_generator(blocks=2, filters=8)
    for shape in [(24, 20), (17, 33)]:
        kspace = random_complex(rng, (2, *shape))
        mask = make_mask("poisson", 3, shape, 0).array
        masked = kspace * mask
        zf = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(masked, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
        inputs = {
            "zero_filled": np.stack([zf.real, zf.imag], -1).astype(np.float32),
            "masked_kspace": np.stack([masked.real, masked.imag], -1).astype(np.float32),
            "mask": np.broadcast_to(mask, (2, *shape)).astype(np.float32),
        }
        out = keras.ops.convert_to_numpy(g(inputs))
        assert out.shape == (2, *shape, 2)
        k_out = fft2c_np((out[..., 0] + 1j * out[..., 1]).astype(np.complex64))
        m = mask.astype(bool)
        np.testing.assert_allclose(k_out[:, m], masked[:, m], atol=1e-4)


def test_serialisation_round_trip(tmp_path, rng):
    g = build_generator(blocks=1, filters=4, noise_lambda=2.0)
    path = tmp_path / "g.keras"
    g.save(path)
    g2 = keras.saving.load_model(path)
    x = {
        "zero_filled": rng.standard_normal((1, 8, 8, 2)).astype(np.float32),
        "masked_kspace": rng.standard_normal((1, 8, 8, 2)).astype(np.float32),
        "mask": (rng.random((1, 8, 8)) > 0.5).astype(np.float32),
    }
    np.testing.assert_allclose(keras.ops.convert_to_numpy(g(x)), keras.ops.convert_to_numpy(g2(x)), atol=1e-6)
    layer = DataConsistency.from_config(DataConsistency(noise_lambda=2.0).get_config())
    assert layer.noise_lambda == 2.0
    # Every layer carries the documented name (checkpoints and the export refer to them), and the
    # reloaded model keeps them.
    expected = (
        ["zero_filled", "masked_kspace", "mask", "g_conv_in", "g_prelu_in"]
        + [f"g_block01_{n}" for n in ("conv1", "bn1", "prelu", "conv2", "bn2", "add")]
        + ["g_conv_mid", "g_bn_mid", "g_long_skip", "g_conv_out", "g_residual", "g_data_consistency"]
    )
    assert sorted(lay.name for lay in g.layers) == sorted(expected)
    assert [lay.name for lay in g2.layers] == [lay.name for lay in g.layers]


def test_discriminator_output_is_the_last_dense_layers_logit(rng):
    """D returns the logit z of its last Dense layer (no sigmoid in the model; the losses apply it)."""
    d = build_discriminator(32)
    x = rng.random((3, 32, 32, 1)).astype(np.float32)
    z = keras.ops.convert_to_numpy(d(x))
    hidden = keras.ops.convert_to_numpy(keras.Model(d.input, d.get_layer("d_lrelu_dense").output)(x))
    kernel, bias = d.get_layer("d_logit").get_weights()
    assert z.shape == (3, 1) and d.get_layer("d_logit").activation.__name__ == "linear"
    np.testing.assert_allclose(z, hidden @ kernel + bias, rtol=1e-4, atol=1e-5)


def test_cascades_params_names_and_data_consistency(rng):
    g = build_generator(blocks=1, filters=8, cascades=3)
    assert g.count_params() == 3 * expected_generator_params(1, 8)
    dc = [lay.name for lay in g.layers if isinstance(lay, DataConsistency)]
    assert dc == ["g1_data_consistency", "g2_data_consistency", "g3_data_consistency"]
    assert build_generator(blocks=1, filters=8).get_layer("g_data_consistency")  # K = 1 keeps the thesis' names
    # Random (non-zero) output convs: every stage changes the image, yet the measured samples of the
    # output equal the measured k-space (hard DC at the end), checked with NumPy's FFT.
    for lay in g.layers:
        if lay.name.endswith("conv_out"):
            lay.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.1 for w in lay.get_weights()])
    img = random_complex(rng, (2, 16, 16))
    mask = make_mask("poisson", 4, (16, 16), 0).array
    k = fft2c_np(img) * mask
    zf = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    ch = lambda z: np.stack([z.real, z.imag], -1).astype("float32")  # noqa: E731
    out = np.asarray(g({"zero_filled": ch(zf), "masked_kspace": ch(k), "mask": np.broadcast_to(mask, (2, 16, 16))}))
    out_k = fft2c_np(out[..., 0] + 1j * out[..., 1])
    np.testing.assert_allclose(out_k[:, mask > 0], k[:, mask > 0], atol=1e-4)
    assert np.abs(out_k[:, mask == 0] - k[:, mask == 0]).max() > 1e-2


def test_learned_dc_step_against_a_numpy_reference(rng):
    """``DataConsistency(learned=True)``: ``k − η M ⊙ (k − y)`` with a trainable scalar η per cascade,
    starting at 1 (hard DC); checked with the explicit-DFT reference at η = 1 and η = 0.3, in single-
    and multi-coil form, and the weight survives serialisation."""
    from tests.conftest import ref_fft2c, ref_ifft2c

    g = build_generator(blocks=1, filters=4, cascades=2, learned_dc=True)
    etas = [w for w in g.trainable_weights if w.path.endswith("/eta")]
    assert [w.path for w in etas] == ["g1_data_consistency/eta", "g2_data_consistency/eta"]
    assert g.count_params() == 2 * expected_generator_params(1, 4) + 2
    ch = lambda z: np.stack([z.real, z.imag], -1).astype("float32")  # noqa: E731
    x, y = random_complex(rng, (2, 12, 10)), random_complex(rng, (2, 12, 10))
    mask = (rng.random((2, 12, 10)) > 0.6).astype(np.float32)
    layer = DataConsistency(learned=True)
    maps = random_complex(rng, (2, 3, 12, 10))
    coil_y = random_complex(rng, (2, 3, 12, 10)) * mask[:, None]
    for eta in (1.0, 0.3):
        layer.eta.assign(eta)
        out = np.asarray(layer([ch(x), ch(y * mask), mask]))
        k = ref_fft2c(x)
        expected = ref_ifft2c(k - eta * mask * (k - y * mask))
        np.testing.assert_allclose(out[..., 0] + 1j * out[..., 1], expected, atol=1e-5)
        out = np.asarray(layer([ch(x), ch(coil_y), mask, ch(maps)]))
        kc = ref_fft2c(maps * x[:, None])
        expected = np.sum(np.conj(maps) * ref_ifft2c(kc - eta * mask[:, None] * (kc - coil_y)), axis=1)
        np.testing.assert_allclose(out[..., 0] + 1j * out[..., 1], expected, atol=1e-4)
    clone = DataConsistency.from_config(layer.get_config())
    assert clone.learned and clone.eta is not None


def expected_unet_params(f, levels):
    """Hand count of ``unet(f, levels)``: per level two [Conv3×3 (no bias), BN (γ, β, mean, var), PReLU]
    down and up (the up level's first conv sees the upsampled and the skip channels), the bottom's
    two, and the output conv 3×3·2 with bias."""

    def double(cin, c):
        return conv(3, cin, c, bias=False) + conv(3, c, c, bias=False) + 2 * (4 * c + c)

    total, cin = 0, 2
    for level in range(levels):
        total += double(cin, f * 2**level)
        cin = f * 2**level
    total += double(cin, f * 2**levels)
    for level in reversed(range(levels)):
        total += double(f * 2 ** (level + 1) + f * 2**level, f * 2**level)
    return total + conv(3, f, 2)


def test_unet_regulariser_params_shared_weights_and_any_size(rng):
    """``network="unet"``: parameters as counted by hand, one nested U-Net per cascade or one for all
    (``share_weights``, also for the residual network), and on odd sizes (pooled to ⌈H/2⌉, cropped
    back) the output keeps its shape and the measured samples (NumPy FFT); untrained, each stage is
    the identity, so the generator returns the DC of its input."""
    g = build_generator(filters=4, cascades=2, network="unet", levels=2)
    assert g.count_params() == 2 * expected_unet_params(4, 2)
    assert [lay.name for lay in g.layers if isinstance(lay, keras.Model)] == ["g1_unet", "g2_unet"]
    shared = build_generator(filters=4, cascades=3, network="unet", levels=2, share_weights=True)
    assert shared.count_params() == expected_unet_params(4, 2)
    assert [lay.name for lay in shared.layers if isinstance(lay, keras.Model)] == ["g_unet"]
    dc = [lay.name for lay in shared.layers if isinstance(lay, DataConsistency)]
    assert dc == ["g1_data_consistency", "g2_data_consistency", "g3_data_consistency"]
    resnet = build_generator(blocks=1, filters=8, cascades=3, share_weights=True)
    assert resnet.count_params() == expected_generator_params(1, 8)
    ch = lambda z: np.stack([z.real, z.imag], -1).astype("float32")  # noqa: E731
    img = random_complex(rng, (2, 13, 11))
    mask = make_mask("poisson", 4, (13, 11), 0).array
    k = fft2c_np(img) * mask
    zf = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    inputs = {"zero_filled": ch(zf), "masked_kspace": ch(k), "mask": np.broadcast_to(mask, (2, 13, 11))}
    np.testing.assert_allclose(np.asarray(g(inputs)), ch(zf), atol=1e-5)  # identity stages, DC of a consistent image
    for lay in g.layers:
        if isinstance(lay, keras.Model):
            out_conv = lay.get_layer(f"{lay.name}_conv_out")
            out_conv.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.1 for w in out_conv.get_weights()])
    out = np.asarray(g(inputs))
    assert out.shape == (2, 13, 11, 2)
    out_k = fft2c_np(out[..., 0] + 1j * out[..., 1])
    np.testing.assert_allclose(out_k[:, mask > 0], k[:, mask > 0], atol=1e-4)
    assert np.abs(out_k[:, mask == 0] - k[:, mask == 0]).max() > 1e-2


def test_unet_sees_further_than_the_residual_network(rng):
    """Receptive field: with random weights, a pixel 20 rows away changes the U-Net's output (3
    poolings: a field of over 60 pixels) but not the residual network's of 2 blocks (3×3 convs: 7
    convs reach 7 pixels). Seeded, so the weights do not depend on the tests that ran before in the
    same worker (the unseeded test failed once in seven runs of the fast tier)."""
    far = np.zeros((1, 48, 48, 2), np.float32)
    near = far.copy()
    far[0, 44, 24] = 1.0
    for net, reach in (("unet", True), ("resnet", False)):
        keras.utils.set_random_seed(0)
        g = build_generator(blocks=2, filters=4, network=net, levels=3, data_consistency=False)
        out_conv = g.get_layer("g_unet").get_layer("g_unet_conv_out") if net == "unet" else g.get_layer("g_conv_out")
        out_conv.set_weights([rng.standard_normal(w.shape).astype("float32") for w in out_conv.get_weights()])
        zeros = {"masked_kspace": np.zeros((1, 48, 48, 2), "float32"), "mask": np.zeros((1, 48, 48), "float32")}
        a, b = (np.asarray(g({**zeros, "zero_filled": z}))[0, 24, 24] for z in (near, far))
        assert (np.abs(a - b).max() > 1e-6) == reach, net


def test_seeded_residual_network_draws_its_kernels_in_layer_order():
    """A Keras initializer draws its seed when created: the residual network creates its convs in the
    order it applies them (conv_in, each block's two, conv_mid), so a seeded run starts from the same
    weights as before the layers were built ahead of use. Reference: GlorotUniform initializers
    created in that order after the same seed."""
    keras.utils.set_random_seed(7)
    g = build_generator(blocks=2, filters=4)
    keras.utils.set_random_seed(7)
    shapes = [(3, 3, 2, 4)] + [(3, 3, 4, 4)] * 5
    refs = [keras.initializers.GlorotUniform() for _ in shapes]
    names = ["g_conv_in", "g_block01_conv1", "g_block01_conv2", "g_block02_conv1", "g_block02_conv2", "g_conv_mid"]
    for name, init, shape in zip(names, refs, shapes):
        np.testing.assert_array_equal(g.get_layer(name).get_weights()[0], np.asarray(init(shape)), err_msg=name)


def _perturbed(g, rng):
    """``g`` with every weight moved at random and positive moving statistics (BatchNorm's variance,
    ScaleNorm's mean square): a network far from its identity initialisation."""
    weights = []
    for w, v in zip(g.get_weights(), g.weights):
        w = w + 0.3 * rng.standard_normal(w.shape).astype(w.dtype)
        weights.append(np.abs(w) + 0.5 if "moving_var" in v.path or "moving_mean_square" in v.path else w)
    g.set_weights(weights)
    return g


@pytest.mark.slow  # seconds
@pytest.mark.parametrize("network", ["resnet", "unet"])
def test_bias_free_generator_is_scale_equivariant(rng, network):
    """``bias_free``: G(c·x) = c·G(x) at inference for c = 0.01 and 37 (odd 21×18 slices, two cascades
    with learned DC, random weights); the same network with biases and BatchNorm is not. No weight
    of the bias-free network is a bias, a BN shift or a moving mean."""
    img = random_complex(rng, (2, 21, 18))
    mask = np.broadcast_to(make_mask("poisson", 4, (21, 18), 0).array, (2, 21, 18)).astype("float32")
    k = fft2c_np(img) * mask
    zf = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    ch = lambda z: np.stack([z.real, z.imag], -1).astype("float32")  # noqa: E731
    errors = {}
    for bias_free in (True, False):
        keras.utils.set_random_seed(3)
        g = build_generator(blocks=2, filters=8, cascades=2, network=network, levels=2, learned_dc=True,
                            bias_free=bias_free)  # fmt: skip
        _perturbed(g, rng)
        out = {c: np.asarray(g.predict_on_batch({"zero_filled": ch(c * zf), "masked_kspace": ch(c * k), "mask": mask}))
               for c in (1.0, 0.01, 37.0)}  # fmt: skip
        errors[bias_free] = max(np.abs(out[c] / c - out[1.0]).max() / np.abs(out[1.0]).max() for c in (0.01, 37.0))
        if bias_free:
            names = [v.path.split("/")[-1] for v in g.weights]
            assert not {"bias", "beta", "moving_mean", "moving_variance"} & set(names), names
    assert errors[True] < 1e-4 and errors[False] > 1e-2, errors


def test_scale_norm_against_numpy(rng):
    """ScaleNorm: in training γ·x/√(mean(x²) + ε) with the mean over batch, height and width per channel,
    and the moving statistic m ← 0.9·m + 0.1·mean(x²); at inference γ·x/√(m + ε), linear in x."""
    from kerasrecon.models.generator import ScaleNorm

    layer = ScaleNorm(name="sn")
    x = rng.standard_normal((3, 5, 4, 6)).astype("float32") * np.arange(1, 7, dtype="float32")
    layer.build(x.shape)
    gamma = rng.uniform(0.5, 2.0, 6).astype("float32")
    layer.gamma.assign(gamma)
    v = (x.astype(np.float64) ** 2).mean(axis=(0, 1, 2))
    trained = np.asarray(layer(x, training=True))
    np.testing.assert_allclose(trained, gamma * x / np.sqrt(v + 1e-3), rtol=1e-5)
    moving = 0.9 * 1.0 + 0.1 * v
    np.testing.assert_allclose(np.asarray(layer.moving_mean_square), moving, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(layer(2 * x)), 2 * gamma * x / np.sqrt(moving + 1e-3), rtol=1e-5)
    again = ScaleNorm.from_config(layer.get_config())
    assert (again.momentum, again.epsilon) == (0.9, 1e-3)


def _numpy_batchnorm(x, dy, gamma, beta, eps):
    """BatchNormalization over batch, height and width from its definition (float64): the output, and
    the gradients of ``Σ dy · y`` by x, γ and β (the textbook backward pass)."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    xhat = (x - mean) / np.sqrt(var + eps)
    dxhat = dy * gamma
    dx = (dxhat - dxhat.mean(axis=(0, 1, 2)) - xhat * (dxhat * xhat).mean(axis=(0, 1, 2))) / np.sqrt(var + eps)
    return gamma * xhat + beta, mean, var, dx, (dy * xhat).sum(axis=(0, 1, 2)), dy.sum(axis=(0, 1, 2))


def test_batch_normalization_against_numpy(rng):
    """The models' BatchNormalization (TensorFlow's fused kernel there): in training (x − mean)·γ/√(var + ε)
    + β with the batch's biased variance, moving statistics m ← 0.9·m + 0.1·batch; at inference the
    moving statistics; the weights of keras.layers.BatchNormalization."""
    from kerasrecon.models.batchnorm import BatchNormalization

    layer = BatchNormalization(momentum=0.9, name="bn")
    x = (rng.standard_normal((3, 5, 4, 6)) * np.arange(1, 7) + np.arange(6)).astype("float32")
    layer.build(x.shape)
    gamma, beta = rng.uniform(0.5, 2.0, 6), rng.standard_normal(6)
    layer.gamma.assign(gamma.astype("float32"))
    layer.beta.assign(beta.astype("float32"))
    if keras.backend.backend() == "tensorflow":
        assert layer.fused(keras.ops.convert_to_tensor(x))
    y, mean, var, *_ = _numpy_batchnorm(x, np.zeros_like(x), gamma, beta, 1e-3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=True)), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), 0.9 + 0.1 * var, rtol=1e-5)
    moving_mean, moving_var = 0.1 * mean, 0.9 + 0.1 * var
    expected = gamma * (x - moving_mean) / np.sqrt(moving_var + 1e-3) + beta
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)
    frozen = BatchNormalization(momentum=0.9, name="bn")
    frozen.build(x.shape)
    frozen.set_weights(layer.get_weights())  # gamma, beta, moving mean and variance
    frozen.trainable = False  # training=True with frozen weights uses the moving statistics (Keras' rule)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(frozen(x, training=True)), expected, rtol=1e-5, atol=1e-5)
    plain = keras.layers.BatchNormalization(name="plain")
    plain.build(x.shape)
    assert [w.name for w in layer.weights] == [w.name for w in plain.weights]  # checkpoints load either way


def _fused_bn_case(rng, **kwargs):
    """A built models' BatchNormalization (``kwargs``: its arguments) with random γ and β, a
    ``[2, 6, 5, 4]`` map and an output gradient: ``(layer, x, dy, gamma, beta)``, float32 arrays."""
    from kerasrecon.models.batchnorm import BatchNormalization

    layer = BatchNormalization(name="bn", **kwargs)
    x = (rng.standard_normal((2, 6, 5, 4)) * 3 + 1).astype("float32")
    dy = rng.standard_normal(x.shape).astype("float32")
    layer.build(x.shape)
    gamma, beta = rng.uniform(0.5, 2.0, 4), rng.standard_normal(4)
    layer.gamma.assign(gamma.astype("float32"))
    layer.beta.assign(beta.astype("float32"))
    return layer, x, dy, gamma, beta


@pytest.mark.tensorflow
@pytest.mark.parametrize("policy, tol", [("mixed_bfloat16", 2e-2), ("mixed_float16", 3e-3)])
def test_fused_batch_normalization_half_precision_against_numpy(rng, policy, tol):
    """Under mixed precision the fused kernel takes the bfloat16/float16 map: output, moving statistics
    and gradients equal BatchNormalization's NumPy definition on the rounded map to the half type's
    round-off (8 / 11 significant bits), with γ, β and the statistics float32."""
    import tensorflow as tf

    layer, x, dy, gamma, beta = _fused_bn_case(rng, momentum=0.9, dtype=policy)
    half = layer.compute_dtype
    xt, dyt = tf.cast(x, half), tf.cast(dy, half)
    assert layer.fused(xt) and layer.gamma.dtype == "float32"
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt, training=True)
        loss = tf.reduce_sum(tf.cast(y * dyt, tf.float32))
    dx, dgamma, dbeta = tape.gradient(loss, [xt, layer.gamma.value, layer.beta.value])
    assert y.dtype == half and dx.dtype == half and dgamma.dtype == tf.float32
    rounded = tf.cast(xt, tf.float32).numpy()  # the map the kernel saw
    ref_y, mean, var, ref_dx, ref_dgamma, ref_dbeta = _numpy_batchnorm(
        rounded, tf.cast(dyt, tf.float32).numpy(), gamma, beta, 1e-3
    )
    scale = np.abs(ref_y).max()
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), ref_y, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-5)
    np.testing.assert_allclose(tf.cast(dx, tf.float32).numpy(), ref_dx, rtol=tol, atol=tol * np.abs(ref_dx).max())
    np.testing.assert_allclose(dgamma.numpy(), ref_dgamma, rtol=tol, atol=tol * np.abs(ref_dgamma).max())
    np.testing.assert_allclose(dbeta.numpy(), ref_dbeta, rtol=tol, atol=tol * np.abs(ref_dbeta).max())
    expected = gamma * (rounded - 0.1 * mean) / np.sqrt(0.9 + 0.1 * var + 1e-3) + beta  # inference
    np.testing.assert_allclose(tf.cast(layer(xt), tf.float32).numpy(), expected, rtol=tol, atol=tol * scale)


@pytest.mark.tensorflow
def test_fused_batch_normalization_gradients_against_numpy(rng):
    """The fused kernel's backward pass equals BatchNormalization's gradient written out in NumPy; a
    float64 map takes Keras' own path (the kernel has no float64)."""
    import tensorflow as tf

    from kerasrecon.models.batchnorm import BatchNormalization

    layer, x, dy, gamma, beta = _fused_bn_case(rng)
    xt = tf.constant(x)
    assert layer.fused(xt)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(layer(xt, training=True) * dy)
    dx, dgamma, dbeta = tape.gradient(loss, [xt, layer.gamma.value, layer.beta.value])
    _, _, _, ref_dx, ref_dgamma, ref_dbeta = _numpy_batchnorm(x, dy, gamma, beta, 1e-3)
    np.testing.assert_allclose(dx.numpy(), ref_dx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dgamma.numpy(), ref_dgamma, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dbeta.numpy(), ref_dbeta, rtol=1e-4, atol=1e-5)
    wide = BatchNormalization(name="bn64", dtype="float64")
    assert not wide.fused(tf.constant(x, tf.float64))
    assert not BatchNormalization(synchronized=True).fused(xt)
