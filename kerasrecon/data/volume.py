"""The ``Volume`` record, the prepared-dataset format and loading by name (``demo`` or a directory).

Prepared dataset directory (written by ``kerasrecon data prepare``)::

    DIR/manifest.json   {"format": "kerasrecon-dataset", "version": 1, "volumes": [...]}
    DIR/<name>.h5       dataset "kspace" complex64 [S, H, W] (centred orthonormal, see kspace.py),
                        attrs: source, scale (image intensities were multiplied by it);
                        multi-coil volumes also "coil_kspace" and "maps" complex64 [S, C, H, W]
                        ("kspace" is then that of the SENSE-combined image), attrs coils, coil_maps;
                        every dataset is stored uncompressed in one chunk per slice, so one slice is
                        one read (:func:`write_prepared_volume`)

Opening a dataset reads the manifest and each file's header, never the data: a :class:`Volume` of a
prepared dataset reads its slices from the file when they are used (:mod:`kerasrecon.data.store`),
so training, evaluation and the baselines' λ sweep run in memory that does not grow with the dataset.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasrecon.coils import rss_np
from kerasrecon.config import TARGETS  # what multi-coil results are scored against (Volume.target)
from kerasrecon.data import h5, store
from kerasrecon.errors import DataError, arg
from kerasrecon.kspace import coil_mask, ifft2c_np, measure_np, per_slice

MANIFEST = "manifest.json"
FORMAT = "kerasrecon-dataset"


class Volume:
    """One volume of fully sampled k-space.

    Attributes:
        name: identifier used in result rows.
        kspace: complex64 ``[S, H, W]``.
        source: where it came from (file path or ``demo``).
        acquisition: fastMRI's acquisition (``CORPD_FBK``, ``CORPDFS_FBK``...), ``""`` when unknown.
        coil_kspace, maps: multi-coil volumes: complex64 ``[S, C, H, W]`` (``None`` for single-coil).

    The arrays are NumPy arrays, or — for volumes of a prepared dataset — :class:`~kerasrecon.data.store.H5Array`
    stand-ins that read the file on demand: ``kspace``, ``coil_kspace`` and ``maps`` then read the whole
    volume each time they are used (nothing is kept), :meth:`kspace_at` and friends read one slice
    through a bounded cache, and :attr:`shape`, :meth:`slices` and ``len`` read nothing. A dataset of
    any size is opened in constant memory.
    """

    def __init__(self, name: str, kspace, source: str = "", acquisition: str = "", coil_kspace=None, maps=None):
        self.name, self.source, self.acquisition = name, source, acquisition
        self._kspace, self._coil_kspace, self._maps = kspace, coil_kspace, maps

    def __repr__(self) -> str:
        return f"Volume({self.name!r}, shape={self.shape}, coils={self.coils}, source={self.source!r})"

    @property
    def kspace(self) -> np.ndarray:
        """Fully sampled k-space complex64 ``[S, H, W]`` (read from the file when the volume is on disk)."""
        return store.whole(self._kspace)

    @property
    def coil_kspace(self) -> np.ndarray | None:
        """Coil k-space complex64 ``[S, C, H, W]``, or ``None`` for single-coil volumes."""
        return store.whole(self._coil_kspace)

    @property
    def maps(self) -> np.ndarray | None:
        """Coil sensitivities complex64 ``[S, C, H, W]``, or ``None`` for single-coil volumes."""
        return store.whole(self._maps)

    def kspace_at(self, i: int) -> np.ndarray:
        """Slice ``i``'s k-space complex64 ``[H, W]`` (read-only; one read, or the cache)."""
        return store.row(self._kspace, i)

    def coil_kspace_at(self, i: int) -> np.ndarray:
        """Slice ``i``'s coil k-space complex64 ``[C, H, W]`` (multi-coil volumes; read-only)."""
        return store.row(self._coil_kspace, i)

    def maps_at(self, i: int) -> np.ndarray:
        """Slice ``i``'s coil maps complex64 ``[C, H, W]`` (multi-coil volumes; read-only)."""
        return store.row(self._maps, i)

    def __len__(self) -> int:
        return self.shape[0]

    def loaded(self) -> Volume:
        """This volume with its arrays read into memory (each field read once; the same volume when it is
        in memory already): for whole-volume work such as evaluation."""
        return Volume(self.name, self.kspace, self.source, self.acquisition, self.coil_kspace, self.maps)

    @property
    def multicoil(self) -> bool:
        """True when the volume carries coil k-space and sensitivity maps (``coil_kspace``, ``maps``:
        complex64 ``[S, C, H, W]``); ``kspace`` is then that of the SENSE-combined image."""
        return self._coil_kspace is not None

    @property
    def coils(self) -> int:
        """Number of coils (1 for single-coil volumes)."""
        return self._coil_kspace.shape[1] if self.multicoil else 1

    @property
    def images(self) -> np.ndarray:
        """Fully sampled complex images ``[S, H, W]`` complex64 (the targets; multi-coil: SENSE-combined)."""
        return ifft2c_np(self.kspace)

    def target(self, kind: str = "sense") -> np.ndarray:
        """Fully sampled magnitude float32 ``[S, H, W]`` to score against: ``sense`` — of the (SENSE-combined)
        image; ``rss`` — the root-sum-of-squares of the coil images, fastMRI's multi-coil target (for a
        single-coil volume both are ``|image|``)."""
        if kind not in TARGETS:
            raise DataError(f"{arg('target')} must be one of {', '.join(TARGETS)}. Received: {kind!r}")
        if kind == "rss" and self.multicoil:
            return rss_np(ifft2c_np(self.coil_kspace))
        return np.abs(self.images).astype(np.float32)

    def measured(self, mask: np.ndarray, scale=None):
        """What a scanner with this sampling ``mask`` (``[H, W]`` or ``[S, H, W]``) measures, scaled per
        slice by ``scale`` (float ``[S]``, default 1): masked k-space complex64 ``[S, H, W]``, or
        ``[S, C, H, W]`` for multi-coil volumes."""
        k = self._scaled_kspace(scale)
        m = np.asarray(mask, np.float32)
        return (k * (coil_mask(m) if self.multicoil else m)).astype(np.complex64)

    def _scaled_kspace(self, scale):
        """This volume's (coil) k-space, scaled per slice by ``scale`` (float ``[S]``, or ``None``)."""
        k = self.coil_kspace if self.multicoil else self.kspace
        return k if scale is None else k * per_slice(scale, k.ndim)

    def zero_filled(self, mask: np.ndarray, scale=None) -> np.ndarray:
        """The zero-filled image under ``mask``: ``Fᴴ(M ⊙ k)``, multi-coil the SENSE combination
        ``Σ_c conj(S_c) Fᴴ(M ⊙ y_c)``. complex64 ``[S, H, W]`` (scaled like :meth:`measured`)."""
        k, m = self._scaled_kspace(scale), np.asarray(mask, np.float32)
        return measure_np(k, m, self.maps if self.multicoil else None)[1].astype(np.complex64)

    def slices(self, rows, name: str | None = None) -> Volume:
        """The volume restricted to slices ``rows`` (a slice or index array), every field kept; nothing
        is read."""
        return Volume(
            name or self.name,
            store.take(self._kspace, rows),
            self.source,
            self.acquisition,
            store.take(self._coil_kspace, rows),
            store.take(self._maps, rows),
        )

    @property
    def shape(self):
        """(S, H, W), known without reading the data."""
        return tuple(self._kspace.shape)


