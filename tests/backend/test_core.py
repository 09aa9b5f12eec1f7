"""The backend-agnostic core (keras.ops): FFT, data consistency, magnitude, losses, in-graph PSNR and
the model builders, checked against NumPy references.

This file runs twice: in the suite's own process (TensorFlow backend) and again in a subprocess with
``KERAS_BACKEND=jax`` (``tests/test_backends.py``), so both backends are held to the same references.
"""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from kerasrecon import kspace as ks
from kerasrecon import losses
from kerasrecon.metrics_ops import batch_psnr
from kerasrecon.models.discriminator import build_discriminator
from kerasrecon.models.generator import build_generator
from tests.conftest import random_complex, ref_fft2c, ref_ifft2c

SHAPES = [(1, 8, 8), (2, 7, 9), (3, 16, 5), (1, 33, 32)]


def ch(z):
    return np.stack([z.real, z.imag], -1).astype(np.float32)


def unch(x):
    x = np.asarray(ops.convert_to_numpy(x))
    return x[..., 0] + 1j * x[..., 1]


@pytest.mark.parametrize("shape", SHAPES)
def test_fft_channels_match_numpy(rng, shape):
    x = random_complex(rng, shape)
    np.testing.assert_allclose(unch(ks.fft2c_ch(ch(x))), ref_fft2c(x), atol=2e-5)
    np.testing.assert_allclose(unch(ks.ifft2c_ch(ch(x))), ref_ifft2c(x), atol=2e-5)


