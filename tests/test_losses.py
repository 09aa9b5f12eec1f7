import keras
import numpy as np
import pytest

from kerasrecon import losses
from kerasrecon.errors import ConfigError


def test_mse_and_bce_by_hand():
    t = np.zeros((2, 2, 2, 1), np.float32)
    r = np.array([[[1, 1], [1, 1]], [[0, 0], [0, 2]]], np.float32)[..., None]
    np.testing.assert_allclose(losses.mse_loss(t, r).numpy(), [1.0, 1.0])
    p = np.array([[0.25], [0.5]], np.float32)
    np.testing.assert_allclose(losses.adversarial_loss(p).numpy(), -np.log([0.25, 0.5]), rtol=1e-6)
    np.testing.assert_allclose(losses.discriminator_loss(p, p).numpy(),
                               -np.log([0.25, 0.5]) - np.log([0.75, 0.5]), rtol=1e-6)


def test_feature_loss_matches_manual_vgg_pipeline(rng):
    vgg = losses.build_vgg_features("none")
    assert vgg.output.shape[-1] == 512 and vgg.layers[-1].name == "block5_conv4"
    t = rng.random((2, 32, 32, 1)).astype(np.float32)
    r = rng.random((2, 32, 32, 1)).astype(np.float32)

    def feats(x):  # caffe preprocessing by hand: RGB->BGR, subtract the ImageNet mean
        rgb = np.repeat(x * 255.0, 3, axis=-1)
        bgr = rgb[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
        return vgg(bgr).numpy() / 12.75

    expected = ((feats(t) - feats(r)) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(losses.feature_loss(t, r, vgg).numpy(), expected, rtol=1e-4)
    hybrid = losses.ContentLoss("hybrid", vgg, mse_weight=0.3, feature_weight=0.7)(t, r).numpy()
    np.testing.assert_allclose(hybrid, 0.3 * ((t - r) ** 2).mean(axis=(1, 2, 3)) + 0.7 * expected, rtol=1e-4)


def test_vgg_weights_from_path(tmp_path):
    vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path / "vgg.weights.h5"
    vgg.save_weights(path)
    loaded = losses.build_vgg_features(str(path))
    np.testing.assert_array_equal(loaded.get_layer("block1_conv1").get_weights()[0],
                                  vgg.get_layer("block1_conv1").get_weights()[0])


def test_vgg_weights_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="--vgg-weights .*file not found"):
        losses.build_vgg_features(str(tmp_path / "missing.h5"))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- unreachable")

    monkeypatch.setattr(keras.applications, "VGG19", offline)
    with pytest.raises(ConfigError) as exc:
        losses.build_vgg_features("imagenet")
    msg = str(exc.value)
    assert "--vgg-weights PATH" in msg and losses.VGG_NOTOP_FILE in msg and "\n" not in msg


def test_unknown_loss():
    with pytest.raises(ConfigError, match="--loss"):
        losses.ContentLoss("perceptual")
    with pytest.raises(ConfigError, match="needs VGG19"):
        losses.ContentLoss("feature", None)
