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
    assert metrics.hfen(gt, pred) == pytest.approx(np.sqrt(((lg - lp) ** 2).sum() / (lg**2).sum()))
    assert metrics.hfen(gt, gt) == 0.0


@pytest.mark.parametrize(
    "gt, pred, match",
    [
        (np.ones((4, 4)), np.ones((4, 5)), "same shape"),
        (np.ones((4, 4)), np.full((4, 4), np.nan), "NaN"),
        (np.ones(4), np.ones(4), r"\[S, H, W\]"),
    ],
)
def test_bad_inputs(gt, pred, match):
    with pytest.raises(DataError, match=match):
        metrics.nmse(gt, pred)


def test_score_predictions_follows_fastmri_evaluate(tmp_path, rng):
    """Folders in fastMRI's layout: the target cropped to a square of its own width and the prediction
    to the same square, metrics per volume (NumPy and skimage references written out here), fastMRI's
    summary: metrics sorted by name, mean +/- 2·std with ddof 1 (``runstats``), ``nan`` for one volume."""
    import h5py
    from click.testing import CliRunner
    from skimage.metrics import structural_similarity

    from kerasrecon.evaluate import score_predictions
    from kerasrecon_cli.main import cli

    (tmp_path / "t").mkdir()
    (tmp_path / "p").mkdir()
    expected = {}
    for name, acq in [("a", "CORPD_FBK"), ("b", "CORPD_FBK"), ("c", "CORPDFS_FBK")]:
        target = rng.random((3, 48, 40)).astype(np.float32)  # fastMRI: crop to 40×40, rows 4..43
        pred = rng.random((3, 44, 44)).astype(np.float32)  # cropped to the same 40×40: rows and columns 2..41
        pred[:, 2:42, 2:42] = target[:, 4:44] + 0.05 * rng.standard_normal((3, 40, 40))
        with h5py.File(tmp_path / "t" / f"{name}.h5", "w") as f:
            f.create_dataset("reconstruction_esc", data=target)
            f.attrs["acquisition"] = acq
        with h5py.File(tmp_path / "p" / f"{name}.h5", "w") as f:
            f.create_dataset("reconstruction", data=pred)
        gt, pred = target[:, 4:44], pred[:, 2:42, 2:42]
        ref_ssim = np.mean([structural_similarity(g, p, data_range=gt.max(), win_size=7) for g, p in zip(gt, pred)])
        expected[name] = {
            "mse": np.mean((gt.astype(np.float64) - pred) ** 2),
            "nmse": np.sum((gt - pred) ** 2) / np.sum(gt**2),
            "psnr": 10 * np.log10(gt.max() ** 2 / np.mean((gt - pred) ** 2)),
            "ssim": ref_ssim,
        }
    res = score_predictions(tmp_path / "p", tmp_path / "t")
    for name, ref in expected.items():
        for m, v in ref.items():
            assert res["per_volume"][name][m] == pytest.approx(v, rel=1e-5), (name, m)
    psnrs = [expected[n]["psnr"] for n in "abc"]
    sample_std = np.sqrt(np.sum((np.array(psnrs) - np.mean(psnrs)) ** 2) / (len(psnrs) - 1))
    assert res["fastmri"]["PSNR"] == f"{np.mean(psnrs):.4g} +/- {2 * sample_std:.4g}"
    assert list(res["fastmri"]) == ["MSE", "NMSE", "PSNR", "SSIM"]
    only = score_predictions(tmp_path / "p", tmp_path / "t", acquisition="CORPDFS_FBK")
    assert list(only["per_volume"]) == ["c"] and only["fastmri"]["PSNR"].endswith("+/- nan")
    out = CliRunner().invoke(cli, ["score", "--predictions", str(tmp_path / "p"), "--targets", str(tmp_path / "t")])
    assert out.exit_code == 0 and "fastMRI convention: MSE = " in out.output and "3 volume(s)" in out.output
    (tmp_path / "p" / "b.h5").unlink()
    out = CliRunner().invoke(cli, ["score", "--predictions", str(tmp_path / "p"), "--targets", str(tmp_path / "t")])
    assert out.exit_code == 2 and "no b.h5" in out.output
