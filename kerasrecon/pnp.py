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

Training (:func:`train_denoiser`) needs only fully sampled images: no mask, no solver. The solver's
``iters`` and ``sigma_first`` are chosen afterwards on held-out training data
(``scripts/pnp.py`` sweeps them); the run directory has the layout of a ``kerasrecon fit`` run
(config.json, verified checkpoints), so ``Reconstructor.from_run``, ``evaluate`` and ``compare`` take it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from kerasrecon.config import TrainConfig
from kerasrecon.errors import ConfigError, arg
from kerasrecon.kspace import dihedral_np, fft2c_np, from_channels, ifft2c_np, to_channels

log = logging.getLogger(__name__)


def check_pnp_config(cfg: TrainConfig, what: str = "config") -> None:
    """``ConfigError`` unless ``cfg`` is a plug-and-play config (``cfg.pnp`` set)."""
    if cfg.pnp is None:
        raise ConfigError(
            f"{what}: not a plug-and-play config (no 'pnp' settings; model.network {cfg.model.network!r})"
        )


def training_images(data: str, val_fraction: float) -> list[np.ndarray]:
    """The fully sampled complex images of ``data``'s training split (``kerasrecon.data.split_volumes``):
    one complex64 ``[S, H, W]`` per volume."""
    from kerasrecon.data import load_volumes, split_volumes

    train, _ = split_volumes(load_volumes(data), val_fraction)
    return [ifft2c_np(np.asarray(v.loaded().kspace)).astype(np.complex64) for v in train]


def noisy_crops(rng: np.random.Generator, image_sets, batch: int, crop: int, sigma_max: float):
    """One training batch: ``(inputs float32 [B, c, c, 3] (re, im, σ), targets float32 [B, c, c, 2])``.

    Each element: a dataset of ``image_sets`` (a list per dataset of complex ``[S, H, W]`` volumes)
    drawn uniformly, then a volume, a slice and a ``crop``² window; scaled to peak 1, turned by one of
    the 8 flips/quarter turns, multiplied by e^{iφ} (φ uniform), plus complex Gaussian noise of
    σ ~ U(0, ``sigma_max``) per channel. All draws come from ``rng``.
    """
    from kerasrecon.data.pipeline import turn

    inputs, targets = [], []
    for _ in range(batch):
        vols = image_sets[rng.integers(len(image_sets))]
        v = vols[rng.integers(len(vols))]
        s, h, w = v.shape
        i, y0, x0 = rng.integers(s), rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        x = turn(v[i, y0 : y0 + crop, x0 : x0 + crop], rng.integers(8))
        x = x * np.exp(1j * rng.uniform(0, 2 * np.pi)) / max(float(np.abs(x).max()), 1e-6)
        sigma = rng.uniform(0, sigma_max)
        noisy = x + sigma * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))
        inputs.append(np.concatenate([to_channels(noisy), np.full((*x.shape, 1), sigma, np.float32)], -1))
        targets.append(to_channels(x))
    return np.stack(inputs), np.stack(targets)


