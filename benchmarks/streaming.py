"""Peak memory and speed of ``fit`` and ``evaluate`` as a prepared dataset grows: synthetic prepared
datasets of 10, 100 and 1,000 volumes (20 slices of 64×64 each; one multi-coil row with 8 coils), a
short ``fit`` of a small model (2 blocks × 16 filters, 32×32 patches, batch 4, MSE) on each, then
``evaluate`` of that run on its held-out volumes — the last 5 of every dataset, so that evaluation
does the same work whatever the dataset's size. Every measurement runs in its own process, which
reports its own peak resident memory (``ru_maxrss``); steps/s is the steady rate between the reads at
``--steps`` / 3 and ``--steps`` (compilation and start-up excluded), the best of ``--repeats`` runs
(the machine is shared), and evaluation's rate is held-out slices per second of the whole
``evaluate_run`` call.

    python benchmarks/streaming.py [--volumes 10 100 1000] [--coil-volumes 100] [--backends tensorflow jax]

Prints one JSON object. The datasets are written under ``--work`` and reused by a later run with the
same ``--work`` (so that two versions of kerasrecon are measured on the same files); without it, in
a temporary folder removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # this checkout's kerasrecon, installed or not
sys.path.insert(0, str(ROOT))
SLICES, SIZE = 20, 64
HELD_OUT = 5  # volumes evaluated, whatever the dataset's size


def make_dataset(out: Path, volumes: int, coils: int = 1, seed: int = 0) -> int:
    """A prepared dataset of ``volumes`` synthetic volumes (``[20, 64, 64]`` smooth random complex
    images; with ``coils`` > 1 also ``coil_kspace`` and ``maps`` ``[20, C, 64, 64]``), written as
    ``data prepare`` writes them. Returns the bytes written."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE - 0.5
    base = []
    for _ in range(8):  # smooth blobs: a few Gaussian ellipses with random phase
        img = np.zeros((SIZE, SIZE), np.complex128)
        for _ in range(6):
            cy, cx, sy, sx = rng.uniform(-0.3, 0.3, 2).tolist() + rng.uniform(0.05, 0.2, 2).tolist()
            img += rng.uniform(0.2, 1) * np.exp(-((yy - cy) ** 2 / sy**2 + (xx - cx) ** 2 / sx**2))
        base.append(img * np.exp(1j * rng.uniform(0, 2 * np.pi)))
    base = np.stack(base)

    def fft2c(x):
        return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))

    angles = np.arange(coils)[:, None, None] * 2 * np.pi / max(coils, 1)
    maps = np.exp(-((yy[None] - 0.4 * np.sin(angles)) ** 2 + (xx[None] - 0.4 * np.cos(angles)) ** 2) / 0.3)
    maps = (maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))).astype(np.complex64)
    from kerasrecon.data.volume import write_prepared_volume

    entries, total = [], 0
    for v in range(volumes):
        images = base[rng.integers(0, len(base), SLICES)] * rng.uniform(0.5, 1.5, (SLICES, 1, 1))
        images = images + 0.01 * rng.standard_normal(images.shape)
        name = f"vol{v:04d}.h5"
        arrays, attrs = {"kspace": fft2c(images)}, {"source": "benchmarks/streaming.py", "scale": 1.0}
        if coils > 1:
            arrays["maps"] = np.broadcast_to(maps, (SLICES, *maps.shape))
            arrays["coil_kspace"] = fft2c(arrays["maps"] * images[:, None])
            attrs["coils"] = coils
        write_prepared_volume(out / name, arrays, attrs)  # the format `kerasrecon data prepare` writes
        total += (out / name).stat().st_size
        entries.append({"file": name, "shape": [SLICES, SIZE, SIZE]})
    manifest = {"format": "kerasrecon-dataset", "version": 1, "volumes": entries}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return total


def child_fit(data: str, run: str, steps: int, volumes: int) -> dict:
    """Train the small model on ``data`` into ``run``: steady steps/s and seconds to the first step."""
    from common import small_config

    from kerasrecon.training.trainer import train

    cfg = small_config(steps, log_every=steps // 6, data=data, val_fraction=HELD_OUT / volumes)
    marks, t0 = {}, time.perf_counter()
    train(cfg, Path(run), progress=lambda s, t, _: marks.setdefault(s, time.perf_counter()))
    first = min(s for s in marks if s > 0)
    low = min(s for s in marks if s >= steps // 3)
    return {
        "steps_per_s": round((steps - low) / (marks[steps] - marks[low]), 2),
        "seconds_to_first_read": round(marks[first] - t0, 2),
    }


def child_evaluate(run: str) -> dict:
    """Evaluate ``run`` on its held-out split: slices/s of the whole call."""
    from kerasrecon.evaluate import evaluate_run

    t0 = time.perf_counter()
    result = evaluate_run(run)
    seconds = time.perf_counter() - t0
    n = len({(r["volume"], r["slice"]) for r in result.rows})
    return {"slices": n, "slices_per_s": round(n / seconds, 2), "seconds": round(seconds, 2)}


def in_child(args: list[str], backend: str) -> dict:
    """Run this script's ``--child`` mode in a fresh process; its JSON line plus its peak RSS."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    res = subprocess.run(
        [sys.executable, __file__, "--child", *args], env=env, capture_output=True, text=True, check=False
    )
    if res.returncode:
        tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"streaming.py: the {args[0]} run on {backend} failed: {tail}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--coil-volumes", type=int, nargs="*", default=[100])
    ap.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--work", default=None, help="folder for the datasets, kept and reused by later runs (default: a temporary one)"
    )
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        out = child_fit(rest[0], rest[1], int(rest[2]), int(rest[3])) if kind == "fit" else child_evaluate(rest[0])
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(out))
        return
    from common import machine

    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        cases = [(n, 1) for n in a.volumes] + [(n, 8) for n in a.coil_volumes]
        for n, coils in cases:
            data = Path(a.work or work) / f"data_{n}_{coils}"
            if not (data / "manifest.json").exists():
                make_dataset(data, n, coils)
            size = sum(f.stat().st_size for f in data.glob("*.h5"))
            for backend in a.backends:
                run = work / f"run_{n}_{coils}_{backend}"
                row = {"volumes": n, "slices": n * SLICES, "coils": coils, "dataset_mb": round(size / 2**20, 1)}
                row["backend"] = backend
                fits = []
                for _ in range(a.repeats):
                    shutil.rmtree(run, ignore_errors=True)
                    fits.append(in_child(["fit", str(data), str(run), str(a.steps), str(n)], backend))
                row["fit"] = max(fits, key=lambda f: f["steps_per_s"])
                row["fit"]["steps_per_s_runs"] = [f["steps_per_s"] for f in fits]
                row["fit"]["peak_rss_mb"] = max(f["peak_rss_mb"] for f in fits)
                if backend == a.backends[0]:
                    row["evaluate"] = in_child(["evaluate", str(run)], backend)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    meta = {"steps": a.steps, "repeats": a.repeats, "held_out_volumes": HELD_OUT}
    print(json.dumps({"benchmark": "streaming", "machine": machine(), **meta, "rows": rows}))


if __name__ == "__main__":
    main()
