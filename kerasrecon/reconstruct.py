"""Reconstruct k-space files with an exported SavedModel, a run or a pretrained model (fastMRI
submission layout).

Input: a fastMRI single-coil ``.h5`` or a prepared-dataset volume ``.h5`` (both hold ``kspace``
complex ``[S, H, W]``), a fastMRI multi-coil ``.h5`` (``kspace`` ``[S, C, H, W]``: coil maps are
estimated from the sampled centre, ``coils.acs_lines_ch`` columns of the training mask's centre
fraction — in the graph by an export's ``multicoil`` signature, by ``coils.acs_maps_np`` for a run —
then SENSE-combined, with
coil-wise data consistency), a ``.npy`` of complex k-space ``[S, H, W]`` or ``[H, W]`` (centred
orthonormal convention), or a directory of them. A fully sampled fastMRI file is reconstructed on the
grid the models are trained on (320×320: crop the image, re-transform; ``grid="file"`` keeps the
file's own grid); everything else on the file's own k-space grid. The mask:

* if the file has a ``mask`` dataset (fastMRI test/challenge files: ``[W]`` sampled columns, k-space
  already undersampled) that mask is used;
* otherwise a mask of ``mask_cfg`` (kind, R, seed) is drawn at the k-space shape.

Output per input file: ``reconstruction`` float32 ``[S, h, w]`` (magnitude; centre-cropped to
``crop``, by default 320×320 for fastMRI files, none for prepared volumes) and attributes with the
mask id and the model's training metadata.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import h5py
import numpy as np

from kerasrecon.config import GRIDS, MaskConfig
from kerasrecon.data import h5
from kerasrecon.data.fastmri import CROP, center_crop, to_training_grid
from kerasrecon.errors import DataError, arg
from kerasrecon.io import atomic_file, check_distinct, check_output
from kerasrecon.kspace import check_ensemble, check_kspace
from kerasrecon.masks import Mask, make_mask, mask_hash

INPUT_SUFFIXES = (".h5", ".npy")


def _inputs(path: Path):
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in INPUT_SUFFIXES)
        if not files:
            raise DataError(f"{arg('input')} {path}: no .h5 or .npy k-space files")
        return files
    if not path.is_file():
        raise DataError(f"{arg('input')} {path}: does not exist")
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise DataError(
            f"{arg('input')} {path}: unsupported file type; expected a fastMRI/prepared .h5 with 'kspace' or "
            "a .npy of complex k-space [S, H, W]"
        )
    return [path]


class _NpyKspace:
    """A ``.npy`` of complex k-space seen through the small h5py.File interface used below."""

    def __init__(self, path: Path):
        from kerasrecon.data.images import read_npy

        arr = read_npy(path)
        if not np.iscomplexobj(arr):
            raise DataError(f"{path}: expected complex k-space [S, H, W] or [H, W]. Received: dtype={arr.dtype}")
        if (
            arr.ndim not in (2, 3, 4)
            or (arr.ndim > 2 and arr.shape[0] < 1)
            or min(arr.shape[-2:]) < 2
            or (arr.ndim == 4 and arr.shape[1] < 1)
        ):
            raise DataError(
                f"{path}: expected complex k-space [S, H, W], [H, W] or multi-coil [S, C, H, W] with "
                f"S, C >= 1 and H, W >= 2. Received: shape={arr.shape}"
            )
        self.data = {"kspace": arr[None] if arr.ndim == 2 else arr}
        self.attrs = {}

    def __contains__(self, key):
        return key in self.data

    def __getitem__(self, key):
        return self.data[key]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def kspace_padding(f):
    """``(padding_left, padding_right)`` of a fastMRI file's ISMRMRD header, as fastMRI's VarNet data
    transform computes them: the phase-encode columns ``[left, right)`` that hold measured data (knee
    files zero-pad the rest). ``None`` without a readable header."""
    import xml.etree.ElementTree as ET

    if "ismrmrd_header" not in f or not isinstance(f["ismrmrd_header"], h5py.Dataset):
        return None
    try:
        root = ET.fromstring(bytes(np.asarray(f["ismrmrd_header"][()]).tobytes()).rstrip(b"\0"))
        ns = {"m": "http://www.ismrm.org/ISMRMRD"}
        enc_y = int(root.find("m:encoding/m:encodedSpace/m:matrixSize/m:y", ns).text)
        limits = root.find("m:encoding/m:encodingLimits/m:kspace_encoding_step_1", ns)
        center, maximum = int(limits.find("m:center", ns).text), int(limits.find("m:maximum", ns).text)
    except (ET.ParseError, AttributeError, TypeError, ValueError, OSError):
        return None
    left = enc_y // 2 - center
    return left, left + maximum + 1


def _file_mask(f, shape, mask_cfg: MaskConfig, name: str, padding=None):
    """(mask array [H, W] float32, id dict). ``padding``: ``(left, right)``: columns outside are
    zero-padding in the file and are not sampled (fastMRI's VarNet transform does the same)."""
    if "mask" in f:
        cols = (
            np.asarray(h5.dataset(f, "mask", name, "mask", (1,), layout="[W] (sampled columns)")[()])
            .astype(np.float32)
            .reshape(-1)
        )
        if cols.size != shape[1]:
            raise DataError(f"{name}: 'mask' has {cols.size} entries, k-space has {shape[1]} columns")
        if not np.all(np.isfinite(cols)) or not np.all((cols == 0) | (cols == 1)):
            raise DataError(
                f"{name}: 'mask' must hold only 0 and 1. Received: "
                f"{int(np.sum(~np.isfinite(cols)))} NaN/Inf, values in [{np.nanmin(cols)}, {np.nanmax(cols)}]"
            )
        if cols.sum() == 0:
            raise DataError(f"{name}: 'mask' samples nothing (all zeros)")
        arr = np.repeat(cols[None], shape[0], axis=0)
        return arr, {
            "mask_kind": "file",
            "acceleration": h5.attribute(f.attrs, "acceleration", name, float, 0.0),
            "achieved_acceleration": round(arr.size / max(arr.sum(), 1), 4),
            "mask_seed": -1,
            "mask_sha256": mask_hash(arr),
        }
    m: Mask = make_mask(mask_cfg.kind, mask_cfg.acceleration, shape, mask_cfg.seed, mask_cfg.center_fraction)
    if padding is None or padding == (0, shape[1]):
        return m.array, m.id
    left, right = padding
    arr = m.array.copy()
    arr[:, : max(left, 0)] = 0
    arr[:, max(right, 0) :] = 0
    if not arr.any():
        raise DataError(
            f"{name}: the ISMRMRD header's padding ({left}, {right}) leaves no measured column of "
            f"{shape[1]}; the header does not fit this k-space"
        )
    return arr, {
        **m.id,
        "achieved_acceleration": round(arr.size / max(arr.sum(), 1), 4),
        "mask_sha256": mask_hash(arr),
        "padding": [int(left), int(right)],
    }


class _Model:
    """The model behind ``reconstruct_files``: an export's signatures, or a :class:`Reconstructor` (a run
    or ``pretrained:NAME``) with coil maps estimated as the export estimates them. Attributes:
    ``train_config`` (dict), ``step``, ``version``."""

    def __init__(self, model_dir, ensemble: int = 1):
        from kerasrecon import __version__
        from kerasrecon.api import Reconstructor
        from kerasrecon.pretrained import pretrained_name

        self.model_dir, self.rec, self.loaded = model_dir, None, None
        if pretrained_name(model_dir) is None and (Path(model_dir) / "saved_model.pb").is_file():
            from kerasrecon.export import load_export

            check_ensemble(ensemble, arg("ensemble"), export=f"{arg('model')} {model_dir}")
            self.loaded, meta = load_export(model_dir)
            self.train_config, self.step, self.version = (
                meta["train_config"],
                meta.get("step"),
                meta.get("kerasrecon_version"),
            )
        else:
            from kerasrecon.masks import resolved_center_fraction

            self.rec = Reconstructor.load(model_dir)
            self.rec.set_ensemble(ensemble, arg("ensemble"))
            self.train_config, self.step, self.version = self.rec.config.to_dict(), self.rec.step, __version__
            trained = self.rec.config.mask  # the export's rule: the training mask's centre fraction
            self.center_fraction = resolved_center_fraction(trained.kind, trained.center_fraction)

    def check_multicoil(self, src):
        if self.loaded is not None and "multicoil" not in self.loaded.signatures:
            if self.train_config.get("pnp") is not None:
                raise DataError(
                    f"{src}: multi-coil k-space, but {arg('model')} {self.model_dir} is a plug-and-play export, "
                    "which reconstructs single-coil k-space only"
                )
            raise DataError(
                f"{src}: multi-coil k-space, but {arg('model')} {self.model_dir} has no 'multicoil' "
                "signature (exported before multi-coil serving): export the run again"
            )

    def __call__(self, kspace, mask, name):
        """kspace complex ``[B, H, W]`` or ``[B, C, H, W]``, mask ``[H, W]`` -> magnitude float32 ``[B, H, W]``."""
        multicoil = kspace.ndim == 4
        if self.loaded is not None:
            serve = self.loaded.signatures["multicoil" if multicoil else "serving_default"]
            return run_serving(serve, kspace, mask, name=name)
        if not multicoil:
            return self.rec(kspace, mask, batch_size=max(1, kspace.shape[0]))
        from kerasrecon.coils import acs_lines_ch, acs_maps_np

        acs = int(acs_lines_ch(kspace.shape[-1], self.center_fraction))
        maps = acs_maps_np(kspace * mask, min(acs, kspace.shape[-1]))
        return self.rec(kspace, mask, batch_size=max(1, kspace.shape[0]), maps=maps)


def reconstruct_files(
    model_dir,
    input_path,
    output,
    mask_cfg: MaskConfig | None = None,
    batch_size: int = 8,
    crop=None,
    force: bool = False,
    progress=None,
    mask_changes: dict | None = None,
    grid: str = "trained",
    ensemble: int = 1,
) -> list[Path]:
    """Reconstruct every input file; returns the written paths.

    Args:
        model_dir: an exported SavedModel (``kerasrecon export``), a run directory (``kerasrecon fit``)
            or ``pretrained:NAME``.
        input_path: an ``.h5`` file or a directory of them.
        output: output ``.h5`` (single input) or directory (directory input).
        mask_cfg: mask for files without their own ``mask``; default: the mask the model was trained
            with (kind, R, seed of the export metadata's training config).
        mask_changes: overrides of that mask's fields (``kind``, ``acceleration``, ``seed``), e.g. the
            CLI's explicit ``--mask``/``-R``/``--mask-seed``.
        batch_size: slices per model call.
        crop: (h, w) centre crop of the output; default 320×320 for fastMRI files.
        force: overwrite existing outputs.
        progress: optional callable ``(done_slices, total_slices)``.
        grid: ``trained`` (default): a fully sampled fastMRI file is reconstructed on the 320×320 grid
            the models train on (crop the image, re-transform, draw the mask there), the grid of
            fastMRI's submissions; ``file``: on the file's own k-space grid (640×368), output
            centre-cropped to 320×320. Undersampled files (own ``mask``) always use their own grid.
        ensemble: self-ensemble size (1, 2, 4, 8; a run or pretrained model: :class:`kerasrecon.Reconstructor`).
    """
    if batch_size < 1:
        raise DataError(f"{arg('batch_size')} must be >= 1. Received: {batch_size}")
    if grid not in GRIDS:
        raise DataError(f"{arg('grid')} must be one of {', '.join(GRIDS)}. Received: {grid!r}")
    if crop is not None and min(crop) < 1:
        raise DataError(f"{arg('crop')}: expected H W >= 1. Received: {' '.join(str(c) for c in crop)}")
    files = _inputs(Path(input_path))
    output = Path(output)
    inputs = [(arg("model"), model_dir), (arg("input"), input_path)]
    if Path(input_path).is_dir():
        check_output(output, arg("output"), inputs=inputs, kind="folder")
        targets = [output / (f.stem + ".h5") for f in files]
        check_distinct(zip(files, targets), arg("output"))
    else:
        targets = [output]
    for t in targets:
        check_output(t, arg("output"), inputs=inputs, force=force)
    model = _Model(model_dir, ensemble)
    if mask_cfg is None:
        trained = model.train_config.get("mask", {})
        mask_cfg = MaskConfig(
            **{k: trained[k] for k in ("kind", "acceleration", "seed", "center_fraction") if k in trained}
        )
    if mask_changes:
        mask_cfg = dataclasses.replace(mask_cfg, **mask_changes)
    if model.rec is not None:
        model.rec.note_mask(mask_cfg.kind)
    written = []
    for src, dst in zip(files, targets):
        f = _NpyKspace(src) if src.suffix.lower() == ".npy" else h5.open_file(src, arg("input"))
        with f:
            if not isinstance(f, _NpyKspace):
                h5.dataset(
                    f,
                    "kspace",
                    src,
                    "complex",
                    (3, 4),
                    min_shape=(1, 2, 2),
                    layout="[slices, H, W] or multi-coil [slices, coils, H, W]",
                )
            if f["kspace"].ndim == 4 and f["kspace"].shape[1] < 1:
                raise DataError(f"{src}: 'kspace' has no coils. Received: shape {f['kspace'].shape}")
            if f["kspace"].ndim == 4:
                model.check_multicoil(src)
            raw_shape = f["kspace"].shape[-2:]
            is_fastmri = any(k in f for k in ("reconstruction_esc", "reconstruction_rss", "ismrmrd_header", "mask"))
            # A fully sampled fastMRI file goes on the grid the models are trained on: crop the image to
            # 320×320, re-transform, draw the mask there. Undersampled files keep their own grid and mask.
            retransform = grid == "trained" and is_fastmri and "mask" not in f and min(raw_shape) >= max(CROP)
            shape = CROP if retransform else raw_shape
            # On the file's own grid, the header's zero-padded columns are never "sampled"; the training
            # grid (crop, re-transform) has measured data in every column.
            padding = None if retransform else kspace_padding(f)
            mask, ident = _file_mask(f, shape, mask_cfg, str(src), padding)
            out_crop = crop if retransform else crop or (CROP if is_fastmri and min(shape) >= max(CROP) else None)
            recons = []
            n = f["kspace"].shape[0]
            for i in range(0, n, batch_size):
                try:
                    k = f["kspace"][i : i + batch_size]
                except OSError as exc:
                    raise DataError(f"{src}: slices {i}.. cannot be read (truncated/corrupt?): {exc}") from None
                check_kspace(k, name=f"{src}:kspace")
                if retransform:
                    k = to_training_grid(k)
                img = model(k, mask, name=str(src))
                recons.append(center_crop(img, out_crop) if out_crop else img)
                if progress:
                    progress(min(i + batch_size, n), n)
        # Built in memory, written with plain file I/O (a libhdf5 write error on a full disk leaves a
        # half-closed file behind); atomic_file names --output in the one error line.
        buf = io.BytesIO()
        with h5py.File(buf, "w") as g:
            g.create_dataset("reconstruction", data=np.concatenate(recons).astype(np.float32))
            for k, v in ident.items():
                g.attrs[k] = v
            g.attrs["source"] = str(src)
            g.attrs["model"] = json.dumps(
                {
                    "step": model.step,
                    "loss": model.train_config["loss"]["content"],
                    "ensemble": ensemble,
                    "kerasrecon_version": model.version,
                }
            )
        with atomic_file(dst, "reconstruct", option=arg("output")) as tmp, open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
        written.append(dst)
    return written


def serving_error_message(exc) -> str:
    """The ``assertion failed: [...]`` text of a SavedModel input-contract violation (one line)."""
    for line in str(exc).splitlines():
        if "assertion failed:" in line:
            return line.split("assertion failed:", 1)[1].strip().strip("[]")
    return str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else exc.__class__.__name__


def run_serving(serve, kspace: np.ndarray, mask: np.ndarray, name: str) -> np.ndarray:
    """Call an export's ``serving_default`` on NumPy k-space ``[B, H, W]`` complex and mask ``[H, W]`` or
    ``[B, H, W]``; returns the magnitude ``[B, H, W]`` float32. A contract violation becomes a
    ``DataError`` naming ``name``."""
    import tensorflow as tf

    try:
        res = serve(
            kspace_real=tf.constant(kspace.real, tf.float32),
            kspace_imag=tf.constant(kspace.imag, tf.float32),
            mask=tf.constant(mask, tf.float32),
        )
    except tf.errors.InvalidArgumentError as exc:
        raise DataError(f"{name}: {serving_error_message(exc)}") from None
    return res["image"].numpy()