def train_denoiser(cfg: TrainConfig, out, progress=None):
    """Train the denoiser of plug-and-play config ``cfg`` into a new run directory ``out``.

    ``cfg.pretrain_steps`` MSE steps of Adam (``learning_rate``, ``beta_1``, ``lr_schedule`` as
    ``fit``'s), batches of :func:`noisy_crops` (``data.batch_size`` crops of ``data.patch_size``²,
    σ up to ``pnp.sigma_max``) from the training splits of ``data.data`` and ``pnp.extra_data``, every
    draw seeded by ``seed``. Checkpoints every ``checkpoint_every`` steps and at the end, in the layout
    of ``kerasrecon.training.checkpoint`` (the generator file holds the denoiser).

    Args:
        cfg: a ``TrainConfig`` with ``pnp`` set (``model.network`` ``denoiser``).
        out: the run directory: new or empty; one that already holds this config trained to the end
            is returned as it is (a rerun of a script resumes there).
        progress: optional callable ``(step, total, {"loss": float})`` every ``log_every`` steps.

    Returns:
        ``(keras.Model denoiser, step)``.

    Raises:
        ConfigError: not a plug-and-play config, ``out`` holds something else, a non-finite loss.
        DataError: unreadable data, images smaller than the crop.
    """
    import keras

    from kerasrecon.io import RunLock, check_output, write_text_atomic
    from kerasrecon.models.generator import from_config
    from kerasrecon.training import checkpoint as ckpt

    check_pnp_config(cfg)
    out = Path(out)
    data = [cfg.data.data, *cfg.pnp.extra_data]
    check_output(out, arg("out"), inputs=[(arg("data.data"), d) for d in data], kind="folder")
    total = cfg.pretrain_steps
    if (out / ckpt.CONFIG_FILE).is_file() and ckpt.read_config(out) == cfg:
        found = ckpt.latest_checkpoint(out)
        if found is not None and found[0] == total:
            _, model, step = ckpt.load_generator(out)
            return model, step
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{arg('out')} {out}: exists and is not empty; a denoiser trains into a new directory")
    sets = [training_images(d, cfg.data.val_fraction) for d in data]
    for d, vols in zip(data, sets):
        small = [v.shape[1:] for v in vols if min(v.shape[1:]) < cfg.data.patch_size]
        if small or not vols:
            raise ConfigError(
                f"{arg('data.patch_size')} {cfg.data.patch_size}: dataset {d} has "
                + (f"images of {small[0][0]}×{small[0][1]}, smaller" if small else "no training volumes")
            )
    keras.utils.set_random_seed(cfg.seed)
    model = from_config(cfg.model)
    lr = cfg.learning_rate
    if cfg.lr_schedule == "cosine":  # fit's schedule: to 1 % over the run
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(total, 1), alpha=0.01)
    adam = keras.optimizers.Adam(learning_rate=lr, beta_1=cfg.beta_1)
    model.compile(adam, "mse")
    rng = np.random.default_rng(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out, exclusive=True, option=arg("out")):
        write_text_atomic(out / ckpt.CONFIG_FILE, cfg.to_json())
        # the checkpoint layout's discriminator and its optimizer: empty (a denoiser has none)
        inp = keras.Input((1,))
        state = SimpleNamespace(
            generator=model, discriminator=keras.Model(inp, inp), g_optimizer=adam, d_optimizer=keras.optimizers.Adam()
        )
        t0, smoothed = time.perf_counter(), None
        for step in range(1, total + 1):
            loss = float(
                model.train_on_batch(
                    *noisy_crops(rng, sets, cfg.data.batch_size, cfg.data.patch_size, cfg.pnp.sigma_max)
                )
            )
            smoothed = loss if smoothed is None else 0.98 * smoothed + 0.02 * loss
            if not np.isfinite(loss):
                raise ConfigError(
                    f"denoiser training: the loss is not finite at step {step}; lower {arg('learning_rate')}"
                )
            if step % cfg.log_every == 0 or step == total:
                log.info("denoiser step %d/%d: loss %.6f, %.0f s", step, total, smoothed, time.perf_counter() - t0)
                if progress:
                    progress(step, total, {"loss": smoothed})
            if step % cfg.checkpoint_every == 0 or step == total:
                ckpt.save_checkpoint(out, step, state)
    return model, total


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
    scale = np.abs(zero_filled).reshape(len(y), -1).max(1)
    if x0 is None and cfg.pnp.init == "tv":
        from kerasrecon.baselines import solve as solve_cs

        x0 = solve_cs("tv", y, m, cfg.pnp.tv_lambda)
    x = zero_filled if x0 is None else np.asarray(x0)
    for s in sigmas(cfg):
        z = denoise(model, x, s * scale, cfg.model.levels, ensemble)
        x = ifft2c_np(m * kspace + (1 - m) * fft2c_np(z))
    return x.astype(np.complex64)


def with_solver(cfg: TrainConfig, **changes) -> TrainConfig:
    """``cfg`` with some ``pnp`` fields changed (e.g. the swept ``iters`` and ``sigma_first``)."""
    return dataclasses.replace(cfg, pnp=dataclasses.replace(cfg.pnp, **changes))