@pytest.mark.parametrize("h,w", itertools.product([6, 7], [8, 9]))
def test_dc_sample_is_centred(h, w):
    k = unch(ks.fft2c_ch(np.stack([np.ones((1, h, w)), np.zeros((1, h, w))], -1).astype(np.float32)))[0]
    assert np.unravel_index(np.argmax(np.abs(k)), k.shape) == (h // 2, w // 2)
    np.testing.assert_allclose(abs(k[h // 2, w // 2]), np.sqrt(h * w), rtol=1e-5)


def test_hard_dc_keeps_measured_samples_exactly(rng):
    k = random_complex(rng, (2, 12, 10))
    mask = (rng.random((12, 10)) > 0.6).astype(np.float32)
    recon = random_complex(rng, (2, 12, 10))
    out = unch(ks.data_consistency_ch(ch(recon), ch(k * mask), mask))
    k_out = ref_fft2c(out)
    m = mask.astype(bool)
    np.testing.assert_allclose(k_out[:, m], k[:, m], atol=2e-5)
    np.testing.assert_allclose(k_out[:, ~m], ref_fft2c(recon)[:, ~m], atol=2e-5)
    batched = np.broadcast_to(mask, (2, 12, 10))  # a per-example mask gives the same
    np.testing.assert_allclose(unch(ks.data_consistency_ch(ch(recon), ch(k * mask), batched)), out, atol=1e-6)


def test_soft_dc_blend_by_hand(rng):
    k = random_complex(rng, (1, 6, 6))
    mask = np.zeros((6, 6), np.float32)
    mask[2, 3] = 1
    recon = random_complex(rng, (1, 6, 6))
    lam = 3.0
    out = unch(ks.data_consistency_ch(ch(recon), ch(k), mask, noise_lambda=lam))
    kr = ref_fft2c(recon)
    expected = kr.copy()
    expected[0, 2, 3] = (kr[0, 2, 3] + lam * k[0, 2, 3]) / (1 + lam)
    np.testing.assert_allclose(ref_fft2c(out), expected, atol=2e-5)


def test_magnitude_and_psnr(rng):
    x = random_complex(rng, (2, 5, 4))
    np.testing.assert_allclose(np.asarray(ops.convert_to_numpy(ks.magnitude(ch(x))))[..., 0], np.abs(x), rtol=1e-5)
    t = rng.random((2, 6, 6, 1)).astype(np.float32)
    r = t + 0.01 * rng.standard_normal(t.shape).astype(np.float32)
    expected = 10 * np.log10(1.0 / np.mean((t - r) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(ops.convert_to_numpy(batch_psnr(t, r)), expected, rtol=1e-5)


def test_losses_match_numpy(rng):
    t = rng.random((3, 4, 4, 1)).astype(np.float32)
    r = rng.random((3, 4, 4, 1)).astype(np.float32)
    np.testing.assert_allclose(
        ops.convert_to_numpy(losses.mse_loss(t, r)), np.mean((t - r) ** 2, axis=(1, 2, 3)), rtol=1e-6
    )
    z = np.array([[-1.5], [2.0], [40.0]], np.float32)  # logits; 40: sigmoid is 1 in float32
    # p = sigmoid(z): -log p = log(1 + exp(-z)), -log(1 - p) = z + log(1 + exp(-z)) (log1p forms: in
    # float64, p rounds to 1 at z = 40)
    zz = z.ravel().astype(np.float64)
    minus_log_p = np.log1p(np.exp(-zz))
    np.testing.assert_allclose(ops.convert_to_numpy(losses.adversarial_loss(z)), minus_log_p, rtol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(losses.discriminator_loss(z, z)), minus_log_p + zz + minus_log_p, rtol=1e-5
    )


def test_feature_loss_matches_numpy(rng):
    keras.utils.set_random_seed(0)
    vgg = losses.build_vgg_features("none")
    t = rng.random((2, 32, 32, 1)).astype(np.float32)
    r = rng.random((2, 32, 32, 1)).astype(np.float32)

    def feats(m):  # caffe preprocessing written out: RGB -> BGR, minus the ImageNet means
        rgb = np.repeat(m * 255.0, 3, axis=-1)[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
        return np.asarray(ops.convert_to_numpy(vgg(np.ascontiguousarray(rgb), training=False))) / 12.75

    expected = np.mean((feats(t) - feats(r)) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(ops.convert_to_numpy(losses.feature_loss(t, r, vgg)), expected, rtol=1e-3)


def test_untrained_generator_is_dc_of_its_input(rng):
    """The zero-initialised output conv makes a fresh generator DC(zero-filled): checks the whole
    graph (convs, BN, PReLU, residual, DC layer) runs on this backend with the NumPy FFT's result."""
    img = random_complex(rng, (2, 16, 12))
    mask = (rng.random((16, 12)) > 0.5).astype(np.float32)
    k = ref_fft2c(img) * mask
    zf = ref_ifft2c(k)
    g = build_generator(blocks=1, filters=8)
    out = unch(
        g({"zero_filled": ch(zf), "masked_kspace": ch(k), "mask": np.broadcast_to(mask, (2, 16, 12))}, training=False)
    )
    np.testing.assert_allclose(out, zf, atol=1e-5)  # DC of the zero-filled image is itself


def test_builders_take_a_dtype_policy_and_leave_the_global_one():
    before = keras.config.dtype_policy().name
    mixed = build_generator(blocks=1, filters=8, dtype="mixed_bfloat16")
    plain = build_generator(blocks=1, filters=8, dtype="float32")
    d = build_discriminator(32, dtype="mixed_bfloat16")
    assert keras.config.dtype_policy().name == before == "float32"
    assert mixed.get_layer("g_block01_conv1").dtype_policy.name == "mixed_bfloat16"
    assert mixed.get_layer("g_block01_conv1").compute_dtype == "bfloat16"
    assert mixed.get_layer("g_block01_conv1").variable_dtype == "float32"
    assert mixed.get_layer("g_conv_out").compute_dtype == "float32"  # image and FFT stay float32
    assert mixed.get_layer("g_data_consistency").compute_dtype == "float32"
    assert plain.get_layer("g_block01_conv1").compute_dtype == "float32"
    assert d.get_layer("d_conv2").compute_dtype == "bfloat16" and d.get_layer("d_logit").compute_dtype == "float32"
    x = np.zeros((1, 8, 8, 2), np.float32)
    out = mixed({"zero_filled": x, "masked_kspace": x, "mask": np.zeros((1, 8, 8), np.float32)})
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    vgg = losses.build_vgg_features("none", dtype="mixed_bfloat16")
    assert vgg.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"


def _maps(rng, b, c, h, w):
    """Smooth-ish random coil maps normalised so that Σ_c |S_c|² = 1 at every pixel."""
    s = random_complex(rng, (b, c, h, w)) + 2.0
    return (s / np.sqrt(np.sum(np.abs(s) ** 2, axis=1, keepdims=True))).astype(np.complex64)


def test_sense_operator_is_adjoint_and_reduces_to_single_coil(rng):
    b, c, h, w = 2, 4, 12, 10
    x = random_complex(rng, (b, h, w))
    y = random_complex(rng, (b, c, h, w))
    maps = _maps(rng, b, c, h, w)
    mask = (rng.random((b, h, w)) > 0.5).astype(np.float32)
    ax = ks.sense_forward_np(x, maps, mask)
    # <A x, y> = <x, Aᴴ y> (NumPy and keras.ops)
    np.testing.assert_allclose(np.vdot(ax, y), np.vdot(x, ks.sense_adjoint_np(y, maps, mask)), rtol=1e-4)
    ax_ch = unch(ks.sense_forward_ch(ch(x), ch(maps), mask))
    aty_ch = unch(ks.sense_adjoint_ch(ch(y), ch(maps), mask))
    np.testing.assert_allclose(ax_ch, ax, atol=2e-5)
    np.testing.assert_allclose(np.vdot(ax_ch, y), np.vdot(x, aty_ch), rtol=1e-4)
    # Fully sampled with Σ|S|² = 1: the SENSE combine of the coil k-space gives the image back.
    full = np.ones((b, h, w), np.float32)
    np.testing.assert_allclose(ks.sense_adjoint_np(ks.sense_forward_np(x, maps, full), maps, full), x, atol=1e-5)
    # One coil with S = 1 is today's single-coil path: M ⊙ F x and the zero-filled image.
    ones = np.ones((b, 1, h, w), np.complex64)
    np.testing.assert_allclose(ks.sense_forward_np(x, ones, mask)[:, 0], ref_fft2c(x) * mask, atol=1e-6)
    k = ref_fft2c(x)
    np.testing.assert_allclose(ks.sense_adjoint_np(k[:, None], ones, mask), ref_ifft2c(k * mask), atol=1e-6)
    np.testing.assert_allclose(
        unch(ks.sense_adjoint_ch(ch(k[:, None]), ch(ones), mask)), ref_ifft2c(k * mask), atol=1e-6
    )


def _dense_normal_matrix(maps, mask, mu):
    """``AᴴA + μI`` of one slice as an explicit ``[HW, HW]`` matrix, column by column from the matrix DFT
    (``ref_fft2c``), with ``A = M ⊙ F(S_c ·)``."""
    c, h, w = maps.shape
    cols = []
    for j in range(h * w):
        e = np.zeros(h * w, np.complex128)
        e[j] = 1
        coil_k = mask * ref_fft2c(maps * e.reshape(h, w))
        cols.append(np.sum(np.conj(maps) * ref_ifft2c(mask * coil_k), axis=0).ravel() + mu * e)
    return np.stack(cols, axis=1)


def test_sense_cg_solve_equals_a_dense_solve_and_stops_cleanly(rng):
    """Enough CG iterations give ``np.linalg.solve`` of the explicit normal equations; a warm start at
    the solution stays there (a zero residual gives zero steps, not NaN); 3 iterations already reduce
    the residual."""
    b, c, h, w, mu = 2, 3, 6, 5, 0.2
    maps = _maps(rng, b, c, h, w) * rng.uniform(0.3, 1.0, (b, 1, h, w))  # Σ|S|² < 1 too: any maps
    mask = (rng.random((b, h, w)) < 0.4).astype(np.float32)
    rhs = random_complex(rng, (b, h, w))
    ref = np.stack(
        [np.linalg.solve(_dense_normal_matrix(maps[i], mask[i], mu), rhs[i].ravel()).reshape(h, w) for i in range(b)]
    )
    got = unch(ks.sense_cg_solve_ch(ch(rhs), ch(maps), mask, mu, h * w))
    np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())
    again = unch(ks.sense_cg_solve_ch(ch(rhs), ch(maps), mask, mu, 4, x0=ch(ref)))
    assert np.all(np.isfinite(again))
    np.testing.assert_allclose(again, ref, atol=1e-4 * np.abs(ref).max())
    normal = [_dense_normal_matrix(maps[i], mask[i], mu) for i in range(b)]
    three = unch(ks.sense_cg_solve_ch(ch(rhs), ch(maps), mask, mu, 3))
    for i in range(b):
        residual = np.linalg.norm(normal[i] @ three[i].ravel() - rhs[i].ravel())
        assert residual < 0.5 * np.linalg.norm(rhs[i]), (i, residual)


def test_cg_data_consistency_layer_single_and_multi_coil(rng):
    """``DataConsistency(cg_iters=...)``: multi-coil, x = (AᴴA + μI)⁻¹(Aᴴy + μz) for μ = exp(log_mu)
    (dense reference); single-coil, the closed form: measured samples (y + μ F z) / (1 + μ), the
    rest F z."""
    from kerasrecon.models.generator import CG_MU_INIT, DataConsistency

    b, c, h, w = 1, 2, 6, 6
    maps = _maps(rng, b, c, h, w)
    mask = (rng.random((b, h, w)) < 0.5).astype(np.float32)
    y = random_complex(rng, (b, c, h, w)) * mask[:, None]
    z = random_complex(rng, (b, h, w))
    layer = DataConsistency(cg_iters=h * w)
    out = unch(layer([ch(z), ch(y), mask, ch(maps)]))
    mu = float(np.exp(ops.convert_to_numpy(layer.log_mu)))
    assert abs(mu - CG_MU_INIT) < 1e-6
    rhs = np.sum(np.conj(maps[0]) * ref_ifft2c(mask[0] * y[0]), axis=0) + mu * z[0]
    ref = np.linalg.solve(_dense_normal_matrix(maps[0], mask[0], mu), rhs.ravel()).reshape(h, w)
    np.testing.assert_allclose(out[0], ref, atol=1e-4 * np.abs(ref).max())
    k_z, y1 = ref_fft2c(z), y[:, 0]
    single = unch(layer([ch(z), ch(y1), mask]))
    ref1 = ref_ifft2c(np.where(mask > 0, (y1 + mu * k_z) / (1 + mu), k_z))
    np.testing.assert_allclose(single, ref1, atol=1e-5 * np.abs(ref1).max())


def _grad(fn, x):
    """d(sum fn(x))/dx on the running backend."""
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.grad(lambda t: ops.sum(fn(t)))(x))
    import tensorflow as tf

    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = ops.sum(fn(t))
    return tape.gradient(y, t).numpy()


def test_discriminator_leaky_relu_same_on_every_backend():
    """x if x > 0 else 0.2 x, with the slope exact in float32 (0.2f) and the gradient 0.2 at x == 0
    (TensorFlow's convention; JAX's own leaky_relu takes 1 there)."""
    from kerasrecon.models.discriminator import LEAKY_SLOPE, LeakyReLU

    layer = LeakyReLU(negative_slope=LEAKY_SLOPE)
    x = np.array([-3.0, -0.5, 0.0, 0.25, 2.0], np.float32)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x)), np.where(x > 0, x, np.float32(0.2) * x))
    np.testing.assert_array_equal(_grad(layer, x), np.array([0.2, 0.2, 0.2, 1.0, 1.0], np.float32))


@pytest.mark.parametrize("noise_lambda", [None, 0.5])
def test_sense_data_consistency_matches_numpy_and_reduces_to_single_coil(rng, noise_lambda):
    from kerasrecon.coils import birdcage_maps

    b, c, h, w = 2, 4, 12, 10
    image, measured = random_complex(rng, (b, h, w)), random_complex(rng, (b, c, h, w))
    mask = (rng.random((b, h, w)) < 0.4).astype(np.float32)
    maps = np.stack([birdcage_maps(c, h, w)] * b)
    k = ref_fft2c(maps * image[:, None])
    m = mask[:, None]
    meas = measured * m
    blend = meas if noise_lambda is None else (k + noise_lambda * meas) / (1 + noise_lambda)
    ref = np.sum(np.conj(maps) * ref_ifft2c((1 - m) * k + m * blend), axis=1)
    out = ks.sense_data_consistency_ch(ch(image), ch(meas), ch(maps), mask, noise_lambda=noise_lambda)
    np.testing.assert_allclose(unch(out), ref, atol=1e-5)
    # C = 1, S = 1: exactly the single-coil layer
    one = ks.sense_data_consistency_ch(
        ch(image), ch(meas[:, :1]), ch(np.ones((b, 1, h, w), np.complex64)), mask, noise_lambda=noise_lambda
    )
    single = ks.data_consistency_ch(ch(image), ch(meas[:, 0]), mask, noise_lambda=noise_lambda)
    np.testing.assert_allclose(ops.convert_to_numpy(one), ops.convert_to_numpy(single), atol=1e-6)


def test_acs_maps_in_graph_equal_numpy(rng):
    from kerasrecon.coils import acs_maps_ch, acs_maps_np, birdcage_maps

    c, h, w = 6, 16, 20
    obj = random_complex(rng, (h, w))
    kspace = ref_fft2c(birdcage_maps(c, h, w) * obj)[None]
    ref = acs_maps_np(kspace, acs=8)
    out = unch(acs_maps_ch(ch(kspace), 8))
    np.testing.assert_allclose(out, ref, atol=2e-5)
    np.testing.assert_allclose(np.sum(np.abs(out) ** 2, axis=1)[np.abs(ref).sum(1) > 0], 1.0, atol=1e-4)


def test_acs_maps_of_all_zero_data_are_zero_not_nan():
    """Nothing measured (all-zero k-space or mask): maps 0 on both twins, as the multi-coil signature needs."""
    from kerasrecon.coils import acs_maps_ch, acs_maps_np

    kspace = np.zeros((1, 4, 12, 10), np.complex64)
    np.testing.assert_array_equal(acs_maps_np(kspace, acs=4), 0)
    np.testing.assert_array_equal(unch(acs_maps_ch(ch(kspace), 4)), 0)


@pytest.mark.parametrize("w, acs", [(10, 4), (11, 4), (12, 5), (9, 9)])
def test_acs_region_in_graph_equals_numpy(w, acs):
    from kerasrecon.coils import acs_region, acs_region_ch

    np.testing.assert_array_equal(ops.convert_to_numpy(acs_region_ch(w, acs)), acs_region((3, w), acs)[0])


@pytest.mark.parametrize("w, fraction, expected", [(32, 0.08, 4), (100, 0.08, 8), (444, 0.08, 36), (10, 0.5, 5)])
def test_acs_lines_by_hand(w, fraction, expected):
    from kerasrecon.coils import acs_lines_ch

    assert int(ops.convert_to_numpy(acs_lines_ch(w, fraction))) == expected


def test_normalise_in_graph_by_hand(rng):
    # Each slice divided by its own peak magnitude; the floor keeps an all-zero slice finite.
    z = random_complex(rng, (3, 5, 4))
    z[1] = 0
    z[2, 1, 1] = 1e20 + 0j  # magnitudes beyond sqrt(float32 max) must not overflow
    out, scale = ks.normalise_ch(ch(z))
    peaks = np.maximum(np.abs(z).reshape(3, -1).max(axis=1), ks.NORMALISE_EPS)
    np.testing.assert_allclose(ops.convert_to_numpy(scale).reshape(3), 1 / peaks, rtol=1e-6)
    np.testing.assert_allclose(unch(out), z / peaks[:, None, None], atol=1e-6)
    np.testing.assert_allclose(ks.normalise_np(z)[1], 1 / peaks, rtol=1e-6)


def test_gan_objectives_by_hand():
    """The one home of the GAN objective: hand-computed BCE terms, λ weighting and the batch reduction."""
    from kerasrecon.losses import ContentLoss
    from kerasrecon.training.gan import discriminator_objective, generator_objective, pretrain_objective

    p = np.array([0.25, 0.5], np.float32)
    logit = np.log(p / (1 - p)).reshape(2, 1)  # D's probabilities 0.25 and 0.5
    target = np.zeros((2, 4, 4, 1), np.float32)
    recon = np.stack([np.full((4, 4, 1), 0.1), np.full((4, 4, 1), 0.3)]).astype(np.float32)
    terms = generator_objective(target, recon, logit, ContentLoss("mse"), adv_weight=0.5)
    mse, adv = np.mean([0.01, 0.09]), np.mean(-np.log(p))
    for key, want in (("content", mse), ("adversarial", adv), ("g_loss", mse + 0.5 * adv)):
        np.testing.assert_allclose(float(ops.convert_to_numpy(terms[key])), want, rtol=1e-5)
    d = discriminator_objective(logit, logit, reduce=ops.sum)  # BCE(·, 1) + BCE(·, 0), summed
    np.testing.assert_allclose(float(ops.convert_to_numpy(d)), np.sum(-np.log(p) - np.log(1 - p)), rtol=1e-5)
    pre = pretrain_objective(target, recon)
    assert float(ops.convert_to_numpy(pre["g_loss"])) == pytest.approx(mse, rel=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's refusals: checked in this file's JAX run")
@pytest.mark.parametrize(
    "option, expected",
    [
        (["--strategy", "mirrored"], "on JAX use --strategy auto"),
        (["--precision", "mixed_float16"], "on JAX use --precision mixed_bfloat16"),
    ],
)
def test_tensorflow_only_fit_options_are_refused_on_jax(tmp_path, option, expected):
    """A TensorFlow-only option on JAX: one line naming the JAX alternative, exit 2, --out not created."""
    from click.testing import CliRunner

    from kerasrecon_cli.main import cli

    out = tmp_path / "run"
    tiny = ["--batch-size", "2", "--patch-size", "32", "--blocks", "1", "--filters", "8", "--vgg-weights", "none"]
    res = CliRunner().invoke(cli, ["fit", "--steps", "1", *option, "--out", str(out), *tiny])
    assert res.exit_code == 2 and expected in res.output.strip().splitlines()[-1], res.output
    assert not out.exists()


def _ref_conv_and_grads(x, k, dy, stride):
    """NumPy reference: 'same'-padded strided convolution (TensorFlow/XLA padding rule) and its input and
    kernel gradients for the output cotangent ``dy``, written as explicit sums over the kernel taps."""
    b, h, w, _ = x.shape
    kh, kw, _, c_out = k.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))).astype(np.float64)
    y, dxp, dk = np.zeros((b, oh, ow, c_out)), np.zeros_like(xp), np.zeros(k.shape)
    for i, j in itertools.product(range(kh), range(kw)):
        window = xp[:, i : i + (oh - 1) * stride + 1 : stride, j : j + (ow - 1) * stride + 1 : stride, :]
        y += window @ k[i, j]
        dk[i, j] = np.einsum("bhwc,bhwo->co", window, dy)
        dxp[:, i : i + (oh - 1) * stride + 1 : stride, j : j + (ow - 1) * stride + 1 : stride, :] += dy @ k[i, j].T
    return y, dxp[:, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w], dk


def _jax_on_one_cpu() -> bool:
    from kerasrecon.models.conv import chunked_kernel_grad

    return chunked_kernel_grad()


@pytest.mark.skipif(not _jax_on_one_cpu(), reason="JAX on one CPU device: checked in the suite's JAX run")
@pytest.mark.parametrize("stride, batch, chunks", [(1, 4, 4), (2, 3, 2), (1, 5, 16)])
def test_chunked_kernel_gradient_equals_numpy(rng, stride, batch, chunks):
    """The conv whose kernel gradient is summed over batch chunks: output, input and kernel gradients
    equal the NumPy sums (uneven chunks, more chunks than images, stride 2)."""
    import jax

    from kerasrecon.models.conv import Conv2D, chunked_kernel_grad, conv_with_chunked_kernel_grad

    x = rng.standard_normal((batch, 12, 10, 3)).astype(np.float32)  # more pixels than SMALL_MAP_PIXELS
    k = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    y_ref, dx_ref, dk_ref = _ref_conv_and_grads(x, k, np.ones((batch, 12 // stride, 10 // stride, 5)), stride)

    def conv(a, w):
        return ops.conv(a, w, strides=stride, padding="same")

    def loss(a, w):
        return conv_with_chunked_kernel_grad(conv, a, w, chunks).sum()

    dx, dk = jax.grad(loss, argnums=(0, 1))(x, k)
    np.testing.assert_allclose(conv_with_chunked_kernel_grad(conv, x, k, chunks), y_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-4)
    # The models' layer takes this path on this (one-device CPU) host.
    assert chunked_kernel_grad()
    layer = Conv2D(5, 3, strides=stride, padding="same", use_bias=False)
    layer.build(x.shape)
    layer.kernel.assign(k)
    assert not layer._as_matmul(x)
    grad = jax.grad(lambda w: layer.stateless_call([w], [], x)[0].sum())(k)
    np.testing.assert_allclose(grad, dk_ref, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not _jax_on_one_cpu(), reason="JAX on one CPU device: checked in the suite's JAX run")
@pytest.mark.parametrize("size, stride", [((2, 2), 1), ((8, 6), 1), ((12, 12), 1), ((5, 6), 2), ((12, 12), 2)])
def test_small_map_convolution_as_matmul_equals_numpy(rng, size, stride):
    """The patch-matrix-product convolution (maps of at most SMALL_MAP_PIXELS pixels; odd sizes, stride
    2) and the layer on either side of that size: output and gradients equal the NumPy sums."""
    import jax

    from kerasrecon.models.conv import SMALL_MAP_PIXELS, Conv2D, conv_as_matmul

    x = rng.standard_normal((3, *size, 4)).astype(np.float32)
    k = rng.standard_normal((3, 3, 4, 6)).astype(np.float32)
    out = (3, -(-size[0] // stride), -(-size[1] // stride), 6)
    y_ref, dx_ref, dk_ref = _ref_conv_and_grads(x, k, np.ones(out), stride)
    dx, dk = jax.grad(lambda a, w: conv_as_matmul(a, w, stride).sum(), argnums=(0, 1))(x, k)
    np.testing.assert_allclose(conv_as_matmul(x, k, stride), y_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-4)
    layer = Conv2D(6, 3, strides=stride, padding="same", use_bias=False)
    layer.build(x.shape)
    layer.kernel.assign(k)
    assert layer._as_matmul(x) == (size[0] * size[1] <= SMALL_MAP_PIXELS)
    y, grad = jax.value_and_grad(lambda w: layer.stateless_call([w], [], x)[0].sum())(k)
    np.testing.assert_allclose(y, y_ref.sum(), rtol=1e-4)
    np.testing.assert_allclose(grad, dk_ref, rtol=1e-5, atol=1e-4)
