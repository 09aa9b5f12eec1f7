"""What notebook 02 teaches with: the loss terms of one batch, training curves read back from
TensorBoard, and the statement of which VGG weights were used. References are NumPy/hashlib."""

import hashlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig
from kerasrecon.data.demo import load_demo
from kerasrecon.data.pipeline import training_dataset
from kerasrecon.errors import DataError
from kerasrecon.losses import VGG_FEATURE_SCALE, describe_vgg_weights
from kerasrecon.training.logs import read_scalars
from kerasrecon.training.trainer import build_gan, train


def tiny(content="hybrid", **kw):
    base = dict(
        data=DataConfig(patch_size=32, batch_size=2),
        model=ModelConfig(blocks=1, filters=8),
        loss=LossConfig(content=content, vgg_weights="none"),
        seed=3,
        checkpoint_every=2,
        log_every=1,
        precision="float32",
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_loss_terms_match_numpy():
    cfg = tiny("hybrid")
    gan = build_gan(cfg)
    inputs, target = next(iter(training_dataset([load_demo(num_slices=8)], cfg)))
    terms = gan.loss_terms((inputs, target))
    x = gan.generator(inputs, training=False).numpy()
    recon = np.sqrt(x[..., :1] ** 2 + x[..., 1:] ** 2)
    t = target.numpy()
    mse = np.mean((t - recon) ** 2)
    fake = 1 / (1 + np.exp(-gan.discriminator(recon, training=False).numpy().ravel().astype(np.float64)))  # D: logits
    adv = np.mean(-np.log(fake))
    vgg = gan.content_loss.vgg

    def feats(m):
        rgb = keras.applications.vgg19.preprocess_input(np.repeat(m * 255.0, 3, axis=-1).astype(np.float32))
        return vgg(rgb, training=False).numpy() * VGG_FEATURE_SCALE

    feature = np.mean((feats(t) - feats(recon)) ** 2)
    assert terms["mse"] == pytest.approx(mse, rel=1e-4)
    assert terms["feature"] == pytest.approx(feature, rel=1e-4)
    assert terms["adversarial"] == pytest.approx(adv, rel=1e-4)
    assert terms["content"] == pytest.approx(0.5 * mse + 0.5 * feature, rel=1e-4)
    assert terms["g_loss"] == pytest.approx(0.5 * mse + 0.5 * feature + 1e-3 * adv, rel=1e-4)
    assert terms["d_fake"] == pytest.approx(np.mean(fake), rel=1e-5)
    # An MSE run has no VGG of its own: the feature term appears only when one is passed.
    mse_gan = build_gan(tiny("mse"))
    assert "feature" not in mse_gan.loss_terms((inputs, target))
    with_vgg = mse_gan.loss_terms((inputs, target), vgg=vgg)
    assert with_vgg["content"] == pytest.approx(with_vgg["mse"], rel=1e-6) and "feature" in with_vgg


def test_read_scalars_hand_written(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "tensorboard"))
    with writer.as_default():
        for step, v in [(1, 0.5), (3, 0.25), (5, 0.125)]:
            tf.summary.scalar("train/g_loss", v, step=step)
        tf.summary.scalar("val/psnr", 31.5, step=4)
        tf.summary.image("val/grid", np.zeros((1, 4, 4, 1), np.float32), step=4)  # not a scalar: skipped
    writer.flush()
    got = read_scalars(tmp_path)
    assert sorted(got) == ["train/g_loss", "val/psnr"]
    np.testing.assert_array_equal(got["train/g_loss"][0], [1, 3, 5])
    np.testing.assert_allclose(got["train/g_loss"][1], [0.5, 0.25, 0.125])
    assert got["val/psnr"][1].tolist() == [31.5]
    with pytest.raises(DataError, match="no TensorBoard event files"):
        read_scalars(tmp_path / "nothing")


def test_event_files_are_read_by_tensorboard_itself(tmp_path):
    """ScalarWriter's files (written without TensorFlow) as TensorBoard's own loader sees them: scalars
    and a PNG preview whose pixels decode back (skimage's PNG reader)."""
    import io

    from skimage.io import imread
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kerasrecon.training.logs import ScalarWriter

    w = ScalarWriter(tmp_path)
    w.scalars(1, {"train/g_loss": 0.5})
    w.scalars(3, {"train/g_loss": 0.25, "val/psnr": 31.5})
    grid = np.linspace(0, 1, 4 * 6).reshape(1, 4, 6, 1)
    w.image(3, "val/grid", grid)
    w.flush()
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0}).Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/g_loss")] == [(1, 0.5), (3, 0.25)]
    assert [e.value for e in acc.Scalars("val/psnr")] == [31.5]
    (img,) = acc.Images("val/grid/image/0")
    assert (img.step, img.width, img.height) == (3, 6, 4)
    np.testing.assert_array_equal(imread(io.BytesIO(img.encoded_image_string)), np.round(grid[0, ..., 0] * 255))
    assert read_scalars(tmp_path)["train/g_loss"][1].tolist() == [0.5, 0.25]


@pytest.mark.slow
def test_read_scalars_of_a_run(tmp_path):
    result = train(tiny("mse", steps=2, pretrain_steps=2), tmp_path / "run")  # 2 warm-start + 2 GAN steps
    got = read_scalars(tmp_path / "run")
    np.testing.assert_array_equal(got["pretrain/g_loss"][0], [1, 2])
    np.testing.assert_array_equal(got["train/g_loss"][0], [3, 4])
    np.testing.assert_array_equal(got["val/psnr"][0], [2, 4])  # at each checkpoint
    assert got["train/g_loss"][1][-1] == pytest.approx(result.logs["g_loss"], rel=1e-6)


def test_describe_vgg_weights(tmp_path):
    assert "random VGG19" in describe_vgg_weights("none")
    f = tmp_path / "vgg.h5"
    f.write_bytes(b"weights")
    text = describe_vgg_weights(str(f))
    assert str(f) in text and hashlib.sha256(b"weights").hexdigest()[:16] in text
    assert "not present" in describe_vgg_weights(str(tmp_path / "missing.h5"))
