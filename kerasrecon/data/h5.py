"""Checked access to HDF5 files: one helper for every dataset and attribute kerasrecon reads.

A reader names what it expects (``kind``: complex, real or numeric; the allowed ranks; a minimum
shape) and :func:`dataset` checks the object before a byte of data is read: a group, a string, a
scalar, an empty dataspace or the wrong rank/dtype is one ``DataError`` line naming the file, the
dataset and what was expected. :func:`attribute` does the same for header attributes (fastMRI's
``acquisition`` must be text, ``acceleration`` a number).
"""

from __future__ import annotations

import math

import h5py
import numpy as np

from kerasrecon.errors import DataError

KINDS = {
    "complex": (lambda dt: np.issubdtype(dt, np.complexfloating), "complex"),
    "real": (lambda dt: np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer), "real (integer or float)"),
    "numeric": (lambda dt: np.issubdtype(dt, np.number) and not np.issubdtype(dt, np.timedelta64), "numeric"),
    "mask": (
        lambda dt: dt == np.bool_ or np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer),
        "boolean or real",
    ),
}


def open_file(path, option: str = ""):
    """``h5py.File(path, "r")``; ``DataError`` naming the file when it is not a readable HDF5 file."""
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        lead = f"{option} " if option else ""
        raise DataError(
            f"{lead}{path}: not a readable HDF5 file "
            f"({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})"
        ) from None


def dataset(
    f, name: str, where, kind: str = "numeric", ndim=(3,), required: bool = True, min_shape=None, layout: str = ""
):
    """The ``h5py.Dataset`` ``f[name]``, checked before it is read.

    Args:
        f: an open ``h5py.File`` (or group).
        name: the dataset's name.
        where: how messages name the file.
        kind: ``complex`` | ``real`` | ``numeric`` (complex or real).
        ndim: the allowed ranks.
        required: ``False``: return ``None`` when ``name`` is absent.
        min_shape: per-axis minimum sizes of the last axes (``(1, 2, 2)``: >= 1 slice, H, W >= 2).
        layout: for messages, the expected layout (``[slices, H, W]``).

    Raises:
        DataError: absent (when required), not a dataset (a group), not ``kind``, a scalar or empty
            dataspace, a rank not in ``ndim``, an axis of size 0, or an axis below ``min_shape``.
    """
    check, label = KINDS[kind]
    ranks = " or ".join(f"{n}-D" for n in ndim)
    expected = f"{label} {layout or ranks}"
    if name not in f:
        if not required:
            return None
        raise DataError(f"{where}: missing dataset {name!r} (expected {expected})")
    obj = f.get(name, getclass=True)
    if obj is not h5py.Dataset:
        raise DataError(
            f"{where}: {name!r} is a {'group' if obj is h5py.Group else 'link or other object'}, "
            f"not a dataset (expected {expected})"
        )
    ds = f[name]
    if ds.shape is None or not check(ds.dtype):
        what = "an empty dataspace" if ds.shape is None else f"dtype {ds.dtype}"
        raise DataError(f"{where}: {name!r} must be {expected}. Received: {what}")
    if len(ds.shape) not in ndim:
        raise DataError(f"{where}: {name!r} must be {expected}. Received: shape {ds.shape}")
    if 0 in ds.shape:
        raise DataError(f"{where}: {name!r} must be {expected}. Received: shape {ds.shape} (an empty axis)")
    if min_shape is not None and any(s < m for s, m in zip(ds.shape[-len(min_shape) :], min_shape)):
        raise DataError(
            f"{where}: {name!r} must be {expected} with sizes >= {tuple(min_shape)} on the last "
            f"axes. Received: shape {ds.shape}"
        )
    return ds


def attribute(attrs, key: str, where, kind: type = str, default=None):
    """Header attribute ``key`` as a plain Python value of ``kind`` (``str``: bytes decoded; ``float``:
    a finite number), or ``default`` when absent. ``DataError`` naming the file and attribute otherwise."""
    if key not in attrs:
        return default
    try:
        value = attrs[key]
    except (OSError, TypeError, ValueError) as exc:
        raise DataError(f"{where}: attribute {key!r} cannot be read ({exc.__class__.__name__})") from None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    value = value.decode(errors="replace") if isinstance(value, (bytes, np.bytes_)) else value
    value = value.item() if isinstance(value, np.generic) else value
    if kind is str and isinstance(value, str):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    expected = "text" if kind is str else "a finite number"
    raise DataError(f"{where}: attribute {key!r} must be {expected}. Received: {str(value)[:40]!r}")
