import keras
import numpy as np
import pytest

from kerasrecon import losses
from kerasrecon.errors import ConfigError


def test_mse_and_bce_by_hand():
    t = np.zeros((2, 2, 2, 1), np.float32)
    r = np.array([[[1, 1], [1, 1]], [[0, 0], [0, 2]]], np.float32)[..., None]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.mse_loss(t, r)), [1.0, 1.0])
    # D returns logits: sigmoid(log(1/3)) = 0.25, sigmoid(0) = 0.5
    z = np.array([[np.log(1 / 3)], [0.0]], np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.adversarial_loss(z)), -np.log([0.25, 0.5]), rtol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(losses.discriminator_loss(z, z)),
        -np.log([0.25, 0.5]) - np.log([0.75, 0.5]),
        rtol=1e-6,
    )


@pytest.mark.tensorflow
def test_bce_keeps_its_gradient_when_the_discriminator_is_sure():
    """A saturated D (|logit| 30: sigmoid rounds to 0 or 1 in float32) still gets the cross-entropy's
    gradient, sigmoid(z) - label, instead of the zero of clipped probabilities."""
    import tensorflow as tf

    real, fake = tf.Variable([[-30.0]]), tf.Variable([[30.0]])  # reals called fake, fakes called real
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.discriminator_loss(real, fake))
    g_real, g_fake = (g.numpy().item() for g in tape.gradient(loss, [real, fake]))
    assert loss.numpy() == pytest.approx(60.0, rel=1e-6)  # -log(sigmoid(-30)) + -log(1 - sigmoid(30))
    assert g_real == pytest.approx(-1.0, abs=1e-6) and g_fake == pytest.approx(1.0, abs=1e-6)  # sigmoid(z) - label
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(losses.adversarial_loss(np.array([[-30.0]], np.float32))), [30.0], rtol=1e-6
    )


def test_feature_loss_matches_manual_vgg_pipeline(rng):
    vgg = losses.build_vgg_features("none")
    assert vgg.output.shape[-1] == 512 and vgg.layers[-1].name == "block5_conv4"
    t = rng.random((2, 32, 32, 1)).astype(np.float32)
    r = rng.random((2, 32, 32, 1)).astype(np.float32)

    def feats(x):  # caffe preprocessing by hand: RGB->BGR, subtract the ImageNet mean
        rgb = np.repeat(x * 255.0, 3, axis=-1)
        bgr = rgb[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
        return keras.ops.convert_to_numpy(vgg(bgr)) / 12.75

    expected = ((feats(t) - feats(r)) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.feature_loss(t, r, vgg)), expected, rtol=1e-4)
    hybrid = keras.ops.convert_to_numpy(losses.ContentLoss("hybrid", vgg, mse_weight=0.3, feature_weight=0.7)(t, r))
    np.testing.assert_allclose(hybrid, 0.3 * ((t - r) ** 2).mean(axis=(1, 2, 3)) + 0.7 * expected, rtol=1e-4)


def test_vgg_weights_from_path(tmp_path):
    vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path / "vgg.weights.h5"
    vgg.save_weights(path)
    loaded = losses.build_vgg_features(str(path))
    np.testing.assert_array_equal(
        loaded.get_layer("block1_conv1").get_weights()[0], vgg.get_layer("block1_conv1").get_weights()[0]
    )


def test_vgg_weights_errors(tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="loss.vgg_weights .*file not found"):
        losses.build_vgg_features(str(tmp_path / "missing.h5"))

    def offline(*args, **kwargs):
        print("Downloading data from https://storage.googleapis.com/...")  # what Keras prints first
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- unreachable")

    monkeypatch.setattr(keras.applications, "VGG19", offline)
    capsys.readouterr()
    with pytest.raises(ConfigError) as exc:
        losses.build_vgg_features("imagenet")
    msg = str(exc.value)
    assert "loss.vgg_weights=PATH" in msg and losses.VGG_NOTOP_FILE in msg and "\n" not in msg
    assert capsys.readouterr().out == ""  # the error is the only line: no "Downloading data from"


def test_unknown_loss():
    with pytest.raises(ConfigError, match="loss.content must be one of"):
        losses.ContentLoss("perceptual")
    with pytest.raises(ConfigError, match="needs VGG19"):
        losses.ContentLoss("feature", None)


@pytest.mark.parametrize("shape", [(2, 16, 16, 1), (1, 9, 23, 1)])
def test_ssim_loss_equals_skimage(rng, shape):
    """1 − SSIM against skimage's structural_similarity with fastMRI's settings (7×7 uniform window,
    sample covariance, data range = the target's max)."""
    from skimage.metrics import structural_similarity

    target = rng.random(shape).astype(np.float32)
    recon = (target + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    got = keras.ops.convert_to_numpy(losses.ssim_loss(target, recon))
    expected = [
        1 - structural_similarity(t[..., 0], r[..., 0], win_size=7, data_range=float(t.max()))
        for t, r in zip(target, recon)
    ]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.ssim_loss(target, target)), 0, atol=1e-6)
    l1 = np.abs(target - recon).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(losses.l1ssim_loss(target, recon)), 0.1 * l1 + 0.9 * np.array(expected), atol=1e-5
    )


@pytest.mark.tensorflow
@pytest.mark.parametrize("kind", ["ssim", "l1ssim"])
def test_ssim_losses_need_no_vgg_and_have_gradients(rng, kind):
    target = rng.random((2, 12, 12, 1)).astype(np.float32)
    loss = losses.ContentLoss(kind)  # no VGG: not a feature loss
    recon = keras.Variable(target * 0.5)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = keras.ops.sum(loss(target, recon))
    grad = tape.gradient(value, recon)
    assert float(value) > 0 and np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).max() > 0
