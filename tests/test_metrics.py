import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from kerasrecon import metrics
from kerasrecon.errors import DataError


def test_hand_computed_values():
    gt = np.array([[3.0, 4.0], [0.0, 0.0]])
    pred = np.array([[3.0, 3.0], [0.0, 1.0]])
    assert metrics.nmse(gt, pred) == pytest.approx(2 / 25)
    # mse = 2/4, data_range = 4 -> 10 log10(16 / 0.5)
    assert metrics.psnr(gt, pred) == pytest.approx(10 * np.log10(32))
    assert metrics.psnr(gt, pred, data_range=8) == pytest.approx(10 * np.log10(128))
    assert metrics.psnr(gt, gt) == float("inf")


def test_against_skimage(rng):
    gt = rng.random((3, 40, 36))
    pred = gt + 0.05 * rng.standard_normal(gt.shape)
    assert metrics.psnr(gt, pred) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=gt.max()))
    ref = np.mean([structural_similarity(g, p, data_range=gt.max()) for g, p in zip(gt, pred)])
    assert metrics.ssim(gt, pred) == pytest.approx(ref)
    assert metrics.ssim(gt, gt) == pytest.approx(1.0)


def test_hfen(rng):
    gt = rng.random((2, 32, 32))
    pred = ndimage.gaussian_filter(gt, (0, 1, 1))
    lg = np.stack([ndimage.gaussian_laplace(g, 1.5) for g in gt])
    lp = np.stack([ndimage.gaussian_laplace(p, 1.5) for p in pred])
    assert metrics.hfen(gt, pred) == pytest.approx(np.sqrt(((lg - lp) ** 2).sum() / (lg ** 2).sum()))
    assert metrics.hfen(gt, gt) == 0.0


@pytest.mark.parametrize("gt, pred, match", [
    (np.ones((4, 4)), np.ones((4, 5)), "same shape"),
    (np.ones((4, 4)), np.full((4, 4), np.nan), "NaN"),
    (np.ones(4), np.ones(4), r"\[S, H, W\]"),
])
def test_bad_inputs(gt, pred, match):
    with pytest.raises(DataError, match=match):
        metrics.nmse(gt, pred)
