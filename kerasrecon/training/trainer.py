"""``train(cfg, out)``: the loop behind ``kerasrecon fit``.

It drives the GAN step of :mod:`kerasrecon.training.gan` on the active Keras backend
(:mod:`kerasrecon.training.runners`: TensorFlow's ``strategy.run`` in one ``tf.function``, or JAX's
jitted stateless step), with exact iteration-based checkpoints, resume at the saved step, a per-step
NaN/Inf guard and scalar logs (TensorBoard files on TensorFlow, JSON lines on JAX).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import ops

from kerasrecon.config import VGG_LOSSES, TrainConfig
from kerasrecon.data import dataset_inputs, training_splits
from kerasrecon.data.pipeline import check_training_volumes, coil_inputs, numpy_batches
from kerasrecon.errors import ConfigError, DataError, KerasReconError, arg
from kerasrecon.io import LOCK_FILE, RunLock, check_output, write_text_atomic
from kerasrecon.kspace import magnitude
from kerasrecon.losses import ContentLoss, build_vgg_features
from kerasrecon.metrics_ops import batch_psnr
from kerasrecon.models.discriminator import build_discriminator
from kerasrecon.models.generator import from_config as generator_from_config
from kerasrecon.training import checkpoint as ckpt
from kerasrecon.training.gan import PRETRAIN_KEYS, ReconGAN
from kerasrecon.training.logs import ScalarWriter
from kerasrecon.training.precision import full_precision_matmuls, resolve_precision
from kerasrecon.training.runners import CollectiveFailed, make_runner

log = logging.getLogger(__name__)


class TrainingStopped(KerasReconError):
    """Training could not go on; the message names the step and the last good checkpoint."""


class TrainingDiverged(TrainingStopped):
    """A loss became NaN/Inf."""


class WorkerFailed(TrainingStopped):
    """A multi-worker collective failed or timed out (a worker died or is unreachable)."""


@dataclass
class TrainResult:
    """What ``train`` returns: the run directory, the first and last step, the last logged values, the
    trained ``ReconGAN`` and the number of replicas (devices, over all workers) each batch was split over."""

    out: Path
    start_step: int
    step: int
    logs: dict
    gan: ReconGAN = field(default=None, repr=False)
    replicas: int = 1


@keras.saving.register_keras_serializable(package="kerasrecon")
class OffsetSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule(step + offset)``: the discriminator's optimizer counts only GAN steps, so with
    ``--lr-schedule cosine`` it reads the schedule at the run's global step (``pretrain_steps`` ahead),
    as the generator does, instead of restarting at the full learning rate when the GAN phase begins."""

    def __init__(self, schedule, offset: int):
        self.schedule, self.offset = schedule, int(offset)

    def __call__(self, step):
        return self.schedule(ops.add(step, self.offset))

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "offset": self.offset}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["offset"])


def build_gan(cfg: TrainConfig, multicoil: bool = False) -> ReconGAN:
    """Build G, D, VGG (if the loss needs it) and the ``ReconGAN`` with its optimizers set (call inside a
    strategy scope).

    The models get the dtype policy of ``cfg.precision`` (no global policy is set, no RNG seeded:
    ``train()`` seeds); under ``mixed_float16`` both Adam optimizers are wrapped in
    ``keras.optimizers.LossScaleOptimizer`` (dynamic loss scaling). ``multicoil``: the generator is
    the multi-coil graph (inputs with coils and maps; ``data.pipeline.coil_inputs``), whose weights
    are those of the single-coil graph (checkpoints load into either).
    """
    policy = resolve_precision(cfg.precision)
    full_precision_matmuls(policy)
    g = generator_from_config(cfg.model, dtype=policy, multicoil=multicoil)
    d = build_discriminator(cfg.data.patch_size, dtype=policy)
    vgg = build_vgg_features(cfg.loss.vgg_weights, dtype=policy) if cfg.loss.content in VGG_LOSSES else None
    content = ContentLoss(cfg.loss.content, vgg, cfg.loss.mse_weight, cfg.loss.feature_weight)
    gan = ReconGAN(g, d, content, cfg.loss.adv_weight)

    def adam(offset=0):
        lr = cfg.learning_rate
        if cfg.lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(
                lr, decay_steps=max(cfg.pretrain_steps + cfg.steps, 1), alpha=0.01
            )
            lr = OffsetSchedule(lr, offset) if offset else lr
        opt = keras.optimizers.Adam(learning_rate=lr, beta_1=cfg.beta_1)
        return keras.optimizers.LossScaleOptimizer(opt) if policy == "mixed_float16" else opt

    # D only steps in the GAN phase: its schedule is read at the global step, pretrain_steps + its own.
    gan.set_optimizers(g_optimizer=adam(), d_optimizer=adam(offset=cfg.pretrain_steps))
    gan.build_optimizers()
    return gan


