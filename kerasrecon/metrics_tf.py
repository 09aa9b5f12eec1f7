"""In-graph training metrics (TensorFlow). The reported evaluation metrics live in ``metrics.py``."""

import tensorflow as tf

# Slices are normalised by 1 / max|zero_filled|, so targets lie in about [0, 1]; a fixed range keeps
# the training PSNR of near-empty background patches meaningful (a per-patch max would not).
TRAIN_DATA_RANGE = 1.0


def batch_psnr(target, recon, data_range: float = TRAIN_DATA_RANGE):
    """Per-example PSNR in dB, ``10 log10(data_range² / MSE)``.

    Args:
        target, recon: float32 ``[B, H, W, C]`` normalised magnitudes.
        data_range: float, default 1.0 (the normalised scale).

    Returns:
        float32 ``[B]``.
    """
    mse = tf.reduce_mean(tf.square(target - recon), axis=[1, 2, 3])
    return 10.0 * tf.math.log(data_range ** 2 / tf.maximum(mse, 1e-12)) / tf.math.log(10.0)
