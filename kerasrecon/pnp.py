"""Plug-and-play reconstruction: a learned denoiser as the prior inside a data-consistent solver.

A denoiser learns a local image prior (noise removal), not a map from one aliasing pattern to an
image, so it has less to overfit to the training anatomy than an end-to-end network. The solver is
half-quadratic splitting with a decreasing noise level (Zhang et al., DPIR, TPAMI 2021) and exact
data consistency:

    z_k = D(x_k, σ_k · s)                        σ_k geometric from σ_first to σ_last, s the slice's scale
    x_{k+1} = Fᴴ[M ⊙ y + (1 − M) ⊙ F z_k]        the measured samples kept, the rest taken from z_k

from x_0 = the converged TV image (``init="tv"``: a few steps refine it) or the zero-filled image.
s is the zero-filled image's peak, so σ is relative to the image as in training. The denoiser
(:func:`kerasrecon.models.denoiser.build_denoiser`) is bias-free and takes σ as an input channel:
D(a·x, a·σ) = a·D(x, σ), so the result does not depend on the k-space's scale.

    >>> from kerasrecon import Reconstructor
    >>> rec = Reconstructor.pretrained("singlecoil-r8")       # a plug-and-play model
    >>> image = rec(kspace, mask, ensemble=8)                 # [S, H, W] float32 magnitude

Training (:func:`kerasrecon.training.denoiser.train_denoiser`) needs only fully sampled images: no
mask, no solver. The solver's ``iters`` and ``sigma_first`` are chosen afterwards on held-out
training data (:func:`sweep`, :func:`sweep_run`: ``fit --pnp-sweep``, ``scripts/pnp.py``); the run
directory has the layout of a ``kerasrecon fit`` run (config.json, verified checkpoints), so
``Reconstructor.from_run``, ``evaluate`` and ``compare`` take it.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from kerasrecon.config import TrainConfig
from kerasrecon.errors import ConfigError
from kerasrecon.kspace import dihedral_np, fft2c_np, from_channels, ifft2c_np, normalise_np, to_channels


def check_pnp_config(cfg: TrainConfig, what: str = "config") -> None:
    """``ConfigError`` unless ``cfg`` is a plug-and-play config (``cfg.pnp`` set)."""
    if cfg.pnp is None:
        raise ConfigError(
            f"{what}: not a plug-and-play config (no 'pnp' settings; model.network {cfg.model.network!r})"
        )


def denoise(model, x: np.ndarray, sigma, levels: int, ensemble: int = 1) -> np.ndarray:
    """Apply the denoiser to complex images.

    Args:
        model: :func:`kerasrecon.models.denoiser.build_denoiser`'s model.
        x: complex ``[B, H, W]`` (any H, W: zero-padded to the U-Net's multiple, cropped back).
        sigma: float ``[B]`` (or a scalar): each image's noise σ at its own scale.
        levels: the U-Net's ``model.levels`` (the input is padded to a multiple of ``2**levels``).
        ensemble: 1, or 8: the mean over the 8 mirrorings/transposes of ``x``
            (``kspace.dihedral_np``), each turned back.

    Returns:
        complex64 ``[B, H, W]``.
    """
    x = np.asarray(x)
    sigma = np.broadcast_to(np.asarray(sigma, np.float32), (len(x),))
    if ensemble > 1:
        return np.mean(
            [dihedral_np(denoise(model, dihedral_np(x, t), sigma, levels), t, inverse=True) for t in range(ensemble)],
            0,
        ).astype(np.complex64)
    _, h, w = x.shape
    m = 2**levels
    ph, pw = -h % m, -w % m
    xp = np.pad(x, ((0, 0), (0, ph), (0, pw)))
    noise_map = np.broadcast_to(sigma[:, None, None, None], (*xp.shape, 1))
    inp = np.concatenate([to_channels(xp), noise_map], -1).astype(np.float32)
    return from_channels(np.asarray(model.predict_on_batch(inp))[:, :h, :w])


def sigmas(cfg: TrainConfig) -> np.ndarray:
    """The solver's σ_k, ``pnp.iters`` values geometric from ``pnp.sigma_first`` to ``pnp.sigma_last``."""
    return np.geomspace(cfg.pnp.sigma_first, cfg.pnp.sigma_last, cfg.pnp.iters)


def solve(model, cfg: TrainConfig, kspace: np.ndarray, mask: np.ndarray, x0=None, ensemble: int = 1) -> np.ndarray:
    """Plug-and-play reconstruction of single-coil slices.

    Args:
        model: the denoiser; cfg: its plug-and-play ``TrainConfig`` (``pnp``: iters, σ's, init, λ).
        kspace: complex ``[B, H, W]`` (masked here); mask: 0/1 ``[H, W]`` or ``[B, H, W]``.
        x0: complex ``[B, H, W]`` start; ``None``: the converged TV image (``pnp.init="tv"``, λ
            ``pnp.tv_lambda``, ``kerasrecon.baselines.solve``) or the zero-filled image (``zf``).
        ensemble: :func:`denoise`'s (1 or 8).

    Returns:
        complex64 ``[B, H, W]``; its measured k-space samples equal ``kspace``'s.
    """
    check_pnp_config(cfg)
    m = np.broadcast_to(np.asarray(mask, np.float32), kspace.shape)
    y = m * kspace
    zero_filled = ifft2c_np(y)
    scale = 1 / normalise_np(zero_filled)[1]  # the zero-filled peak, floored as the models' input scale
    if x0 is None and cfg.pnp.init == "tv":
        from kerasrecon.baselines import solve as solve_cs

        x0 = solve_cs("tv", y, m, cfg.pnp.tv_lambda)
    x = zero_filled if x0 is None else np.asarray(x0)
    for s in sigmas(cfg):
        z = denoise(model, x, s * scale, cfg.model.levels, ensemble)
        x = ifft2c_np(y + (1 - m) * fft2c_np(z))
    return x.astype(np.complex64)


def with_solver(cfg: TrainConfig, **changes) -> TrainConfig:
    """``cfg`` with some ``pnp`` fields changed (e.g. the swept ``iters`` and ``sigma_first``)."""
    return dataclasses.replace(cfg, pnp=dataclasses.replace(cfg.pnp, **changes))


#: The solver settings :func:`sweep` tries by default (those of ``scripts/pnp.py``), and the mask seed
#: of its held-out slices (never an evaluation set's: ``evaluate`` and ``compare`` start at 0).
SWEEP_ITERS = (2, 5, 10)
SWEEP_SIGMA_FIRST = (0.02, 0.03, 0.05)
SWEEP_MASK_SEED = 5000
#: :func:`sweep_run`'s record in the run directory.
SWEEP_FILE = "pnp_sweep.json"


def sweep(
    model,
    cfg: TrainConfig,
    volumes,
    iters=SWEEP_ITERS,
    sigma_first=SWEEP_SIGMA_FIRST,
    mask_seed: int = SWEEP_MASK_SEED,
    progress=None,
) -> dict:
    """Choose the solver's ``iters`` (K) and ``sigma_first`` by PSNR on held-out training volumes.

    Every pair of the grid reconstructs ``volumes`` under ``cfg.mask`` with seeds ``mask_seed + i``
    (volume i), scored by :func:`kerasrecon.evaluate.evaluate` (PSNR of the magnitude, mean over
    slices); the TV start (``pnp.init="tv"``) is solved once per slice for the whole grid.

    Args:
        model: the denoiser; cfg: its plug-and-play ``TrainConfig``.
        volumes: ``Volume`` list: the training data's held-out volumes, never the evaluation set.
        iters, sigma_first: the grid (ints ≥ 1; floats > 0).
        mask_seed: the first volume's mask seed.
        progress: optional ``callable(row: dict)`` after each pair.

    Returns:
        ``{"rows": [{"iters", "sigma_first", "psnr"}...], "best": {"iters", "sigma_first"},
        "mask": cfg.mask's dict with ``mask_seed``, "slices": int}``.
    """
    from kerasrecon.baselines import cached_tv
    from kerasrecon.evaluate import evaluate

    check_pnp_config(cfg)
    if not volumes:
        raise ConfigError("pnp sweep: no held-out volumes to choose the solver's settings on")
    if not len(iters) or not len(sigma_first):
        raise ConfigError(f"pnp sweep: an empty grid (iters {list(iters)}, sigma_first {list(sigma_first)})")
    # every setting built (and so checked by the config's constructor) before any reconstruction
    settings = [with_solver(cfg, iters=int(k), sigma_first=float(s)) for k in iters for s in sigma_first]
    mask_cfg = dataclasses.replace(cfg.mask, seed=int(mask_seed))
    tv_of, _ = cached_tv(cfg.pnp.tv_lambda)  # the TV start: one solve per batch of slices for the grid
    rows = []
    for setting in settings:

        def plug(kspace, mask, batch_size=None, maps=None, setting=setting):
            kspace, mask = np.asarray(kspace), np.asarray(mask)
            x0 = tv_of(kspace, mask) if cfg.pnp.init == "tv" else None
            return np.abs(solve(model, setting, kspace, mask, x0))

        scored = evaluate({"pnp": plug}, volumes, mask_cfg).rows
        psnr = float(np.mean([r["psnr"] for r in scored if r["method"] == "pnp"]))
        rows.append({"iters": setting.pnp.iters, "sigma_first": setting.pnp.sigma_first, "psnr": psnr})
        if progress:
            progress(rows[-1])
    best = max(rows, key=lambda r: r["psnr"])
    return {
        "rows": rows,
        "best": {"iters": best["iters"], "sigma_first": best["sigma_first"]},
        "mask": dataclasses.asdict(mask_cfg),
        "slices": int(sum(len(v) for v in volumes)),
    }


def held_out_volumes(cfg: TrainConfig, option: str = "--pnp-sweep"):
    """The validation volumes of ``cfg.data`` (``data.val_fraction``) that :func:`sweep_run` chooses on;
    ``ConfigError`` naming ``option`` when there are none."""
    from kerasrecon.data import load_volumes, split_volumes

    if cfg.data.val_fraction <= 0:
        raise ConfigError(
            f"{option}: --val-fraction 0 holds nothing of {cfg.data.data!r} out to choose the solver's "
            "settings on; give --val-fraction > 0"
        )
    return split_volumes(load_volumes(cfg.data.data), cfg.data.val_fraction)[1]


def sweep_run(run_dir, iters=SWEEP_ITERS, sigma_first=SWEEP_SIGMA_FIRST, progress=None) -> dict:
    """:func:`sweep` on a trained plug-and-play run's held-out volumes (its ``--data``'s validation
    split), then the chosen ``iters`` and ``sigma_first`` written into the run's config (solver
    settings are not used in training: the weights are unchanged) and the whole sweep into
    ``run_dir/pnp_sweep.json``. The run's lock is held from reading its config to writing it, so no
    ``fit`` changes the config or the weights in between (one held by another process: ``ConfigError``
    before anything is read). Returns the sweep (:func:`sweep`'s dict)."""
    from pathlib import Path

    from kerasrecon.io import RunLock, write_text_atomic
    from kerasrecon.training import checkpoint as ckpt

    run_dir = Path(run_dir)
    with RunLock(run_dir, exclusive=True, option="--out"):
        cfg = ckpt.read_config(run_dir)
        check_pnp_config(cfg, str(run_dir))
        held_out = held_out_volumes(cfg)
        _, model, step = ckpt.load_generator(run_dir)
        result = sweep(model, cfg, held_out, iters, sigma_first, progress=progress)
        result["step"] = int(step)
        write_text_atomic(run_dir / SWEEP_FILE, json.dumps(result, indent=2))
        write_text_atomic(run_dir / ckpt.CONFIG_FILE, with_solver(cfg, **result["best"]).to_json())
    return result
