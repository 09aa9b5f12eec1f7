"""In-graph training metrics in ``keras.ops`` (any backend). The reported evaluation metrics (NMSE,
PSNR, SSIM, HFEN on whole slices, NumPy) live in ``metrics.py``."""

from keras import ops

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
    mse = ops.mean(ops.square(ops.cast(target, "float32") - ops.cast(recon, "float32")), axis=(1, 2, 3))
    return 10.0 * ops.log10(data_range**2 / ops.maximum(mse, 1e-12))
