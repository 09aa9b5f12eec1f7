import csv
import json

import numpy as np
import pytest

from kerasrecon import metrics
from kerasrecon.compare import _markdown, compare_runs, comparison_table, paired_difference
from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig
from kerasrecon.data.demo import demo_images
from kerasrecon.errors import DataError
from kerasrecon.masks import make_mask
from kerasrecon.training.checkpoint import load_generator
from kerasrecon.training.trainer import train
from tests.conftest import ref_fft2c, ref_ifft2c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    dirs = []
    for loss in ("mse", "feature", "hybrid"):
        cfg = TrainConfig(
            data=DataConfig(patch_size=32, batch_size=2, val_fraction=0.05),
            model=ModelConfig(blocks=1, filters=8),
            loss=LossConfig(content=loss, vgg_weights="none"),
            steps=2,
            checkpoint_every=2,
            seed=0,
        )
        train(cfg, root / loss)
        dirs.append(root / loss)
    return root, dirs


def test_paired_difference_by_hand():
    d = paired_difference([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])  # differences 2, 3, 4: mean 3, sd 1
    half = 4.302652729911275 / np.sqrt(3)  # t_{0.975, 2}
    assert d["mean"] == pytest.approx(3.0)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((3 - half, 3 + half))


def test_per_volume_means_by_hand():
    """Volume a has 3 slices, b has 1: the slice mean weights a 3:1, the per-volume mean 1:1."""
    psnr = {
        ("tv", "a"): [30.0, 31.0, 32.0],
        ("tv", "b"): [20.0],
        ("net", "a"): [31.0, 32.0, 33.0],
        ("net", "b"): [18.0],
    }
    rows = [
        {"method": m, "volume": v, "slice": i, "acceleration": 4.0, "mask_kind": "poisson", "mask_seed": 0,
         "psnr": p, "nmse": 0.1, "ssim": 0.5, "hfen": 0.2}
        for (m, v), ps in psnr.items()
        for i, p in enumerate(ps)
    ]  # fmt: skip
    table = {r["method"]: r for r in comparison_table(rows, "tv")}
    assert table["tv"]["psnr_mean"] == pytest.approx((30 + 31 + 32 + 20) / 4)
    assert table["tv"]["psnr_vol_mean"] == pytest.approx((31 + 20) / 2)
    assert table["net"]["psnr_diff_vs_tv"] == pytest.approx((1 + 1 + 1 - 2) / 4)
    assert table["net"]["psnr_vol_diff_vs_tv"] == pytest.approx((1 - 2) / 2)
    used = {"min": 300, "mean": 410.5, "max": 520}
    tv = {
        "lam": 0.01,
        "tuned_on": "x",
        "tol": 1e-5,
        "iters": 5000,
        "grid": [0.01],
        "sweep_psnr": [],
        "iterations_used": used,
    }
    meta = {
        "mask": {"acceleration": 4, "kind": "poisson", "seed": 0},
        "data": "d",
        "split": "val",
        "baselines": {"tv": tv},
    }
    md = _markdown(list(table.values()), "tv", meta)
    assert "| net | 28.50 ± " in md and "| 25.00 |" in md and "| -0.50 [" in md
    assert "tolerance 1e-05, at most 5000 iterations; iterations used per slice 300–520 (mean 410.5)" in md


def test_table_equals_metrics_on_independent_recons(runs):
    root, dirs = runs
    result = compare_runs(dirs, root / "out")
    for name in ("table.md", "table.csv", "slices.csv", "summary.json", "examples.png", "psnr.png"):
        assert (root / "out" / name).stat().st_size > 0
    table = {r["method"]: r for r in result["table"]}
    assert set(table) == {"zero_filled", "mse", "feature", "hybrid"} and result["reference"] == "mse"

    # Independent recomputation: held-out slices = last ceil(0.05 * 60) = 3 demo slices.
    images = demo_images()[-3:].astype(np.complex64)
    kspace = ref_fft2c(images)
    mask = make_mask("poisson", 4, images.shape[1:], 0).array
    masked = kspace * mask
    zf = ref_ifft2c(masked)
    scale = 1 / np.abs(zf).reshape(3, -1).max(1)[:, None, None]
    target = np.abs(images)
    ch = lambda x: np.stack([x.real, x.imag], -1).astype(np.float32)  # noqa: E731
    per_method = {"zero_filled": np.abs(zf)}
    for d in dirs:
        cfg, g, _ = load_generator(d)
        out = g(
            {
                "zero_filled": ch(zf * scale),
                "masked_kspace": ch(masked * scale),
                "mask": np.broadcast_to(mask, target.shape).astype(np.float32),
            }
        ).numpy()
        per_method[cfg.loss.content] = np.hypot(out[..., 0], out[..., 1]) / scale
    rng = target.max()
    psnr = {m: [metrics.psnr(target[i], p[i], data_range=rng) for i in range(3)] for m, p in per_method.items()}
    for m, p in per_method.items():
        assert table[m]["psnr_mean"] == pytest.approx(np.mean(psnr[m]), abs=1e-3)
        assert table[m]["ssim_mean"] == pytest.approx(
            np.mean([metrics.ssim(target[i], p[i], data_range=rng) for i in range(3)]), abs=1e-3
        )
    diffs = np.array(psnr["hybrid"]) - np.array(psnr["mse"])
    assert table["hybrid"]["psnr_diff_vs_mse"] == pytest.approx(diffs.mean(), abs=1e-3)
    rows = list(csv.DictReader(open(root / "out" / "slices.csv")))
    assert {r["mask_kind"] for r in rows} == {"poisson"} and {r["acceleration"] for r in rows} == {"4.0"}
    assert json.loads((root / "out" / "summary.json").read_text())["meta"]["mask"]["seed"] == 0


def test_compare_refuses_overwrite_and_bad_runs(runs, tmp_path):
    root, dirs = runs
    (tmp_path / "table.md").write_text("mine")
    with pytest.raises(DataError, match="force=True"):
        compare_runs(dirs, tmp_path)
    assert (tmp_path / "table.md").read_text() == "mine"
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a kerasrecon run"):
        compare_runs([tmp_path / "plain"], tmp_path / "o")
