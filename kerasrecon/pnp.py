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
training data (``scripts/pnp.py`` sweeps them); the run directory has the layout of a ``kerasrecon
fit`` run (config.json, verified checkpoints), so ``Reconstructor.from_run``, ``evaluate`` and
``compare`` take it.
"""

from __future__ import annotations

import dataclasses

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
