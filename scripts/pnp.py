"""Plug-and-play reconstruction at R = 8 (:mod:`kerasrecon.pnp`): train the denoiser, choose the
solver's settings on held-out *training* data, score against converged TV.

A denoiser learns a local image prior (noise removal), not a map from one aliasing pattern to an
image, so it has less to overfit to the training anatomy. The solver is half-quadratic splitting
with a decreasing noise level (DPIR) and exact data consistency, from the converged TV image
(``--init tv``, the default) or the zero-filled image (``--init zf``); :mod:`kerasrecon.pnp` has the
equations, :mod:`kerasrecon.models.denoiser` the bias-free noise-conditioned U-Net.

Stages (each kept in OUT, so a rerun resumes):

1. ``OUT/run``: :func:`kerasrecon.training.denoiser.train_denoiser`, ``--steps`` Adam steps (lr ``--lr``, cosine
   decay to 1 %) on ``--crop``² crops of the fully sampled images of the *training split*
   (``--val-fraction``) of each ``--train`` dataset, in equal shares, with noise σ ~ U(0, ``--sigma-max``).
2. ``sweep.json``: PnP's PSNR on the held-out volume(s) of the first ``--train`` dataset (mask seed
   5000, never the evaluation set's) for each ``--iters`` × ``--sigma-first`` value; the best is kept.
3. ``OUT/model``: the run with the chosen solver settings in its config, a run directory that
   ``kerasrecon compare``/``evaluate``/``reconstruct`` and ``scripts/package_pretrained.py`` take.
4. ``results.json`` and the printed table: converged TV (λ ``--lam``) and PnP on ``--eval`` (all of it,
   masks seed ``--eval-mask-seed`` (default 0) + volume index, as ``kerasrecon compare``) and on the
   first dataset's held-out volume(s), through ``kerasrecon.evaluate`` (the table of
   ``scripts/tv_refiner.py``: PSNR, SSIM, NMSE, HFEN, seconds per slice).

Usage: python scripts/pnp.py OUT --train real_train_noisy --train demo_noisy --train demo_half
           --eval real_eval_noisy --steps 6000 --seed 1 [--ensemble 8]

The datasets are those of ``scripts/pretrained.sh`` (prepared with ``--phase smooth --noise 0.01``);
``demo_half`` is the demo template averaged over 2×2 pixels, prepared with the same simulation:

    python -c "import numpy as np; from kerasrecon.data.demo import demo_images; \\
        np.save('demo_half.npy', demo_images()[:, :370, :300].reshape(60, 185, 2, 150, 2).mean((2, 4)))"
    kerasrecon data prepare demo_half.npy demo_half --phase smooth --noise 0.01 --sim-seed 0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tv_refiner import add_common_arguments, cached_tv, report  # noqa: E402

from kerasrecon import pnp  # noqa: E402
from kerasrecon.config import PnPConfig, TrainConfig, pnp_recipe  # noqa: E402
from kerasrecon.data import load_volumes, split_volumes  # noqa: E402
from kerasrecon.io import atomic_dir, write_text_atomic  # noqa: E402
from kerasrecon.training import checkpoint as ckpt  # noqa: E402
from kerasrecon.training.denoiser import train_denoiser  # noqa: E402


def config(args) -> TrainConfig:
    """The plug-and-play ``TrainConfig`` of the arguments: ``kerasrecon.config.pnp_recipe`` with the
    arguments' values (solver settings: the first of each list)."""
    recipe = pnp_recipe(args.train[0])
    return dataclasses.replace(
        recipe,
        mask=dataclasses.replace(recipe.mask, acceleration=args.acceleration),
        data=dataclasses.replace(
            recipe.data,
            patch_size=args.crop,
            batch_size=args.batch,
            val_fraction=args.val_fraction,
            extra_data=args.train[1:],
        ),
        model=dataclasses.replace(recipe.model, filters=args.filters),
        pretrain_steps=args.steps,
        learning_rate=args.lr,
        seed=args.seed,
        pnp=PnPConfig(
            sigma_max=args.sigma_max,
            iters=args.iters[0],
            sigma_first=args.sigma_first[0],
            sigma_last=args.sigma_last,
            tv_lambda=args.lam,
            init=args.init,
        ),
    )


