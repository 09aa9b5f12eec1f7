"""Plug-and-play inference (``pretrained:singlecoil-r8``): seconds per slice of ``Reconstructor`` (NumPy TV,
then the denoiser steps) against the model's SavedModel (the whole solver in one TensorFlow graph,
``export.PnPModule``), same slices and masks, one slice per call, for a few slice sizes.

Reports, per size: both times, the ratio SavedModel / Reconstructor, the TV iterations the NumPy solver
used, and the largest difference of the two images relative to the peak (expected ~1e-5). The first
SavedModel call of a size traces nothing (the graph is saved) but is excluded as warm-up like the
others.

    python benchmarks/pnp.py [--repeats 2] [--sizes 64 124x101 256]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from common import machine, seconds_per_call  # noqa: E402

from kerasrecon import Reconstructor  # noqa: E402
from kerasrecon.baselines import solve  # noqa: E402
from kerasrecon.data.demo import demo_images  # noqa: E402
from kerasrecon.export import export_run  # noqa: E402
from kerasrecon.kspace import fft2c_np  # noqa: E402
from kerasrecon.masks import make_mask  # noqa: E402


def size(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    return int(h), int(w or h)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sizes", type=size, nargs="+", default=[(64, 64), (124, 101), (256, 256)])
    a = ap.parse_args()
    rec = Reconstructor.pretrained("singlecoil-r8")
    image = demo_images()[50]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        served = Reconstructor.from_export(export_run("pretrained:singlecoil-r8", Path(tmp) / "exp"))
        for h, w in a.sizes:
            ys = np.linspace(0, image.shape[0] - 1, h).round().astype(int)
            xs = np.linspace(0, image.shape[1] - 1, w).round().astype(int)
            k = fft2c_np(image[np.ix_(ys, xs)].astype(np.complex64))[None]
            mask = make_mask("poisson", 8, (h, w), seed=0).array
            t_rec = seconds_per_call(lambda: rec(k, mask), a.repeats)
            t_saved = seconds_per_call(lambda: served(k, mask), a.repeats)
            diff = np.abs(rec(k, mask) - served(k, mask)).max() / np.abs(rec(k, mask)).max()
            _, used = solve("tv", k * mask, mask, rec.config.pnp.tv_lambda, return_iterations=True)
            results[f"{h}x{w}"] = {
                "reconstructor_s": round(t_rec, 3),
                "savedmodel_s": round(t_saved, 3),
                "ratio_savedmodel_over_reconstructor": round(t_saved / t_rec, 3),
                "tv_iterations": int(used[0]),
                "max_difference_over_peak": float(f"{diff:.2g}"),
            }
    print(
        json.dumps(
            {
                "benchmark": "pnp",
                "machine": machine(),
                "model": "pretrained:singlecoil-r8",
                "solver": f"TV λ {rec.config.pnp.tv_lambda:g}, then {rec.config.pnp.iters} denoiser steps",
                "repeats": a.repeats,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
