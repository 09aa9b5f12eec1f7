"""Training a plug-and-play denoiser (:mod:`kerasrecon.pnp`) from fully sampled images: noisy crops in,
clean crops out, MSE. No mask and no solver are involved; the run directory has the layout of a
``kerasrecon fit`` run (``config.json``, verified checkpoints), so ``Reconstructor.from_run``,
``evaluate`` and ``compare`` take it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from kerasrecon.config import TrainConfig
from kerasrecon.errors import ConfigError, arg
from kerasrecon.kspace import ifft2c_np, normalise_np, to_channels
from kerasrecon.pnp import check_pnp_config

log = logging.getLogger(__name__)


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
        x = normalise_np(x[None] * np.exp(1j * rng.uniform(0, 2 * np.pi)))[0][0]  # peak 1, as the models' inputs
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
        ConfigError: not a plug-and-play config, ``out`` holds something else, images smaller than the crop.
        TrainingDiverged: a non-finite loss (the last checkpoint is kept).
        DataError: unreadable data.
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
                + (f"images of {small[0][0]}×{small[0][1]}, smaller than the crop" if small else "no training volumes")
            )
    keras.utils.set_random_seed(cfg.seed)
    model = from_config(cfg.model)
    lr = cfg.learning_rate
    if cfg.lr_schedule == "cosine":  # fit's schedule: to 1 % over the run
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(total, 1), alpha=0.01)
    adam = keras.optimizers.Adam(learning_rate=lr, beta_1=cfg.beta_1)
    model.compile(adam, "mse")
    rng = np.random.default_rng(cfg.seed)
    from kerasrecon.training.trainer import _create_run_dir

    _create_run_dir(out)  # fit's: an OS error names --out in one line
    with RunLock(out, exclusive=True, option=arg("out")):
        write_text_atomic(out / ckpt.CONFIG_FILE, cfg.to_json())
        # The checkpoint's generator file holds the weights of an uncompiled twin: a compiled model's
        # save_weights also writes its optimizer's moments (3x the size; optimizers.npz has them).
        # The layout's discriminator and its optimizer are empty: a denoiser has none.
        inp = keras.Input((1,))
        twin = from_config(cfg.model)
        state = SimpleNamespace(
            generator=twin, discriminator=keras.Model(inp, inp), g_optimizer=adam, d_optimizer=keras.optimizers.Adam()
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
                from kerasrecon.training.trainer import TrainingDiverged

                raise TrainingDiverged(
                    f"denoiser training: the loss is not finite at step {step}; lower {arg('learning_rate')} "
                    "(the last checkpoint is kept)"
                )
            if step % cfg.log_every == 0 or step == total:
                log.info("denoiser step %d/%d: loss %.6f, %.0f s", step, total, smoothed, time.perf_counter() - t0)
                if progress:
                    progress(step, total, {"loss": smoothed})
            if step % cfg.checkpoint_every == 0 or step == total:
                twin.set_weights(model.get_weights())
                ckpt.save_checkpoint(out, step, state)
    return model, total
