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


class SliceImages:
    """One volume's fully sampled complex images, read slice by slice: ``shape`` ``(S, H, W)`` reads
    nothing; ``images[i]`` is slice ``i``'s image, complex64 ``[H, W]`` (read-only), the inverse FFT
    of ``Volume.kspace_at(i)``. Decoded images stay in the data store's bounded slice cache
    (``KERASRECON_CACHE_MB``), so a dataset larger than memory trains a denoiser in constant memory,
    as it trains ``fit``'s models."""

    def __init__(self, volume):
        from kerasrecon.data import store

        self.volume, self.shape, self._cache = volume, tuple(volume.shape), store.CACHE
        self._token = object()  # this volume's key in the cache (the cache holds no reference to it)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        key = (self._token, int(i))
        image = self._cache.get(key)
        if image is None:
            image = ifft2c_np(np.asarray(self.volume.kspace_at(int(i)))).astype(np.complex64)
            self._cache.put(key, image)
        return image


def training_images(data_cfg) -> list[list[SliceImages]]:
    """The fully sampled images of the training splits of ``data_cfg.data`` and ``data_cfg.extra_data``
    (``kerasrecon.data.training_splits``): per dataset, one :class:`SliceImages` (complex64
    ``[S, H, W]``, read slice by slice) per volume."""
    from kerasrecon.data import training_splits

    return [[SliceImages(v) for v in vols] for vols in training_splits(data_cfg)[0]]


def noisy_crops(rng: np.random.Generator, image_sets, batch: int, crop: int, sigma_max: float):
    """One training batch: ``(inputs float32 [B, c, c, 3] (re, im, σ), targets float32 [B, c, c, 2])``.

    Each element: a dataset of ``image_sets`` (a list per dataset of complex ``[S, H, W]`` volumes:
    arrays or :class:`SliceImages`) drawn uniformly, then a volume, a slice and a ``crop``² window;
    scaled to peak 1, turned by one of the 8 flips/quarter turns, multiplied by e^{iφ} (φ uniform),
    plus complex Gaussian noise of σ ~ U(0, ``sigma_max``) per channel. All draws come from ``rng``.
    """
    from kerasrecon.data.pipeline import turn

    inputs, targets = [], []
    for _ in range(batch):
        vols = image_sets[rng.integers(len(image_sets))]
        v = vols[rng.integers(len(vols))]
        s, h, w = v.shape
        i, y0, x0 = rng.integers(s), rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        x = turn(v[i][y0 : y0 + crop, x0 : x0 + crop], rng.integers(8))
        x = normalise_np(x[None] * np.exp(1j * rng.uniform(0, 2 * np.pi)))[0][0]  # peak 1, as the models' inputs
        sigma = rng.uniform(0, sigma_max)
        noisy = x + sigma * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))
        inputs.append(np.concatenate([to_channels(noisy), np.full((*x.shape, 1), sigma, np.float32)], -1))
        targets.append(to_channels(x))
    return np.stack(inputs), np.stack(targets)


