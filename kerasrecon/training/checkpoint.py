"""Crash-safe checkpoints of a run directory.

Layout::

    RUN/config.json                       the TrainConfig (JSON)
    RUN/checkpoints/ckpt-00001000/        generator.weights.h5, discriminator.weights.h5,
                                          optimizers.npz (G and D Adam state), state.json (step)
    RUN/checkpoints/latest.json           {"step": 1000, "dir": "ckpt-00001000"}

A checkpoint is written into ``ckpt-….tmp`` and renamed, then ``latest.json`` is replaced atomically,
so a process killed at any moment leaves the previous checkpoint intact and readable.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from kerasrecon.config import TrainConfig
from kerasrecon.errors import ConfigError, DataError

CONFIG_FILE = "config.json"
CKPT_DIR = "checkpoints"
LATEST = "latest.json"
KEEP = 3


def _write_atomic(path: Path, text: str):
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(run_dir, step: int, gan) -> Path:
    """Write G, D and both optimizers at ``step``; keep the newest ``KEEP``. Returns the directory."""
    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{step:08d}"
    tmp = root / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    gan.generator.save_weights(str(tmp / "generator.weights.h5"))
    gan.discriminator.save_weights(str(tmp / "discriminator.weights.h5"))
    arrays = {f"g_{i}": np.asarray(v.numpy()) for i, v in enumerate(_adam(gan.g_optimizer).variables)}
    arrays.update({f"d_{i}": np.asarray(v.numpy()) for i, v in enumerate(_adam(gan.d_optimizer).variables)})
    np.savez(tmp / "optimizers.npz", **arrays)
    _write_atomic(tmp / "state.json", json.dumps({"step": step}))
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_atomic(root / LATEST, json.dumps({"step": step, "dir": name}))
    for old in sorted(p for p in root.glob("ckpt-*") if p.is_dir() and not p.name.endswith(".tmp"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _adam(opt):
    """The Adam state itself (inside a LossScaleOptimizer under mixed_float16), so checkpoints are
    interchangeable between precisions."""
    return getattr(opt, "inner_optimizer", opt)


def latest_checkpoint(run_dir):
    """``(step, path)`` of the newest complete checkpoint, or ``None``."""
    latest = Path(run_dir) / CKPT_DIR / LATEST
    if not latest.is_file():
        return None
    try:
        info = json.loads(latest.read_text())
    except json.JSONDecodeError:
        raise DataError(f"{latest}: corrupt (not JSON)") from None
    path = latest.parent / info["dir"]
    if not (path / "state.json").is_file():
        raise DataError(f"{latest}: points to {path}, which is incomplete")
    return int(info["step"]), path


def restore_checkpoint(path, gan, optimizers: bool = True):
    """Load G, D (and optimizer state) from a checkpoint directory into a built ``ReconGAN``."""
    path = Path(path)
    gan.generator.load_weights(str(path / "generator.weights.h5"))
    gan.discriminator.load_weights(str(path / "discriminator.weights.h5"))
    if optimizers:
        arrays = np.load(path / "optimizers.npz")
        for prefix, opt in (("g", gan.g_optimizer), ("d", gan.d_optimizer)):
            variables = _adam(opt).variables
            if sum(k.startswith(prefix + "_") for k in arrays.files) != len(variables):
                raise DataError(f"{path}: optimizer state does not match this model (different architecture?)")
            for i, v in enumerate(variables):
                v.assign(arrays[f"{prefix}_{i}"])


def read_config(run_dir) -> TrainConfig:
    """The ``TrainConfig`` saved in ``RUN/config.json``."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: not a kerasrecon run (no {CONFIG_FILE})")
    return TrainConfig.from_json(path.read_text())


# Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "log_every", "strategy", "precision", "jit",
                     "collective_timeout_s"}


def check_resume_config(run_dir, cfg: TrainConfig, force: bool):
    """Refuse to continue a run whose saved config differs (beyond ``RESUMABLE_CHANGES``) unless ``force``."""
    saved = _flatten(read_config(run_dir).to_dict())
    new = _flatten(cfg.to_dict())
    diff = sorted(k for k in new if k not in RESUMABLE_CHANGES and new[k] != saved.get(k))
    if diff and not force:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {new[k]!r}" for k in diff)
        raise ConfigError(f"--out {run_dir} holds a run with a different config ({details}); "
                          "use a new --out, or --force to continue it with the new settings")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def load_generator(run_dir):
    """Rebuild a run's generator and load its newest weights.

    Returns:
        (TrainConfig, keras.Model generator, step).
    """
    from kerasrecon.models.generator import build_generator

    cfg = read_config(run_dir)
    found = latest_checkpoint(run_dir)
    if found is None:
        raise DataError(f"{run_dir}: run has no checkpoint yet (checkpoints/{LATEST} missing)")
    step, path = found
    g = build_generator(cfg.model.blocks, cfg.model.filters, cfg.model.noise_lambda)
    g.load_weights(str(path / "generator.weights.h5"))
    return cfg, g, step


def ensure_writable(run_dir):
    """Create ``run_dir`` and check it is writable; ``ConfigError`` naming ``--out`` otherwise."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {run_dir}: not writable ({exc.strerror or exc})") from None
