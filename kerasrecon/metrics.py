"""Reconstruction metrics (NumPy), with fastMRI's conventions (``fastmri/evaluate.py``).

All take magnitude volumes ``[S, H, W]`` (a 2-D ``[H, W]`` array is one slice), float, same shape.

| metric | definition | computed over |
| --- | --- | --- |
| NMSE | ``‖gt − pred‖² / ‖gt‖²`` | the whole volume |
| PSNR | ``10 log10(data_range² / mean((gt − pred)²))``, data_range = ``gt.max()`` of the volume | the whole volume |
| SSIM | mean over slices of ``skimage.metrics.structural_similarity`` (7×7 window), data_range = volume max | per slice, averaged |
| HFEN | ``‖LoG(gt) − LoG(pred)‖ / ‖LoG(gt)‖``, 2-D Laplacian of Gaussian per slice, σ = 1.5 px | the whole volume |

Per-slice result rows apply the same formulas to one slice but keep the *volume's* data range.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from kerasrecon.errors import DataError

HFEN_SIGMA = 1.5
SSIM_WINDOW = 7


def _prepare(gt, pred):
    gt, pred = np.asarray(gt, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if gt.shape != pred.shape:
        raise DataError(f"metrics need arrays of the same shape. Received: gt {gt.shape}, pred {pred.shape}")
    if gt.ndim == 2:
        gt, pred = gt[None], pred[None]
    if gt.ndim != 3:
        raise DataError(f"metrics need [S, H, W] or [H, W] magnitudes. Received: shape={gt.shape}")
    if not (np.all(np.isfinite(gt)) and np.all(np.isfinite(pred))):
        raise DataError("metrics received NaN/Inf values")
    return gt, pred


def _range(gt, data_range):
    rng = float(gt.max()) if data_range is None else float(data_range)
    if rng <= 0:
        raise DataError(f"data_range must be > 0. Received: {rng}")
    return rng


def nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Normalised MSE ``‖gt − pred‖² / ‖gt‖²`` over the volume."""
    gt, pred = _prepare(gt, pred)
    return float(np.sum((gt - pred) ** 2) / np.sum(gt**2))


def psnr(gt: np.ndarray, pred: np.ndarray, data_range: float | None = None) -> float:
    """PSNR in dB over the volume; ``data_range`` defaults to ``gt.max()``."""
    gt, pred = _prepare(gt, pred)
    mse = float(np.mean((gt - pred) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(_range(gt, data_range) ** 2 / mse))


def ssim(gt: np.ndarray, pred: np.ndarray, data_range: float | None = None) -> float:
    """Mean over slices of skimage SSIM (7×7 window); ``data_range`` defaults to the volume max."""
    gt, pred = _prepare(gt, pred)
    rng = _range(gt, data_range)
    return float(np.mean([structural_similarity(g, p, data_range=rng, win_size=SSIM_WINDOW) for g, p in zip(gt, pred)]))


def hfen(gt: np.ndarray, pred: np.ndarray, sigma: float = HFEN_SIGMA) -> float:
    """High-frequency error norm with a per-slice 2-D LoG of width ``sigma`` (default 1.5 px)."""
    gt, pred = _prepare(gt, pred)
    log_gt = np.stack([ndimage.gaussian_laplace(g, sigma) for g in gt])
    log_pred = np.stack([ndimage.gaussian_laplace(p, sigma) for p in pred])
    return float(np.linalg.norm(log_gt - log_pred) / np.linalg.norm(log_gt))


METRICS = {"nmse": nmse, "psnr": psnr, "ssim": ssim, "hfen": hfen}


def all_metrics(gt: np.ndarray, pred: np.ndarray, data_range: float | None = None) -> dict:
    """``{"nmse", "psnr", "ssim", "hfen"}`` of one volume (or slice, with the volume's data_range)."""
    return {
        "nmse": nmse(gt, pred),
        "psnr": psnr(gt, pred, data_range),
        "ssim": ssim(gt, pred, data_range),
        "hfen": hfen(gt, pred),
    }