def write_prepared_volume(target: Path, arrays: dict, attrs: dict) -> None:
    """Write one ``<name>.h5`` of a prepared dataset.

    Args:
        target: the file to write (created; the caller checks that it does not exist).
        arrays: ``{"kspace": [S, H, W]}``, multi-coil also ``"coil_kspace"`` and ``"maps"`` ``[S, C, H, W]``;
            stored as complex64, one chunk per slice, uncompressed: training reads one slice at a time,
            and gzip saved 7 % of the bytes of real multi-coil k-space while reading 34× slower
            (161 MB/s against 5.5 GB/s on 2 CPU cores).
        attrs: the file's attributes (``source``, ``scale``; fastMRI's ``acquisition`` ...).
    """
    import io

    import h5py

    # The file is built in memory and written with plain file I/O: a write error (full disk) inside
    # libhdf5 leaves a half-closed file that crashes the interpreter at exit.
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for key, value in arrays.items():
            value = np.asarray(value, np.complex64)
            f.create_dataset(key, data=value, chunks=(1, *value.shape[1:]))
        for key, value in attrs.items():
            f.attrs[key] = value
    with open(target, "wb") as fh:
        fh.write(buf.getbuffer())


def read_prepared_volume(path: Path) -> Volume:
    """Open one ``<name>.h5`` of a prepared dataset: its header and the datasets' shapes and dtypes are
    checked now, the data are read slice by slice when used (:mod:`kerasrecon.data.store`). Raises
    ``DataError`` naming the file."""
    try:
        with h5.open_file(path) as f:
            kspace = h5.dataset(f, "kspace", path, "complex", (3,), min_shape=(1, 2, 2), layout="[S, H, W]").shape
            source = h5.attribute(f.attrs, "source", path, str, str(path))
            acquisition = h5.attribute(f.attrs, "acquisition", path, str, "")
            coil_kspace, maps = (
                h5.dataset(
                    f, name, path, "complex", (4,), required=False, min_shape=(1, 1, 2, 2), layout="[S, C, H, W]"
                )
                for name in ("coil_kspace", "maps")
            )
            coil_kspace, maps = (None if d is None else d.shape for d in (coil_kspace, maps))
            offsets = {name: store.slice_offsets(f[name]) for name in ("kspace", "coil_kspace", "maps") if name in f}
        stamp = store.file_stamp(path)
    except (OSError, KeyError) as exc:
        raise DataError(f"{path}: cannot read HDF5 file ({exc.__class__.__name__}: {exc})") from None
    if (coil_kspace is None) != (maps is None) or (
        coil_kspace is not None and (coil_kspace != maps or (coil_kspace[0], *coil_kspace[2:]) != kspace)
    ):
        raise DataError(
            f"{path}: 'coil_kspace' and 'maps' must both be [S, C, H, W] with the S, H, W of "
            f"'kspace' {kspace}. Received: {[coil_kspace, maps]}"
        )

    def array(name, shape):
        return None if shape is None else store.H5Array(path, name, shape, offsets=offsets[name], stamp=stamp)

    return Volume(
        path.stem, array("kspace", kspace), source, acquisition, array("coil_kspace", coil_kspace), array("maps", maps)
    )


