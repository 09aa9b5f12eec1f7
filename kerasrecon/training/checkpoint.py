"""Crash-safe, verified checkpoints of a run directory.

Layout::

    RUN/.lock                             held by the training process (``kerasrecon.io.RunLock``)
    RUN/config.json                       the TrainConfig (JSON)
    RUN/checkpoints/ckpt-00001000/        generator.weights.h5, discriminator.weights.h5,
                                          optimizers.npz (G and D Adam state, keyed
                                          "g/<variable path>", e.g. g/g_conv_in_kernel_momentum),
                                          state.json {"step", "sha256": {file: hex digest}}
    RUN/checkpoints/latest.json           {"step": 1000, "dir": "ckpt-00001000"} (informative only)

A checkpoint is written only when every variable (G, D, both optimizers' slots) is finite, into a
temporary sibling (``kerasrecon.io.atomic_dir``), then renamed; ``state.json`` (with the SHA-256 of
every file) is written last. When
reading, the checkpoint directories are tried newest first and the first whose files match their
checksums, load, and hold finite values wins; a damaged newer one is reported in one log line.
``KEEP`` (3) checkpoints are kept, so one damaged file never costs more than one interval.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from kerasrecon.config import ARCHITECTURE_FIELDS, RESUMABLE_CHANGES, TrainConfig
from kerasrecon.errors import ConfigError, DataError, arg
from kerasrecon.io import atomic_dir, sha256_file, write_text_atomic

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CKPT_DIR = "checkpoints"
LATEST = "latest.json"
STATE = "state.json"
KEEP = 3
TMP_KIND = "ckpt"  # temporaries: checkpoints/.ckpt-<pid>-<random>/ (kerasrecon.io.atomic_dir)
FILES = ("generator.weights.h5", "discriminator.weights.h5", "optimizers.npz")


class NonFiniteWeights(DataError):
    """A model or optimizer variable holds NaN/Inf; such a state is never written or resumed from."""


def _all_variables(gan):
    """``[(name, keras.Variable)]`` of G, D and both Adam states."""
    out = [(f"generator/{v.path}", v) for v in gan.generator.variables]
    out += [(f"discriminator/{v.path}", v) for v in gan.discriminator.variables]
    out += [(f"g_optimizer/{v.path}", v) for v in _adam(gan.g_optimizer).variables]
    out += [(f"d_optimizer/{v.path}", v) for v in _adam(gan.d_optimizer).variables]
    return out


def non_finite_variables(variables) -> list[tuple[str, int]]:
    """``[(name, count of NaN/Inf values)]`` of ``[(name, variable)]`` with any; empty when all finite."""
    bad = []
    for name, v in variables:
        arr = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        if np.issubdtype(arr.dtype, np.floating):
            n = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            if n:
                bad.append((name, n))
    return bad


def _describe(bad) -> str:
    total = sum(n for _, n in bad)
    return f"{total} non-finite values in {len(bad)} variables (first: {bad[0][0]})"


def save_checkpoint(run_dir, step: int, gan) -> Path:
    """Write G, D and both optimizers at ``step``; keep the newest ``KEEP``. Returns the directory.

    Raises:
        NonFiniteWeights: some variable is NaN/Inf; nothing is written.
    """
    bad = non_finite_variables(_all_variables(gan))
    if bad:
        raise NonFiniteWeights(f"step {step}: {_describe(bad)}; checkpoint not written")
    root = Path(run_dir) / CKPT_DIR
    name = f"ckpt-{step:08d}"
    final = root / name
    with atomic_dir(final, TMP_KIND, replace=True) as tmp:  # ENOSPC, SIGTERM...: nothing half-written stays
        gan.generator.save_weights(str(tmp / FILES[0]))
        gan.discriminator.save_weights(str(tmp / FILES[1]))
        arrays = {f"g/{_slot(v)}": np.asarray(v.numpy()) for v in _adam(gan.g_optimizer).variables}
        arrays.update({f"d/{_slot(v)}": np.asarray(v.numpy()) for v in _adam(gan.d_optimizer).variables})
        np.savez(tmp / FILES[2], **arrays)
        digests = {f: sha256_file(tmp / f) for f in FILES}
        write_text_atomic(tmp / STATE, json.dumps({"step": step, "sha256": digests}))
    write_text_atomic(root / LATEST, json.dumps({"step": step, "dir": name}))
    for old in _checkpoint_dirs(root)[KEEP:]:
        shutil.rmtree(old[1], ignore_errors=True)
    return final


def remove_temporaries(run_dir) -> list[Path]:
    """Delete checkpoint temporaries (``checkpoints/.ckpt-*``, and ``ckpt-*.tmp`` of older versions)
    and stray ``.*.tmp`` files left by a killed writer. Call with the run lock held: no other writer
    can own them then. Returns what was removed."""
    root = Path(run_dir) / CKPT_DIR
    found = []
    if root.is_dir():
        found += list(root.glob(f".{TMP_KIND}-*")) + list(root.glob("ckpt-*.tmp")) + list(root.glob(".*.tmp"))
        found += list(root.glob(".write-*"))
    found += list(Path(run_dir).glob(".*.tmp")) + list(Path(run_dir).glob(".write-*"))
    for p in found:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if found:
        log.info(
            "removed %d temporary file(s) left by an interrupted run: %s", len(found), ", ".join(p.name for p in found)
        )
    return found


def _slot(v) -> str:
    """An optimizer variable's key: its path without the optimizer's own name (``adam/``, ``adam_1/``
    depend on creation order), e.g. ``g_conv_in_kernel_momentum``, ``iteration``."""
    return v.path.split("/", 1)[-1]


# Layers renamed since checkpoints were first written: their optimizer slots are read under the new name.
RENAMED_LAYERS = {"d_prob": "d_logit"}  # the discriminator's last Dense returns a logit


def _current_slot(key: str) -> str:
    """``key`` of an optimizer slot with renamed layers (``RENAMED_LAYERS``) given their current name."""
    prefix, _, slot = key.partition("/")
    for old, new in RENAMED_LAYERS.items():
        if slot.startswith(old + "_"):
            return f"{prefix}/{new}{slot[len(old) :]}"
    return key


def _assign_slots(path, arrays, prefix, variables):
    """Assign ``{prefix}/{slot}`` arrays by name (renamed layers under their new names); checkpoints of
    0.1 (``{prefix}_{i}``, by position) still load when the count matches. A missing, extra or
    mis-shaped slot is an error, never skipped."""
    stored = {_current_slot(k): k for k in arrays.files if k.startswith(prefix + "/")}
    keys = list(stored)
    if not keys:  # positional layout written before variable paths were used
        keys = [f"{prefix}_{i}" for i in range(sum(k.startswith(prefix + "_") for k in arrays.files))]
        if len(keys) != len(variables):
            raise DataError(f"{path}: optimizer state does not match this model (different architecture?)")
        values = [arrays[k] for k in keys]
    else:
        wanted = {f"{prefix}/{_slot(v)}" for v in variables}
        if set(keys) != wanted:
            diff = sorted(set(keys) ^ wanted)
            raise DataError(
                f"{path}: optimizer state does not match this model ({len(diff)} variables differ, "
                f"first {diff[0]}; different architecture?)"
            )
        values = [arrays[stored[f"{prefix}/{_slot(v)}"]] for v in variables]
    for v, value in zip(variables, values):
        if tuple(v.shape) != value.shape:
            raise DataError(f"{path}: optimizer variable {v.path} has shape {value.shape}, the model {tuple(v.shape)}")
        v.assign(value)


def _adam(opt):
    """The Adam state itself (inside a LossScaleOptimizer under mixed_float16), so checkpoints are
    interchangeable between precisions."""
    return getattr(opt, "inner_optimizer", opt)


def _checkpoint_dirs(root: Path) -> list[tuple[int, Path]]:
    """``[(step, dir)]`` of ``ckpt-N`` directories, newest first (no ``.tmp``)."""
    out = []
    for p in root.glob("ckpt-*") if root.is_dir() else []:
        if p.is_dir() and not p.name.endswith(".tmp"):
            try:
                out.append((int(p.name.split("-", 1)[1]), p))
            except ValueError:
                continue
    return sorted(out, reverse=True)


@dataclasses.dataclass(frozen=True)
class CheckpointState:
    """``ckpt-N/state.json``: the step and the SHA-256 of each file (absent in checkpoints of 0.1)."""

    step: int
    sha256: dict[str, str] | None = None


def verify_checkpoint(path) -> str | None:
    """Why the checkpoint directory ``path`` is damaged, or ``None`` when its files match their SHA-256.

    Checkpoints written before checksums existed (no ``sha256`` in ``state.json``) are accepted if
    their files are present; their values are still checked when loaded.
    """
    path = Path(path)
    from kerasrecon.schema import from_dict, read_json

    if not (path / STATE).is_file():
        return f"{STATE} missing (incomplete)"
    try:
        state = from_dict(CheckpointState, read_json(path / STATE, "checkpoint state"), STATE)
    except DataError as exc:
        return f"{STATE} unreadable ({str(exc).split(': ', 1)[-1]})"
    digests = state.sha256
    for f in FILES:
        if not (path / f).is_file():
            return f"{f} missing"
        if isinstance(digests, dict) and digests.get(f) != sha256_file(path / f):
            return f"{f} does not match its sha256 (truncated or overwritten)"
    return None


def _report(run_dir, damaged, used):
    if damaged:
        names = "; ".join(f"{n}: {why}" for n, why in damaged)
        log.warning("%s: skipped damaged checkpoint(s) (%s); using %s", run_dir, names, used)


def _no_intact(run_dir, damaged):
    details = "; ".join(f"{n}: {why}" for n, why in damaged)
    return DataError(
        f"{run_dir}: no intact checkpoint ({details}); restore it from a backup or start a new {arg('out')}"
    )


def _newest_intact(run_dir, load=None):
    """``(step, path)`` of the newest checkpoint that matches its checksums and, when given, survives
    ``load(path)`` (which raises ``DataError`` naming what is wrong); ``None`` when there is none at all.
    Damaged newer ones are reported in one warning line; ``DataError`` when every one is damaged."""
    damaged = []
    for step, path in _checkpoint_dirs(Path(run_dir) / CKPT_DIR):
        why = verify_checkpoint(path)
        if why is None and load is not None:
            try:
                load(path)
            except DataError as exc:
                why = str(exc).replace(f"{path}: ", "")
        if why:
            damaged.append((path.name, why))
            continue
        _report(run_dir, damaged, path.name)
        return step, path
    if damaged:
        raise _no_intact(run_dir, damaged)
    return None


def latest_checkpoint(run_dir):
    """``(step, path)`` of the newest checkpoint whose files match their checksums, or ``None`` when
    the run has no checkpoint. Raises ``DataError`` when every checkpoint is damaged."""
    return _newest_intact(run_dir)


def restore_checkpoint(path, gan, optimizers: bool = True):
    """Load G, D (and optimizer state) from a checkpoint directory into a built ``ReconGAN``.

    Raises:
        DataError: a file cannot be loaded into this model.
        NonFiniteWeights: the loaded values contain NaN/Inf.
    """
    path = Path(path)
    try:
        gan.generator.load_weights(str(path / FILES[0]))
        gan.discriminator.load_weights(str(path / FILES[1]))
        if optimizers:
            arrays = np.load(path / FILES[2])
            for prefix, opt in (("g", gan.g_optimizer), ("d", gan.d_optimizer)):
                _assign_slots(path, arrays, prefix, _adam(opt).variables)
    except DataError:
        raise
    except Exception as exc:  # h5py/zip/Keras loading errors on a damaged or foreign file
        raise DataError(f"{path}: cannot load ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
    variables = _all_variables(gan) if optimizers else [(f"generator/{v.path}", v) for v in gan.generator.variables]
    bad = non_finite_variables(variables)
    if bad:
        raise NonFiniteWeights(f"{path}: {_describe(bad)}")


def restore_latest(run_dir, gan) -> int | None:
    """Restore the newest intact checkpoint of ``run_dir`` into ``gan``; returns its step (``None``: no
    checkpoint). Damaged ones (checksum, load or NaN/Inf) are skipped with one warning line.

    Raises:
        DataError: checkpoints exist but none is intact (nothing is changed on disk).
    """
    found = _newest_intact(run_dir, lambda path: restore_checkpoint(path, gan))
    return found[0] if found else None


def read_config(run_dir) -> TrainConfig:
    """The ``TrainConfig`` saved in ``RUN/config.json``."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: not a kerasrecon run (no {CONFIG_FILE})")
    from kerasrecon.schema import read_json

    return TrainConfig.from_dict(read_json(path, "a kerasrecon run config"), str(path))