def train(cfg: TrainConfig, out, *, force: bool = False, strategy=None, progress=None) -> TrainResult:
    """Train (or resume) a run. A plug-and-play config (``cfg.pnp``) trains its denoiser
    (:func:`kerasrecon.training.denoiser.train_denoiser`; ``strategy`` is not used).

    Args:
        cfg: the run's ``TrainConfig``.
        out: run directory; created if needed; resumed if it holds a checkpoint with the same config.
        force: continue a run whose saved config differs.
        strategy: a ``tf.distribute.Strategy`` to use instead of ``cfg.strategy`` (TensorFlow, tests).
        progress: optional callable ``(step, total_steps, logs: dict)``, called once before the first
            step (``step`` = the step the run starts from, ``logs`` empty) and then whenever the step's
            values are read from the device: every ``log_every`` steps, at checkpoints and at the last step.

    Returns:
        :class:`TrainResult`.

    Raises:
        ConfigError, DataError: bad options or data (nothing in ``out`` is modified).
        TrainingDiverged: a loss became NaN/Inf (the last good checkpoint is kept).
        WorkerFailed: a multi-worker collective failed or timed out (checkpoints intact).
    """
    if cfg.pnp is not None:  # a plug-and-play model: its denoiser trains on noisy crops, no GAN
        return _train_denoiser(cfg, Path(out), force, progress)
    out = Path(out)
    total = cfg.pretrain_steps + cfg.steps
    runner = make_runner(cfg, strategy)
    resolve_precision(cfg.precision)  # a precision this backend cannot run is refused before anything else
    chief = runner.chief
    vgg = cfg.loss.vgg_weights if cfg.loss.vgg_weights not in ("imagenet", "none") else None
    inputs = [*dataset_inputs(cfg.data), (arg("loss.vgg_weights"), vgg)]
    check_output(out, arg("out"), inputs=inputs, kind="folder")
    replicas = runner.replicas
    if cfg.data.batch_size % replicas:
        raise ConfigError(f"{arg('data.batch_size')} {cfg.data.batch_size} is not divisible by the {replicas} replicas")
    # Everything that can be checked is checked before --out is created or touched.
    train_sets, val_vols = training_splits(cfg.data)
    train_vols = [v for vols in train_sets for v in vols]  # every training slice equally likely
    check_training_volumes(train_vols, cfg.data.patch_size, cfg.data.sampling)
    preview = _preview_batch(val_vols or train_vols, cfg) if chief else None  # masks drawn: -R, seeds checked
    set_seed(cfg.seed)  # weights, dropout-free layers' RNG, patch order: all from --seed
    with runner.scope():
        # also loads the VGG19 weights (--vgg-weights errors surface here)
        gan = build_gan(cfg, multicoil=coil_inputs(train_vols, cfg))
    # --init-from only seeds step 0: a run that will resume never reads (or needs) its source.
    fresh = not (out / ckpt.CONFIG_FILE).exists() or not ckpt.has_checkpoint(out)
    start_weights = ckpt.start_weights(cfg.init_from, gan.generator) if cfg.init_from and fresh else []
    with contextlib.ExitStack() as stack:
        if chief:  # only the chief locks, checks, creates and writes the run directory
            _create_run_dir(out)
            stack.enter_context(RunLock(out, exclusive=True, option=arg("out")))
            if (out / ckpt.CONFIG_FILE).exists():
                ckpt.check_resume_config(out, cfg, force)
            elif any(p for p in out.iterdir() if p.name not in _OWN_FILES):
                raise ConfigError(f"{arg('out')} {out}: exists and is not a kerasrecon run; choose a new directory")
            ckpt.remove_temporaries(out)
        start = (ckpt.restore_latest(out, gan) or 0) if (out / ckpt.CONFIG_FILE).exists() else 0
        if start:
            log.info("resuming %s at step %d", out, start)
        elif start_weights:
            for variable, value in start_weights:
                variable.assign(value)
            log.info("generator starts from %s (%d of its %d weights)", cfg.init_from, len(start_weights),
                     len(gan.generator.weights))  # fmt: skip
        return _train_loop(cfg, out, gan, runner, train_vols, preview, start, total, progress)