def load_prepared(data: str, option: str = "--data") -> list[Volume]:
    """Load a prepared dataset directory (``kerasrecon data prepare``'s output).

    Args:
        data: a directory holding ``manifest.json`` and ``*.h5`` (``demo`` is dispatched by
            :func:`kerasrecon.data.load_volumes`).
        option: how error messages name ``data`` (``--data``, ``--extra-data``).

    Returns:
        list of :class:`Volume`, in manifest order; each ``kspace`` ``[S, H, W]`` complex64, read from
        the files on demand (opening a dataset reads only headers).
    """
    return [read_prepared_volume(path) for path in dataset_files(data, option)]


def dataset_files(data: str, option: str = "--data") -> list[Path]:
    """The volume files of the prepared dataset directory ``data`` (manifest order), checked as
    :func:`read_manifest` checks them; ``DataError`` naming ``option`` when it is not such a directory."""
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"{option} {data}: not a directory (expected 'demo' or a dir from 'kerasrecon data prepare')")
    manifest = root / MANIFEST
    if not manifest.is_file():
        files = sorted(root.glob("*.h5"))
        if not files:
            raise DataError(f"{option} {data}: empty (no {MANIFEST} and no .h5 files)")
        raise DataError(f"{option} {data}: no {MANIFEST}; run 'kerasrecon data prepare {data} OUT' first")
    return read_manifest(root)


