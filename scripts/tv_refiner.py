"""A residual CNN that refines converged TV at R = 8: does learning on top of TV beat TV by 1 dB?

The network's input is the converged TV image and the zero-filled image (complex, each slice
normalised so that its zero-filled image peaks at 1); its output is the TV image plus a learned
correction (zero-initialised last convolution: the untrained network returns TV). Trained with the
magnitude MSE on 64×64 crops of whole training slices, so the aliasing and the TV artefacts it sees
are those of whole-slice inference.

Stages (each cached in OUT, so a rerun resumes):

1. ``tv_DATA.npz``: converged TV (the default stopping rule, λ given by ``--lam``) of every slice of
   the *training split* (``--val-fraction``) of each ``--train`` dataset, under ``--masks`` 2-D Poisson
   masks per volume (seeds 1000 + 17·k; the held-out set's masks use seed 0).
2. ``refiner.keras``: ``--steps`` Adam steps (lr ``--lr``, cosine decay), batch ``--batch`` crops drawn
   from the datasets in equal shares, each crop turned by one of the 8 flips/quarter turns and its
   complex inputs by a random global phase; seed ``--seed``.
3. ``results.json`` and the printed table: TV and TV + CNN on ``--eval`` (all of it, masks seed
   ``--eval-mask-seed`` (default 0) + volume index, as ``kerasrecon compare``), and on the held-out
   volume(s) of the first ``--train`` dataset (mask seed 5000), through ``kerasrecon.evaluate``:
   PSNR slice mean and per-volume mean, SSIM, NMSE, HFEN, seconds per slice, per volume.

Usage: python scripts/tv_refiner.py OUT --train real_train_noisy --train demo_noisy
           --eval real_eval_noisy [-R 8] [--lam 1e-3] [--masks 12 --masks 2] [--ensemble 8]

The datasets are those of ``scripts/pretrained.sh`` (prepared with ``--phase smooth --noise 0.01``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kerasrecon.baselines import cached_tv, solve  # noqa: E402
from kerasrecon.config import MaskConfig  # noqa: E402
from kerasrecon.data import load_volumes, split_volumes  # noqa: E402
from kerasrecon.data.pipeline import turn  # noqa: E402
from kerasrecon.data.slices import evaluation_slices  # noqa: E402
from kerasrecon.evaluate import evaluate, held_out_volumes  # noqa: E402
from kerasrecon.io import atomic_file, write_text_atomic  # noqa: E402
from kerasrecon.kspace import dihedral_np, ifft2c_np  # noqa: E402

CROP = 64
METRICS = ("psnr", "ssim", "nmse", "hfen")


def tv_pairs(data: str, masks: int, acceleration: float, lam: float, val_fraction: float, path: Path):
    """Stage 1: ``{"tv", "zf": complex64 [N, H, W], "target": float32 [N, H, W]}`` (normalised scale)."""
    if path.is_file():
        return dict(np.load(path))
    train, _ = split_volumes(load_volumes(data), val_fraction)
    out = {"tv": [], "zf": [], "target": []}
    t0 = time.perf_counter()
    for k in range(masks):
        for ev in evaluation_slices(train, MaskConfig(kind="poisson", acceleration=acceleration, seed=1000 + 17 * k)):
            tv = solve("tv", ev["masked_kspace"], ev["mask"].array.astype(np.float32), lam)
            out["tv"].extend(tv)
            out["zf"].extend(ev["zero_filled"])
            out["target"].extend(ev["target"] * ev["scale"][:, None, None])
        done = f"{len(out['tv'])} TV solves, {time.perf_counter() - t0:.0f} s"
        print(f"{data}: masks {k + 1}/{masks}, {done}", flush=True)
    arrays = {k: np.stack(v) for k, v in out.items()}
    with atomic_file(path, "tv-refiner") as tmp:  # an interrupted run leaves no half-written cache
        np.savez(tmp, **arrays)
    return arrays


def channels(tv: np.ndarray, zf: np.ndarray) -> np.ndarray:
    """Complex ``[..., H, W]`` TV and zero-filled images -> float32 ``[..., H, W, 4]`` (re, im, re, im)."""
    return np.stack([tv.real, tv.imag, zf.real, zf.imag], -1).astype(np.float32)


def build_refiner(blocks: int, filters: int):
    """``[B, H, W, 4]`` float32 -> ``[B, H, W, 2]``: the TV image (channels 0-1) plus a correction."""
    import keras
    from keras import layers

    inp = keras.Input((None, None, 4))
    h = layers.Conv2D(filters, 3, padding="same", activation="relu")(inp)
    for _ in range(blocks):
        r = layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = layers.Add()([h, layers.Conv2D(filters, 3, padding="same")(r)])
    correction = layers.Conv2D(2, 3, padding="same", kernel_initializer="zeros")(h)
    return keras.Model(inp, layers.Add()([inp[..., :2], correction]))


def train_refiner(sets, args, path: Path):
    """Stage 2: the trained refiner (``keras.Model``), saved to ``path``."""
    import keras
    from keras import ops

    if path.is_file():
        return keras.models.load_model(path, compile=False)
    keras.utils.set_random_seed(args.seed)
    # channels first, the target as a fifth channel: [N, 5, H, W], so a crop is turned in one call
    sets = [np.concatenate([np.moveaxis(channels(s["tv"], s["zf"]), -1, 1), s["target"][:, None]], 1) for s in sets]
    model = build_refiner(args.blocks, args.filters)

    def magnitude_mse(target, pred):
        return ops.mean((ops.sqrt(ops.sum(pred * pred, -1) + 1e-12) - target) ** 2)

    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(args.lr, args.steps)), magnitude_mse)
    rng = np.random.default_rng(args.seed)

    def draw():
        xb, tb = [], []
        for _ in range(args.batch):
            x = sets[rng.integers(len(sets))]
            n, _, h, w = x.shape
            i, y0, x0, t = rng.integers(n), rng.integers(h - CROP + 1), rng.integers(w - CROP + 1), rng.integers(8)
            a = turn(x[i, :, y0 : y0 + CROP, x0 : x0 + CROP], t)
            c = (a[0:4:2] + 1j * a[1:4:2]) * np.exp(1j * rng.uniform(0, 2 * np.pi))
            xb.append(channels(c[0], c[1]))
            tb.append(a[4])
        return np.stack(xb), np.stack(tb)

    return train_loop(model, draw, args.steps, path)


def train_loop(model, draw, steps: int, path: Path, every: int = 500):
    """``steps`` ``train_on_batch`` calls of the compiled ``model`` on ``draw()``'s ``(inputs,
    targets)``, printing the smoothed loss every ``every`` steps; the model is then saved to ``path``
    (temp-then-rename: an interrupted run leaves no half-written file) and returned."""
    t0, smoothed = time.perf_counter(), None
    for step in range(1, steps + 1):
        loss = float(model.train_on_batch(*draw()))
        smoothed = loss if smoothed is None else 0.98 * smoothed + 0.02 * loss
        if step % every == 0:
            print(f"step {step}: loss {smoothed:.6f}, {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"trained {steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    with atomic_file(path, path.stem) as tmp:
        model.save(tmp)
    return model


def recon_fns(model, lam: float, ensemble: int = 1) -> dict:
    """``{"tv": ..., "tv_refiner": ...}`` in ``kerasrecon.evaluate``'s ReconFn signature (TV solved once).
    ``ensemble`` 8: the refiner's output is the mean over its input images' 8 mirrorings/transposes
    (``kspace.dihedral_np``), each turned back."""
    tv_of, tv = cached_tv(lam)

    def refined(kspace, mask, batch_size=None, maps=None):
        kspace, mask = np.asarray(kspace), np.asarray(mask)
        x_tv, zf = tv_of(kspace, mask), ifft2c_np(kspace * mask)
        scale = 1.0 / np.abs(zf).reshape(len(zf), -1).max(1)[:, None, None]
        x = np.moveaxis(channels(x_tv * scale, zf * scale), -1, 1)  # [B, 4, H, W]
        pred = np.mean(
            [
                dihedral_np(
                    np.moveaxis(model.predict(np.moveaxis(dihedral_np(x, t), 1, -1), batch_size=1, verbose=0), -1, 1),
                    t,
                    inverse=True,
                )
                for t in range(ensemble)
            ],
            0,
        )  # [B, 2, H, W]
        return (np.hypot(pred[:, 0], pred[:, 1]) / scale).astype(np.float32)

    return {"tv": tv, "tv_refiner": refined}


def scores(volumes, mask_cfg, fns) -> dict:
    """Per method: PSNR slice mean and per-volume mean; SSIM, NMSE and HFEN slice means; wall seconds
    per slice (a method that reuses another's cached work, such as TV, counts only its own); and each
    volume's slice means of the four metrics."""
    result = evaluate(fns, volumes, mask_cfg)
    rows, out = result.rows, {}
    for method in ["zero_filled", *fns]:
        mine = [r for r in rows if r["method"] == method]
        names = sorted({r["volume"] for r in mine})
        vol = {v: [r for r in mine if r["volume"] == v] for v in names}
        out[method] = {
            "psnr_slice_mean": float(np.mean([r["psnr"] for r in mine])),
            "psnr_volume_mean": float(np.mean([np.mean([r["psnr"] for r in vol[v]]) for v in names])),
            **{f"{m}_slice_mean": float(np.mean([r[m] for r in mine])) for m in ("ssim", "nmse", "hfen")},
            "seconds_per_slice": float(result.summary[method]["seconds_per_slice"]),
            "volumes": {v: {m: float(np.mean([r[m] for r in vol[v]])) for m in METRICS} for v in names},
        }
    return out


def print_results(results: dict, acceleration: float) -> None:
    """The table of :func:`scores` for the ``eval`` and ``train_held_out`` parts of ``results``."""
    for part in ("eval", "train_held_out"):
        print(f"\n{part} (R = {acceleration:g}, Poisson): PSNR slice / volume mean, SSIM, ...; per volume PSNR")
        for method, r in results[part].items():
            per = ", ".join(f"{v} {s['psnr']:.2f}" for v, s in r["volumes"].items())
            means = f"{r['psnr_slice_mean']:.2f} / {r['psnr_volume_mean']:.2f}, {r['ssim_slice_mean']:.3f}"
            means += f", NMSE {r['nmse_slice_mean']:.4f}, HFEN {r['hfen_slice_mean']:.3f}"
            means += f", {r['seconds_per_slice']:.2f} s/slice"
            print(f"  {method}: {means}; {per}")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of every R = 8 experiment script: data, acceleration, TV λ, split, seed, ensemble."""
    p.add_argument("out", type=Path)
    p.add_argument("--train", action="append", required=True, help="prepared dataset (repeatable)")
    p.add_argument("--eval", required=True, help="prepared held-out dataset (every volume is scored)")
    p.add_argument("-R", "--acceleration", type=float, default=8.0)
    p.add_argument("--lam", type=float, default=1e-3, help="TV λ (the value swept on the training split)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ensemble", type=int, choices=(1, 8), default=1, help="8: average the flips/transposes")
    p.add_argument("--eval-mask-seed", type=int, default=0, help="masks of --eval: this seed + volume index")


def report(args, fns: dict, held_out, **extra) -> dict:
    """Score ``fns`` on ``--eval`` (masks seed ``--eval-mask-seed`` + volume index) and on
    ``held_out`` (the first training dataset's held-out volumes, mask seed 5000); write
    ``OUT/results.json`` (with ``args`` and ``extra``) and print the table. Returns the results."""
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {
        "settings": settings,
        **extra,
        "eval": scores(
            held_out_volumes(args.eval, args.val_fraction, "all"),
            MaskConfig(kind="poisson", acceleration=args.acceleration, seed=args.eval_mask_seed),
            fns,
        ),
        "train_held_out": scores(held_out, MaskConfig(kind="poisson", acceleration=args.acceleration, seed=5000), fns),
    }
    write_text_atomic(args.out / "results.json", json.dumps(results, indent=2))
    print_results(results, args.acceleration)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--masks", action="append", type=int, help="masks per volume, one per --train (default 4)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    args = p.parse_args(argv)
    masks = args.masks or [4] * len(args.train)
    if len(masks) != len(args.train):
        p.error(f"--masks: give one per --train ({len(args.train)}), got {len(masks)}")
    args.out.mkdir(parents=True, exist_ok=True)
    sets = [
        tv_pairs(d, m, args.acceleration, args.lam, args.val_fraction, args.out / f"tv_{Path(d).name}.npz")
        for d, m in zip(args.train, masks)
    ]
    model = train_refiner(sets, args, args.out / "refiner.keras")
    held_out = split_volumes(load_volumes(args.train[0]), args.val_fraction)[1]
    report(args, recon_fns(model, args.lam, args.ensemble), held_out, masks=masks)


if __name__ == "__main__":
    sys.exit(main())