_OWN_FILES = {LOCK_FILE}


def _train_denoiser(cfg: TrainConfig, out: Path, force: bool, progress) -> TrainResult:
    """``train`` of a plug-and-play config: :func:`kerasrecon.training.denoiser.train_denoiser`, one
    device; ``TrainResult.gan`` is ``None`` (the denoiser is ``Reconstructor.from_run(out)``'s)."""
    from kerasrecon.training.denoiser import train_denoiser

    seen = {}

    def report(step, total, logs):
        seen.setdefault("start", step)
        seen["logs"] = logs or seen.get("logs", {})
        if progress is not None:
            progress(step, total, logs)

    _, step = train_denoiser(cfg, out, progress=report, force=force)
    return TrainResult(out, seen.get("start", step), step, seen.get("logs", {}))


def set_seed(seed: int) -> None:
    """``keras.utils.set_random_seed(seed)`` (Python, NumPy, Keras' global seed; TensorFlow's too on the
    TensorFlow backend) without importing TensorFlow on another backend: Keras would import it
    whenever it is installed — seconds of start-up and its log lines in a JAX process."""
    import sys

    from kerasrecon.tf_import import tensorflow_hidden

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    with tensorflow_hidden():
        keras.utils.set_random_seed(seed)


def _create_run_dir(out: Path):
    """Create ``out`` (and parents); ``ConfigError`` naming ``--out`` when that fails."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{arg('out')} {out}: cannot create ({exc.strerror or exc})") from None


def _last(last_saved: int) -> str:
    return str(last_saved) if last_saved > 0 else "none"


def _train_loop(cfg, out, gan, runner, train_vols, preview, start, total, progress) -> TrainResult:
    chief = runner.chief
    if chief:
        write_text_atomic(out / ckpt.CONFIG_FILE, cfg.to_json())
    writer = ScalarWriter(out / "tensorboard", enabled=chief)
    runner.prepare(gan, cfg)
    iterator = runner.batches(train_vols, cfg, start)
    step, logs, last_saved = start, {}, start
    pending = []  # (step, pretrain, the step's values on the device) not read yet
    t0 = time.perf_counter()
    if progress is not None:
        progress(start, total, {})
    while step < total:
        pretrain = step < cfg.pretrain_steps
        try:
            pending.append((step + 1, pretrain, runner.step(pretrain, next(iterator))))
        except DataError as exc:  # a slice read from disk on demand was unreadable or not finite
            raise DataError(
                f"{exc}; training stopped at step {step + 1}, last good checkpoint is step {_last(last_saved)}"
            ) from None
        except CollectiveFailed as exc:
            raise WorkerFailed(_worker_failed(step + 1, exc, last_saved)) from None
        step += 1
        checkpoint = chief and (step % cfg.checkpoint_every == 0 or step == total)
        if not (checkpoint or step % cfg.log_every == 0 or step == total):
            continue  # no host round trip: the device runs ahead
        try:
            logs = _read_values(pending, out, last_saved, runner)
        except CollectiveFailed as exc:  # JAX dispatches ahead: a failed collective shows when read
            raise WorkerFailed(_worker_failed(pending[0][0], exc, last_saved)) from None
        pending = []
        if step % cfg.log_every == 0 or step == total:
            writer.scalars(step, {("pretrain/" if pretrain else "train/") + k: v for k, v in logs.items()})
        if checkpoint:
            runner.sync()
            save_checkpoint(out, step, gan, last_saved)
            last_saved = step
            _log_preview(writer, gan, preview, step)
        if progress is not None:
            progress(step, total, logs)
    runner.sync()
    writer.flush()
    log.info("trained %d steps in %.1f s", step - start, time.perf_counter() - t0)
    return TrainResult(out, start, step, logs, gan, runner.replicas)


def save_checkpoint(out: Path, step: int, gan, last_saved: int) -> None:
    """``checkpoint.save_checkpoint`` for a training loop: a full disk or a permission error is a
    ``ConfigError`` naming ``--out``, non-finite weights ``TrainingDiverged``, each saying which step's
    checkpoint is the last good one (``last_saved``; 0: none)."""
    try:
        ckpt.save_checkpoint(out, step, gan)
    except OSError as exc:  # full disk, quota, permissions: the partial checkpoint was removed
        reason = exc.strerror or (str(exc).splitlines() or [exc.__class__.__name__])[0]
        raise ConfigError(
            f"{arg('out')} {out}: cannot write the checkpoint of step {step} ({reason}); last good checkpoint "
            f"is step {_last(last_saved)}"
        ) from None
    except ckpt.NonFiniteWeights as exc:
        raise TrainingDiverged(
            f"non-finite weights after step {step} ({str(exc).split(': ', 1)[1].split(';')[0]}); training "
            f"stopped, last good checkpoint is step {_last(last_saved)} in "
            f"{out / ckpt.CKPT_DIR} (try a lower {arg('learning_rate')})"
        ) from None


def _worker_failed(step: int, exc, last_saved: int) -> str:
    return (
        f"step {step}: a collective failed ({exc}; a worker died or is unreachable); "
        f"last good checkpoint is step {_last(last_saved)}"
    )


def _read_values(pending, out, last_saved, runner) -> dict:
    """Read the values of the steps since the last read (oldest first) as floats; ``TrainingDiverged``
    naming the first step with a non-finite value. Returns the last step's ``{name: float}``."""
    logs = {}
    for step, pretrain, values in pending:
        logs = runner.read({k: v for k, v in values.items() if not pretrain or k in PRETRAIN_KEYS})
        bad = [k for k, v in logs.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"non-finite {bad[0]}={logs[bad[0]]} at step {step}; training stopped, last good checkpoint "
                f"is step {_last(last_saved)} in {out / ckpt.CKPT_DIR}"
            )
    return logs


def _preview_batch(volumes, cfg):
    """A fixed batch (seeded) of held-out patches for the preview images and validation PSNR (NumPy
    input path: the same elements as tf.data, on every backend)."""
    batches = numpy_batches(volumes, cfg, batch_size=min(4, cfg.data.batch_size), workers=1, prefetch=1)
    try:
        return next(batches)
    finally:
        batches.close()


def _log_preview(writer, gan, preview, step):
    inputs, target = preview
    recon = ops.convert_to_numpy(magnitude(gan.generator(inputs, training=False)))
    zf = np.hypot(inputs["zero_filled"][..., :1], inputs["zero_filled"][..., 1:])
    grid = np.concatenate([zf, recon, target, np.abs(recon - target)], axis=2)  # zero-filled | recon | target | |error|
    peak = np.maximum(target.max(axis=(1, 2, 3), keepdims=True), 1e-6)
    writer.image(step, "val/zero_filled|recon|target|error", np.clip(grid / peak, 0, 1))
    writer.scalars(step, {"val/psnr": float(np.mean(ops.convert_to_numpy(batch_psnr(target, recon))))})