def train_denoiser(cfg: TrainConfig, out, progress=None, force: bool = False):
    """Train (or resume) the denoiser of plug-and-play config ``cfg`` in the run directory ``out``.

    ``cfg.pretrain_steps`` MSE steps of Adam (``learning_rate``, ``beta_1``, ``lr_schedule`` as
    ``fit``'s), batches of :func:`noisy_crops` (``data.batch_size`` crops of ``data.patch_size``²,
    σ up to ``pnp.sigma_max``) from the training splits of ``data.data`` and ``data.extra_data``, every
    draw seeded by ``seed``. Checkpoints every ``checkpoint_every`` steps and at the end, in the layout
    of ``kerasrecon.training.checkpoint`` (the generator file holds the denoiser).

    A run directory that holds a checkpoint of this config resumes from its newest intact one, as
    ``fit`` does: the weights and Adam's moments are restored and the crop generator is replayed to
    that step, so an interrupted run ends with the weights of an uninterrupted one. A finished run is
    returned as it is.

    Args:
        cfg: a ``TrainConfig`` with ``pnp`` set (``model.network`` ``denoiser``).
        out: the run directory: new, empty, or a run of this config (another config is refused unless
            ``force``, and then only resumable or data/solver changes; never another architecture).
        progress: optional callable ``(step, total, {"loss": float})`` every ``log_every`` steps and at
            the end; it is also called once before the first step with the step the run starts from
            and an empty dict, as ``fit``'s.
        force: continue a run whose saved config differs (``fit --force``).

    Returns:
        ``(keras.Model denoiser, step)``.

    Raises:
        ConfigError: not a plug-and-play config, ``out`` holds something else, images smaller than the crop.
        TrainingDiverged: a non-finite loss (the last checkpoint is kept).
        DataError: unreadable data or no intact checkpoint to resume from.
    """
    import keras

    from kerasrecon.data import dataset_inputs
    from kerasrecon.io import RunLock, check_output, write_text_atomic
    from kerasrecon.models.generator import from_config
    from kerasrecon.training import checkpoint as ckpt
    from kerasrecon.training.precision import full_precision_matmuls
    from kerasrecon.training.trainer import (
        _OWN_FILES,
        TrainingDiverged,
        _create_run_dir,
        _last,
        save_checkpoint,
        set_seed,
    )

    check_pnp_config(cfg)
    out = Path(out)
    data = [cfg.data.data, *cfg.data.extra_data]
    check_output(out, arg("out"), inputs=dataset_inputs(cfg.data), kind="folder")
    total = cfg.pretrain_steps
    sets = training_images(cfg.data)
    for d, vols in zip(data, sets):
        small = [v.shape[1:] for v in vols if min(v.shape[1:]) < cfg.data.patch_size]
        if small or not vols:
            raise ConfigError(
                f"{arg('data.patch_size')} {cfg.data.patch_size}: dataset {d} has "
                + (f"images of {small[0][0]}×{small[0][1]}, smaller than the crop" if small else "no training volumes")
            )
    set_seed(cfg.seed)
    full_precision_matmuls("float32")  # the denoiser trains in float32 (its layers take no dtype policy)
    model = from_config(cfg.model)
    lr = cfg.learning_rate
    if cfg.lr_schedule == "cosine":  # fit's schedule: to 1 % over the run
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(total, 1), alpha=0.01)
    adam = keras.optimizers.Adam(learning_rate=lr, beta_1=cfg.beta_1)
    model.compile(adam, "mse")
    adam.build(model.trainable_variables)  # its slots exist before a checkpoint is restored into them
    # The checkpoint's generator file holds the weights of an uncompiled twin: a compiled model's
    # save_weights also writes its optimizer's moments (3x the size; optimizers.npz has them).
    # The layout's discriminator and its optimizer are empty: a denoiser has none.
    inp = keras.Input((1,))
    twin = from_config(cfg.model)
    state = SimpleNamespace(
        generator=twin, discriminator=keras.Model(inp, inp), g_optimizer=adam, d_optimizer=keras.optimizers.Adam()
    )
    _create_run_dir(out)  # fit's: an OS error names --out in one line
    with RunLock(out, exclusive=True, option=arg("out")):
        start = 0
        if (out / ckpt.CONFIG_FILE).is_file():
            ckpt.check_resume_config(out, cfg, force)
            ckpt.remove_temporaries(out)
            found = ckpt.latest_checkpoint(out)
            if found is not None and found[0] >= total:  # finished: the weights alone (runs of 0.9.0 too)
                ckpt.restore_checkpoint(found[1], state, optimizers=False)
                start = found[0]
            else:
                start = ckpt.restore_latest(out, state) or 0
            model.set_weights(twin.get_weights())
        elif any(p for p in out.iterdir() if p.name not in _OWN_FILES):
            raise ConfigError(f"{arg('out')} {out}: exists and is not a kerasrecon run; choose a new directory")
        write_text_atomic(out / ckpt.CONFIG_FILE, cfg.to_json())
        rng = np.random.default_rng(cfg.seed)
        if start:
            t0 = time.perf_counter()
            for _ in range(min(start, total)):  # replay the crops drawn so far: the same stream from here on
                noisy_crops(rng, sets, cfg.data.batch_size, cfg.data.patch_size, cfg.pnp.sigma_max)
            log.info("resuming %s at step %d (crops replayed in %.0f s)", out, start, time.perf_counter() - t0)
        if progress:
            progress(start, total, {})
        t0, smoothed, last_saved = time.perf_counter(), None, start
        for step in range(start + 1, total + 1):
            batch = noisy_crops(rng, sets, cfg.data.batch_size, cfg.data.patch_size, cfg.pnp.sigma_max)
            loss = float(model.train_on_batch(*batch))
            smoothed = loss if smoothed is None else 0.98 * smoothed + 0.02 * loss
            if not np.isfinite(loss):
                raise TrainingDiverged(
                    f"denoiser training: the loss is not finite at step {step}; lower {arg('learning_rate')} "
                    f"(the last good checkpoint is step {_last(last_saved)})"
                )
            if step % cfg.log_every == 0 or step == total:
                log.info("denoiser step %d/%d: loss %.6f, %.0f s", step, total, smoothed, time.perf_counter() - t0)
                if progress:
                    progress(step, total, {"loss": smoothed})
            if step % cfg.checkpoint_every == 0 or step == total:
                twin.set_weights(model.get_weights())
                save_checkpoint(out, step, state, last_saved)
                last_saved = step
    return model, max(start, total)
