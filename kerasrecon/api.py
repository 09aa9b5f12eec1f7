"""``Reconstructor``: NumPy k-space and mask in, NumPy image out — normalisation and DC inside.

    >>> from kerasrecon import Reconstructor
    >>> rec = Reconstructor.from_run("runs/hybrid")          # or .from_export("export/")
    >>> rec = Reconstructor.pretrained("singlecoil-r4")      # or a model shipped in the package
    >>> image = rec(kspace, mask)                             # [S, H, W] or [H, W] float32 magnitude

The input is measured k-space at its own scale (centred orthonormal convention, ``kspace.py``); it
is masked, zero-filled, scaled by ``1 / max|zero_filled|`` per slice (what the model was trained
on — forgetting it costs ~10 dB silently), passed through the generator (data consistency inside)
and scaled back. ``from_export`` runs the SavedModel, which does the same in its graph.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from kerasrecon.errors import DataError, arg
from kerasrecon.kspace import check_ensemble, check_kspace, dihedral_np, from_channels, model_inputs_np, per_slice

# A mask whose achieved R is further than this (relative) from the training R draws a warning.
R_TOLERANCE = 0.1


class MaskMismatchWarning(UserWarning):
    """A model is used with another mask kind or acceleration than it was trained with."""


def _check_mask(mask, shape):
    """mask 0/1 ``[H, W]`` or ``[S, H, W]`` (or a :class:`kerasrecon.masks.Mask`) -> float32 broadcast to
    ``shape`` ``(S, H, W)``."""
    mask = np.asarray(getattr(mask, "array", mask))
    if np.iscomplexobj(mask) or not (np.issubdtype(mask.dtype, np.number) or mask.dtype == bool):
        raise DataError(f"mask: expected real 0/1 values. Received: dtype={mask.dtype}")
    mask = mask.astype(np.float32)
    if mask.shape not in (shape[1:], shape):
        raise DataError(f"mask: expected shape {shape[1:]} or {shape}. Received: {mask.shape}")
    if not np.all(np.isfinite(mask)) or not np.all((mask == 0) | (mask == 1)):
        raise DataError("mask: expected only 0 and 1")
    return np.broadcast_to(mask, shape)


def _check_complex(kspace):
    check_kspace(kspace, name="kspace")
    if not np.iscomplexobj(kspace):
        raise DataError(f"kspace: expected a complex array (measured k-space). Received: dtype={kspace.dtype}")
    return kspace.astype(np.complex64)


def _as_batch(kspace, mask):
    kspace = np.asarray(kspace)
    single = kspace.ndim == 2
    if kspace.ndim not in (2, 3) or (kspace.ndim == 3 and kspace.shape[0] < 1) or min(kspace.shape[-2:]) < 2:
        raise DataError(
            f"kspace: expected complex [S, H, W] or [H, W] with S >= 1 and H, W >= 2 (multi-coil "
            f"[S, C, H, W] with maps=). Received: shape={kspace.shape}"
        )
    kspace = _check_complex(kspace[None] if single else kspace)
    return kspace, _check_mask(mask, kspace.shape), single


def _as_batch_multicoil(kspace, mask, maps):
    """kspace and maps complex ``[S, C, H, W]`` (or ``[C, H, W]``), mask ``[H, W]`` or ``[S, H, W]``.
    Returns (kspace, mask ``[S, H, W]``, maps, single)."""
    kspace, maps = np.asarray(kspace), np.asarray(maps)
    if kspace.ndim not in (3, 4) or maps.shape != kspace.shape or 0 in kspace.shape or min(kspace.shape[-2:]) < 2:
        raise DataError(
            f"multi-coil: kspace and maps must be complex [S, C, H, W] (or [C, H, W]) of one shape with "
            f"S, C >= 1 and H, W >= 2. Received: kspace {kspace.shape}, maps {maps.shape}"
        )
    single = kspace.ndim == 3
    kspace, maps = (kspace[None], maps[None]) if single else (kspace, maps)
    kspace = _check_complex(kspace)
    check_kspace(maps, name="maps")
    s, _, h, w = kspace.shape
    return kspace, _check_mask(mask, (s, h, w)), maps.astype(np.complex64), single


def _path_argument(path, option: str) -> Path:
    """``path`` as a ``Path``; ``DataError`` naming ``option`` when it is not a path or is not a directory."""
    import os

    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"{option}: expected a directory path (str or os.PathLike). Received: {type(path).__name__}")
    if not Path(path).is_dir():
        raise DataError(f"{option} {path}: not a directory (expected a run from 'kerasrecon fit' or an export)")
    return Path(path)


class Reconstructor:
    """Reconstruct undersampled k-space with a trained generator (a run) or an exported SavedModel.

    Call: ``rec(kspace, mask, batch_size=8)`` with kspace complex ``[S, H, W]`` or ``[H, W]`` (already
    undersampled or not: it is masked here) and mask 0/1 ``[H, W]`` or ``[S, H, W]``; returns the
    magnitude float32 of the same ``[S, H, W]`` / ``[H, W]`` at the input's intensity scale.
    Multi-coil (a run, not an export): ``rec(kspace, mask, maps=maps)`` with kspace and coil
    sensitivities complex ``[S, C, H, W]``: the input is the SENSE-combined zero-filled image and
    data consistency runs coil by coil (same weights); returns ``[S, H, W]``. Any valid maps work
    (ACS, ESPIRiT, your own, with any phase): the graph puts them into the convention it was trained
    with (``models.generator.MapPhase``).

    A plug-and-play model (a config with ``pnp`` settings, e.g. ``pretrained:singlecoil-r8``;
    :mod:`kerasrecon.pnp`) solves converged TV for each slice and refines it with its denoiser and exact
    data consistency; its self-ensemble averages the denoiser over the transforms inside each step. It is
    single-coil, and a run or pretrained model only (no SavedModel export).

    The mask may also be a :class:`kerasrecon.masks.Mask`. A mask of another kind or acceleration than
    the model's training mask works, with one :class:`MaskMismatchWarning` per Reconstructor.

    Self-ensemble (``rec(..., ensemble=8)`` or ``rec.ensemble = 8``; default 1): the acquisition is
    also reconstructed mirrored and transposed (k-space, mask and maps together: each transform is an
    exact acquisition of the transformed image, ``kspace.dihedral_np``), the complex outputs are
    turned back and averaged. 2 adds the H mirror, 4 both mirrors, 8 the transposes too; it costs
    ``ensemble`` times the time. Runs and pretrained models; an export has the size it was exported
    with (``kerasrecon export --ensemble N``) built into its graph.

    Attributes:
        config: the run's ``TrainConfig``; step: the checkpoint step; source: the path (or
        ``pretrained:NAME``); card: the model card (Markdown) of a pretrained model, else ``None``;
        ensemble: the default self-ensemble size (1, 2, 4 or 8).
    """

    def __init__(
        self, call, config, step, source, call_multicoil=None, card=None, call_complex=None, call_ensemble=None
    ):
        self._call, self.config, self.step, self.source = call, config, step, str(source)
        self._call_multicoil = call_multicoil
        self._call_complex = call_complex
        self._call_ensemble = call_ensemble  # (kspace, mask, n) -> magnitude: a model that ensembles inside
        self.card = card
        self._warned = set()
        self._ensemble = 1

    @property
    def ensemble(self) -> int:
        """Self-ensemble size used when a call does not give one (1: off)."""
        return self._ensemble

    @ensemble.setter
    def ensemble(self, n: int) -> None:
        self.set_ensemble(n)

    def set_ensemble(self, n: int, option: str = "ensemble") -> Reconstructor:
        """Set the default self-ensemble size (1, 2, 4 or 8); ``DataError`` naming ``option`` for another
        value, or above 1 for a SavedModel export. Returns ``self``."""
        self._ensemble = self._check_ensemble(n, option)
        return self

    def _check_ensemble(self, n, option: str = "ensemble") -> int:
        return check_ensemble(n, option, export=self.source if self._call_complex is None else None)

    @classmethod
    def from_run(cls, run_dir, option: str | None = None) -> Reconstructor:
        """The newest intact checkpoint of a ``kerasrecon fit`` run directory (``option`` names the
        argument in errors, e.g. a run that ``fit`` is writing; default ``model``). ``pretrained:NAME``
        is :meth:`pretrained`."""
        option = option or arg("model")
        from kerasrecon.pretrained import pretrained_name

        if pretrained_name(run_dir) is not None:
            return cls.pretrained(pretrained_name(run_dir), option)
        from kerasrecon.io import RunLock
        from kerasrecon.training.checkpoint import load_generator

        run_dir = _path_argument(run_dir, option)
        with RunLock(run_dir, exclusive=False, option=option):
            cfg, generator, step = load_generator(run_dir)
        return cls._from_generator(cfg, generator, step, run_dir)

    @classmethod
    def pretrained(cls, name: str, option: str | None = None) -> Reconstructor:
        """A model shipped in the package (:func:`kerasrecon.pretrained_models` lists them), its files
        checked against their recorded SHA-256; ``rec.card`` is its model card. Multi-coil models are
        called as runs are: ``rec(coil_kspace [S, C, H, W], mask, maps=maps)``."""
        from kerasrecon.pretrained import PREFIX, load_pretrained

        cfg, generator, step, model = load_pretrained(name, option)
        card = (model.path / "card.md").read_text(encoding="utf-8")
        return cls._from_generator(cfg, generator, step, PREFIX + name, card)

    @classmethod
    def _from_generator(cls, cfg, generator, step, source, card=None) -> Reconstructor:
        if cfg.pnp is not None:
            return cls._from_denoiser(cfg, generator, step, source, card)
        multicoil_generator = []

        def call_complex(kspace, mask, maps=None):
            model = generator
            if maps is not None:
                if not multicoil_generator:  # built once
                    from kerasrecon.models.generator import multicoil_twin

                    multicoil_generator.append(multicoil_twin(generator, cfg.model))
                model = multicoil_generator[0]
            inputs, scale = model_inputs_np(kspace, mask, maps)
            # Compiled (tf.function / jax.jit), not an eager call: an eager functional model keeps every
            # layer's output until it returns, about 2 GB per 370×301 slice for the 5-cascade model,
            # against 0.1 GB compiled, which is also 1.5-3.5× faster after the first call of a shape.
            return from_channels(np.asarray(model.predict_on_batch(inputs))) / per_slice(scale, 3)

        def call(kspace, mask, maps=None):
            return np.abs(call_complex(kspace, mask, maps))

        return cls(call, cfg, step, source, call_multicoil=call, card=card, call_complex=call_complex)

    @classmethod
    def _from_denoiser(cls, cfg, denoiser, step, source, card=None) -> Reconstructor:
        """A plug-and-play model (:mod:`kerasrecon.pnp`): converged TV, then ``cfg.pnp.iters`` denoiser
        and data-consistency steps; self-ensemble averages the denoiser over the transforms inside each
        step (one TV solve per slice, not one per transform). Single-coil."""
        from kerasrecon import pnp

        def call_complex(kspace, mask, maps=None, ensemble=1):
            if maps is not None:
                raise DataError(f"{source}: a plug-and-play model reconstructs single-coil k-space; maps= is not taken")
            return pnp.solve(denoiser, cfg, kspace, mask, ensemble=ensemble)

        def call(kspace, mask, maps=None):
            return np.abs(call_complex(kspace, mask, maps))

        def call_ensemble(kspace, mask, n):
            return np.abs(call_complex(kspace, mask, ensemble=n))

        return cls(call, cfg, step, source, call_multicoil=call, card=card, call_complex=call_complex,
                   call_ensemble=call_ensemble)  # fmt: skip

    @classmethod
    def from_export(cls, path) -> Reconstructor:
        """A SavedModel written by ``kerasrecon export`` (needs TensorFlow, not the run)."""
        from kerasrecon.config import TrainConfig
        from kerasrecon.export import load_export
        from kerasrecon.reconstruct import run_serving

        path = _path_argument(path, arg("model"))
        loaded, meta = load_export(path)
        serve = loaded.signatures["serving_default"]

        def call(kspace, mask):
            return run_serving(serve, kspace, np.ascontiguousarray(mask), name=f"{arg('model')} {path}")

        return cls(
            call,
            TrainConfig.from_dict(meta["train_config"], f"{arg('model')} {path}: train_config"),
            meta.get("step"),
            path,
        )

    @classmethod
    def load(cls, path, option: str | None = None) -> Reconstructor:
        """``pretrained`` for ``pretrained:NAME``, ``from_export`` for a SavedModel directory, else
        ``from_run`` (``option`` names the argument in errors; default ``model``)."""
        from kerasrecon.pretrained import pretrained_name

        option = option or arg("model")
        if pretrained_name(path) is not None:
            return cls.pretrained(pretrained_name(path), option)
        path = _path_argument(path, option)
        return cls.from_export(path) if (Path(path) / "saved_model.pb").is_file() else cls.from_run(path, option)

    def note_mask(self, kind: str | None = None, acceleration: float | None = None) -> None:
        """Warn (:class:`MaskMismatchWarning`, once per difference) when ``kind`` or ``acceleration``
        differs from the model's training mask; the reconstruction still runs."""
        trained = self.config.mask
        if kind is not None and kind != trained.kind:
            trained_as = f"it was trained with {trained.kind} masks at R = {trained.acceleration:g}"
            self._warn(("kind", kind), f"with {kind} masks ({trained_as})")
        if acceleration is not None and abs(acceleration / trained.acceleration - 1) > R_TOLERANCE:
            self._warn(
                ("R", round(acceleration)),
                f"at R = {acceleration:.3g} (it was trained at R = {trained.acceleration:g} with {trained.kind} masks)",
            )

    def _warn(self, key, what):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(
                f"{self.source} is used {what}: expect lower quality than at its training mask",
                MaskMismatchWarning,
                stacklevel=3,
            )

    def _ensembled(self, kspace, mask, maps, n: int) -> np.ndarray:
        """Mean of the ``n`` transformed reconstructions' complex outputs, turned back; magnitude."""
        total = 0
        for t in range(n):
            k, m = dihedral_np(kspace, t), dihedral_np(mask, t)
            out = self._call_complex(k, m, None if maps is None else dihedral_np(maps, t))
            total = total + dihedral_np(out, t, inverse=True)
        return np.abs(total / n)

    def __call__(self, kspace, mask, batch_size: int = 8, maps=None, ensemble: int | None = None) -> np.ndarray:
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise DataError(f"batch_size must be >= 1. Received: {batch_size}")
        n = self._ensemble if ensemble is None else self._check_ensemble(ensemble)
        self.note_mask(getattr(mask, "kind", None))
        if maps is None:
            kspace, mask, single = _as_batch(kspace, mask)
        else:
            if self._call_multicoil is None:
                raise DataError(
                    f"{self.source}: a SavedModel export serves single-coil k-space; reconstruct "
                    "multi-coil data from the run directory"
                )
            kspace, mask, maps, single = _as_batch_multicoil(kspace, mask, maps)

        def one(k, m, mp):
            if n > 1 and self._call_ensemble is not None and mp is None:
                return self._call_ensemble(k, m, n)
            if n > 1:
                return self._ensembled(k, m, mp, n)
            return self._call(k, m) if mp is None else self._call_multicoil(k, m, mp)

        parts = [
            one(
                kspace[i : i + batch_size],
                mask[i : i + batch_size],
                None if maps is None else maps[i : i + batch_size],
            )
            for i in range(0, kspace.shape[0], batch_size)
        ]
        self.note_mask(acceleration=float(mask.size / max(float(mask.sum()), 1.0)))
        out = np.concatenate(parts).astype(np.float32)
        if not np.all(np.isfinite(out)):  # float32 arithmetic overflowed (k-space near 3e38): never a silent NaN
            raise DataError(
                "kspace: the reconstruction is not finite (values too large for float32 arithmetic); "
                "rescale the k-space"
            )
        return out[0] if single else out

    def __repr__(self):
        m, p = self.config.model, self.config.pnp
        model = f"loss={self.config.loss.content}, {_network(m)}, cascades={m.cascades}"
        if p is not None:
            model = (
                f"plug-and-play(init={p.init}, iters={p.iters}, denoiser=unet(levels={m.levels}, filters={m.filters}))"
            )
        return f"Reconstructor({self.source!r}, step={self.step}, {model}, R={self.config.mask.acceleration:g}" + (
            f", ensemble={self._ensemble})" if self._ensemble > 1 else ")"
        )


def _network(m) -> str:
    """A ``ModelConfig``'s regulariser for ``repr``: ``blocks=4`` or ``unet(levels=2, shared)``."""
    tags = (", shared" if m.share_weights else "") + (", bias-free" if m.bias_free else "")
    if m.network == "unet":
        return f"unet(levels={m.levels}{tags})"
    return f"blocks={m.blocks}{tags}"