def check_resume_config(run_dir, cfg: TrainConfig, force: bool):
    """Refuse to continue a run whose saved config differs (beyond ``RESUMABLE_CHANGES``) unless ``force``."""
    saved = _flatten(read_config(run_dir).to_dict())
    new = _flatten(cfg.to_dict())
    diff = sorted(k for k in new if k not in RESUMABLE_CHANGES and new[k] != saved.get(k))
    arch = [k for k in diff if k in ARCHITECTURE_FIELDS]
    if arch:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {new[k]!r}" for k in arch)
        raise ConfigError(
            f"{arg('out')} {run_dir} holds a run with a different architecture ({details}); its checkpoints "
            f"cannot be loaded into the new model, and {arg('force')} only allows resumable changes; "
            f"use a new {arg('out')}"
        )
    if diff and not force:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {new[k]!r}" for k in diff)
        raise ConfigError(
            f"{arg('out')} {run_dir} holds a run with a different config ({details}); "
            f"use a new {arg('out')}, or {arg('force')} to continue it with the new settings"
        )


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def load_generator(run_dir):
    """Rebuild a run's generator and load its newest intact weights (damaged checkpoints are skipped
    with a warning, as in :func:`restore_latest`).

    Returns:
        (TrainConfig, keras.Model generator, step).
    """
    from kerasrecon.models.generator import from_config

    cfg = read_config(run_dir)
    g = from_config(cfg.model)

    def load(path):
        try:
            g.load_weights(str(path / FILES[0]))
        except Exception as exc:
            raise DataError(f"cannot load {FILES[0]} ({exc.__class__.__name__})") from None
        bad = non_finite_variables([(f"generator/{v.path}", v) for v in g.variables])
        if bad:
            raise NonFiniteWeights(_describe(bad))

    found = _newest_intact(run_dir, load)
    if found is None:
        raise DataError(f"{run_dir}: run has no checkpoint yet (no {CKPT_DIR}/ckpt-*)")
    return cfg, g, found[0]