@dataclass(frozen=True)
class ManifestEntry:
    """One volume of ``manifest.json`` (other keys, such as ``kind`` or fastMRI attributes, are kept in
    the file but not needed to read it)."""

    file: str


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of a prepared dataset: the fields a reader relies on."""

    format: str
    volumes: list[ManifestEntry]
    version: int = 1


def read_manifest(root) -> list[Path]:
    """The volume files named by ``root/manifest.json``, structure checked (:mod:`kerasrecon.schema`).

    Every entry must name a file directly inside ``root`` (no folders, no ``..``, no absolute path, no
    link leading out): a manifest cannot make kerasrecon read files outside its dataset.

    Raises:
        DataError: naming the manifest and the offending entry.
    """
    from kerasrecon.schema import from_dict, read_json

    root = Path(root)
    manifest = root / MANIFEST
    meta = from_dict(Manifest, read_json(manifest, "a kerasrecon dataset manifest"), str(manifest), extra="ignore")
    if meta.format != FORMAT or not meta.volumes:
        raise DataError(f"{manifest}: expected format {FORMAT!r} with at least one volume")
    real_root = Path(os.path.realpath(root))
    paths = []
    for i, entry in enumerate(meta.volumes):
        name = entry.file
        path = root / name
        if (
            not name
            or Path(name).name != name
            or name in (".", "..")
            or Path(os.path.realpath(path)).parent != real_root
        ):
            raise DataError(
                f"{manifest}: volumes[{i}].file {name!r} must name a file inside {root} "
                "(a plain file name; no folders, '..' or links leading out)"
            )
        paths.append(path)
    return paths


def filter_acquisition(volumes: list[Volume], acquisition: str | None, option: str | None = None) -> list[Volume]:
    """The volumes whose fastMRI ``acquisition`` equals ``acquisition`` (all when ``None``), as
    fastMRI's evaluation does. Raises ``DataError`` naming ``option`` (default: the ``acquisition``
    argument) and what the data holds when none matches."""
    option = option or arg("acquisition")
    if not acquisition:
        return volumes
    kept = [v for v in volumes if v.acquisition == acquisition]
    if not kept:
        found = sorted({v.acquisition or "(none)" for v in volumes})
        raise DataError(f"{option} {acquisition}: no volume has it; the data holds {', '.join(found)}")
    return kept


def split_volumes(volumes: list[Volume], val_fraction: float):
    """Hold out data for validation/evaluation.

    With several volumes the last ``ceil(val_fraction · n)`` volumes are held out; with one volume the
    last ``ceil(val_fraction · S)`` slices are (a contiguous block, so neighbours do not leak).

    Returns:
        (train, val): two lists of :class:`Volume` (val empty when ``val_fraction == 0``). With several
        volumes the rule uses only their number, so it splits any list (the held-out files of a
        dataset are chosen before they are opened).
    """
    if not volumes:
        raise DataError("no volumes to split (empty dataset)")
    if val_fraction <= 0:
        return list(volumes), []
    if len(volumes) > 1:
        n_val = min(max(math.ceil(val_fraction * len(volumes)), 1), len(volumes) - 1)
        return list(volumes[:-n_val]), list(volumes[-n_val:])
    vol = volumes[0]
    s = len(vol)
    n_val = math.ceil(val_fraction * s)
    if n_val >= s:
        raise DataError(f"volume {vol.name} has {s} slices: too few to hold out {val_fraction:.0%}")
    return [vol.slices(slice(0, s - n_val))], [vol.slices(slice(s - n_val, s), vol.name + "_val")]
