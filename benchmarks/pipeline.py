"""Input pipeline and mask benchmarks (JSON on stdout).

* patches/s of ``kerasrecon.data.pipeline.training_dataset`` (tf.data, parallel map) vs a plain NumPy
  loop doing the same work per sample (random slice and crop, scale, FFT, mask, IFFT), same run;
* 444×448 Poisson mask time of ``kerasrecon.masks.PoissonMask`` vs ``sigpy.mri.poisson`` (skipped if
  sigpy is not installed), with both achieved accelerations.

    python benchmarks/pipeline.py [--batches 40] [--patch 96] [--batch 16]
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from common import machine  # noqa: E402

from kerasrecon.config import DataConfig, TrainConfig  # noqa: E402
from kerasrecon.data.demo import load_demo  # noqa: E402
from kerasrecon.data.pipeline import training_dataset  # noqa: E402
from kerasrecon.data.slices import normalisation_scales, reference_masks  # noqa: E402
from kerasrecon.kspace import fft2c_np, ifft2c_np  # noqa: E402
from kerasrecon.masks import PoissonMask  # noqa: E402


def numpy_patches(volume, cfg, n):
    """The same per-sample work as the tf.data pipeline, in a NumPy loop."""
    rng = np.random.default_rng(cfg.seed)
    scale = normalisation_scales([volume], reference_masks([volume], cfg.mask))[0]
    images = volume.images * scale[:, None, None]
    p = cfg.data.patch_size
    mask = PoissonMask(cfg.mask.acceleration)((p, p), cfg.mask.seed).array
    s_, h, w = images.shape
    out = []
    for _ in range(n):
        s, top, left = rng.integers(s_), rng.integers(h - p + 1), rng.integers(w - p + 1)
        patch = images[s, top : top + p, left : left + p]
        masked = fft2c_np(patch) * mask
        out.append((ifft2c_np(masked), masked, np.abs(patch)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    cfg = TrainConfig(data=DataConfig(patch_size=a.patch, batch_size=a.batch))
    vol = load_demo()
    it = iter(training_dataset([vol], cfg))
    next(it)
    t0 = time.perf_counter()
    for _ in range(a.batches):
        next(it)
    tf_rate = a.batches * a.batch / (time.perf_counter() - t0)
    n = a.batches * a.batch
    t0 = time.perf_counter()
    numpy_patches(vol, cfg, n)
    np_rate = n / (time.perf_counter() - t0)

    masks = {}
    for r in (4, 6, 8):
        t0 = time.perf_counter()
        m = PoissonMask(r)((444, 448), seed=0)
        ours = time.perf_counter() - t0
        row = {"kerasrecon_s": round(ours, 3), "kerasrecon_achieved_R": round(m.achieved_acceleration, 4)}
        try:
            import sigpy.mri

            t0 = time.perf_counter()
            sm = sigpy.mri.poisson((444, 448), r, calib=(22, 22), seed=0)
            row.update(
                sigpy_s=round(time.perf_counter() - t0, 3), sigpy_achieved_R=round(sm.size / np.count_nonzero(sm), 4)
            )
            row["time_ratio_sigpy_over_kerasrecon"] = round(row["sigpy_s"] / ours, 2)
        except ImportError:
            row["sigpy"] = "not installed"
        masks[f"R{r}"] = row
    print(
        json.dumps(
            {
                "benchmark": "pipeline",
                "machine": machine(),
                "settings": {"patch": a.patch, "batch": a.batch, "batches": a.batches, "data": "demo"},
                "tfdata_patches_per_s": round(tf_rate, 1),
                "numpy_loop_patches_per_s": round(np_rate, 1),
                "ratio_tfdata_over_numpy": round(tf_rate / np_rate, 2),
                "poisson_444x448": masks,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