def has_checkpoint(run_dir) -> bool:
    """Whether ``run_dir`` holds a ``ckpt-N`` directory (intact or not): a run to resume, not to start."""
    return bool(_checkpoint_dirs(Path(run_dir) / CKPT_DIR))


def start_weights(spec: str, generator) -> list:
    """The weights ``fit --init-from`` copies into ``generator`` at step 0: those of the run directory
    or ``pretrained:NAME`` ``spec``, matched by weight path (``g_conv_in/kernel``...).

    Every weight of the source must exist in ``generator`` with the same shape; the generator's other
    weights (what its architecture adds, e.g. ``model.cg_iters``' ``log_mu``) keep their initial values.

    Returns:
        ``[(variable, numpy array)]`` to assign.

    Raises:
        ConfigError, DataError: one line naming ``--init-from``: no such run or model, no intact
        checkpoint, or a source weight this generator lacks or holds in another shape.
    """
    from kerasrecon.errors import KerasReconError
    from kerasrecon.pretrained import load_pretrained, pretrained_name

    option = f"{arg('init_from')} {spec}"
    if pretrained_name(spec) is not None:
        _, source, _, _ = load_pretrained(pretrained_name(spec), arg("init_from"))
    elif not Path(spec).is_dir():
        raise ConfigError(f"{option}: not a directory (expected a run directory or pretrained:NAME)")
    else:
        try:
            _, source, _ = load_generator(spec)
        except KerasReconError as exc:
            raise type(exc)(f"{option}: {exc}") from None
    own = {v.path: v for v in generator.weights}
    pairs = []
    for w in source.weights:
        mine = own.get(w.path)
        if mine is None or tuple(mine.shape) != tuple(w.shape):
            got = "absent" if mine is None else f"shape {tuple(mine.shape)}"
            raise ConfigError(
                f"{option}: its generator weight {w.path} {tuple(w.shape)} does not fit this architecture "
                f"({got}); give the --blocks/--filters/--cascades/--network of the source"
            )
        pairs.append((mine, np.asarray(w)))
    return pairs