def recon_fns(model, cfg: TrainConfig, cache=None, ensemble: int = 1) -> dict:
    """``{"tv": ..., "pnp": ...}`` in ``kerasrecon.evaluate``'s ReconFn signature; PnP from TV starts
    at the TV image of ``cache`` (shared by both functions and by calls given the same dict), so each
    slice's TV is solved once."""
    tv_of, tv = cached_tv(cfg.pnp.tv_lambda, cache)

    def plug(kspace, mask, batch_size=None, maps=None):
        kspace, mask = np.asarray(kspace), np.asarray(mask)
        x0 = tv_of(kspace, mask) if cfg.pnp.init == "tv" else None
        return np.abs(pnp.solve(model, cfg, kspace, mask, x0, ensemble))

    return {"tv": tv, "pnp": plug}


def sweep(model, cfg: TrainConfig, volumes, args, path: Path) -> dict:
    """Stage 2: :func:`kerasrecon.pnp.sweep` (PSNR, slice mean) on the training dataset's held-out
    volumes for each setting, kept in ``path``; returns the best ``{"iters", "sigma_first"}``."""
    if path.is_file():
        return json.loads(path.read_text())["best"]

    def show(row):
        print(f"sweep: {row['iters']} iterations, σ_first {row['sigma_first']:g}: {row['psnr']:.2f} dB", flush=True)

    result = pnp.sweep(model, cfg, volumes, args.iters, args.sigma_first, progress=show)
    write_text_atomic(path, json.dumps(result, indent=2))
    return result["best"]


def chosen_run(run: Path, cfg: TrainConfig, out: Path) -> None:
    """Stage 3: ``out``, a copy of the trained ``run`` whose config holds the chosen solver settings."""
    ours = (out / ckpt.CONFIG_FILE).is_file() and ckpt.read_config(out).pnp is not None
    if ours and ckpt.read_config(out) == cfg:
        return
    # an earlier stage 3 (a plug-and-play run) is replaced; anything else at OUT/model is refused
    if not ours and out.is_dir() and any(out.iterdir()):
        sys.exit(f"pnp.py: error: {out} exists and is not a plug-and-play run of this script; move it away")
    with atomic_dir(out, "pnp-model", replace=ours, option="OUT/model") as tmp:
        shutil.copytree(run, tmp, ignore=shutil.ignore_patterns(".lock"), dirs_exist_ok=True)
        write_text_atomic(tmp / ckpt.CONFIG_FILE, cfg.to_json())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sigma-max", type=float, default=0.2, help="training noise σ, relative to the crop's peak")
    p.add_argument("--init", choices=("tv", "zf"), default="tv", help="start from converged TV or zero-filled")
    p.add_argument("--iters", type=int, nargs="+", default=[2, 5, 10], help="swept")
    p.add_argument("--sigma-first", type=float, nargs="+", default=[0.02, 0.03, 0.05], help="swept")
    p.add_argument("--sigma-last", type=float, default=0.01, help="the data's noise σ, relative to the peak")
    args = p.parse_args(argv)
    if args.crop % 4:
        p.error(f"--crop must be a multiple of 4 (the U-Net's 2 poolings), got {args.crop}")
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = config(args)
    t0 = time.perf_counter()
    model, _ = train_denoiser(cfg, args.out / "run", progress=lambda s, n, logs: print(
        f"step {s}/{n}: loss {logs['loss']:.6f}", flush=True))  # fmt: skip
    print(f"trained {cfg.pretrain_steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    held_out = split_volumes(load_volumes(args.train[0]), args.val_fraction)[1]
    best = sweep(model, cfg, held_out, args, args.out / "sweep.json")
    print(f"chosen on the training dataset's held-out volumes: {best}")
    cfg = pnp.with_solver(cfg, **best)
    chosen_run(args.out / "run", cfg, args.out / "model")
    report(args, recon_fns(model, cfg, None, args.ensemble), held_out, chosen=best)


if __name__ == "__main__":
    sys.exit(main())
