"""On-demand reads of prepared volumes: slices come from the HDF5 files when they are needed, so memory
does not grow with the dataset.

:class:`H5Array` stands for one dataset of a prepared file (``kspace`` ``[S, H, W]``, ``coil_kspace`` or
``maps`` ``[S, C, H, W]``), or for a subset of its slices, without reading it. :meth:`H5Array.row` reads
one slice through a cache of decoded slices bounded in bytes; :meth:`H5Array.read` reads the slices it
stands for at once (one volume, for evaluation). In files written by ``kerasrecon data prepare`` every
slice is one raw chunk: its byte offset is looked up once, when the dataset is opened
(:func:`slice_offsets`), and a slice is then one ``pread`` — no HDF5 file is opened per read, which
on a dataset of a thousand files cost more than the training step's input. Other layouts (gzip,
contiguous, complex128) go through HDF5, with open files kept in a small LRU (``MAX_OPEN_FILES``), so
a dataset of thousands of files never holds thousands of descriptors, and each process (or training
worker) opens only the files its slices are in.

What is read is checked as it is read: k-space that is not finite, or beyond complex64's range, is one
``DataError`` naming the file, the dataset and the slice; a file that has become unreadable or changed
since it was opened (removed, rewritten, a corrupt chunk) is one ``DataError`` naming the file.

The slice cache's budget is ``KERASRECON_CACHE_MB`` megabytes (default 256; 0 turns it off).
"""

from __future__ import annotations

import collections
import os
import threading

import numpy as np

from kerasrecon.errors import DataError

MAX_OPEN_FILES = 32
CACHE_ENV = "KERASRECON_CACHE_MB"
DEFAULT_CACHE_MB = 256


def cache_budget() -> int:
    """The slice cache's budget in bytes, from ``KERASRECON_CACHE_MB`` (default 256 MB)."""
    raw = os.environ.get(CACHE_ENV, "")
    if not raw:
        return DEFAULT_CACHE_MB * 2**20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise DataError(f"{CACHE_ENV} must be a number of megabytes >= 0. Received: {raw!r}")
    return int(mb * 2**20)


class _Files:
    """Open ``h5py.File`` handles, least recently used closed first; one lock for every read (HDF5
    serialises reads anyway). A forked child starts with none of its parent's handles."""

    def __init__(self, limit: int = MAX_OPEN_FILES):
        self.limit = limit
        self.lock = threading.RLock()
        self.handles: collections.OrderedDict = collections.OrderedDict()
        self.pid = os.getpid()

    def read(self, path: str, name: str, index):
        import h5py

        with self.lock:
            if self.pid != os.getpid():  # never share a parent's HDF5 handles
                self.handles, self.pid = collections.OrderedDict(), os.getpid()
            f = self.handles.pop(path, None)
            try:
                if f is None:
                    f = h5py.File(path, "r")
                self.handles[path] = f
                while len(self.handles) > self.limit:
                    self.handles.popitem(last=False)[1].close()
                return f[name][index]
            except (OSError, KeyError, ValueError, TypeError) as exc:
                stale = self.handles.pop(path, None)
                if stale is not None:
                    stale.close()
                reason = (str(exc).splitlines() or [exc.__class__.__name__])[0]
                raise DataError(f"{path}: cannot read {name!r} ({reason})") from None

    def close_all(self):
        """Close every open file (tests, and a dataset about to be replaced)."""
        with self.lock:
            while self.handles:
                self.handles.popitem()[1].close()


class SliceCache:
    """Decoded slices, least recently used dropped first once their bytes exceed the budget."""

    def __init__(self, budget: int | None = None):
        self.budget = cache_budget() if budget is None else budget
        self.lock = threading.Lock()
        self.items: collections.OrderedDict = collections.OrderedDict()
        self.nbytes = 0

    def get(self, key):
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key, value: np.ndarray):
        if value.nbytes > self.budget:
            return
        value.setflags(write=False)  # shared between callers: nobody may write into it
        with self.lock:
            if key in self.items:
                return
            self.items[key] = value
            self.nbytes += value.nbytes
            while self.nbytes > self.budget:
                self.nbytes -= self.items.popitem(last=False)[1].nbytes

    def clear(self):
        with self.lock:
            self.items.clear()
            self.nbytes = 0


FILES = _Files()
CACHE = SliceCache()


def reset():
    """Close every open file and empty the slice cache (re-reading ``KERASRECON_CACHE_MB``)."""
    global CACHE
    FILES.close_all()
    CACHE = SliceCache()


RAW_DTYPE = np.dtype("<c8")  # what a slice read by offset must be stored as


def slice_offsets(ds) -> np.ndarray | None:
    """Byte offset of every slice of the ``h5py.Dataset`` ``ds`` in its file, int64 ``[S]``, when each
    slice is one chunk stored raw (no filter, little-endian complex64): the layout ``data prepare``
    writes. ``None`` for any other layout (reads then go through HDF5)."""
    if (
        ds.chunks != (1, *ds.shape[1:])
        or ds.dtype != RAW_DTYPE
        or ds.compression
        or ds.shuffle
        or ds.fletcher32
        or ds.scaleoffset
        or ds.is_virtual
        or ds.external
    ):
        return None
    nbytes = int(np.prod(ds.shape[1:], dtype=np.int64)) * RAW_DTYPE.itemsize
    offsets = np.full(ds.shape[0], -1, np.int64)

    def visit(info):
        if info.size == nbytes and info.filter_mask == 0 and info.byte_offset is not None:
            offsets[info.chunk_offset[0]] = info.byte_offset

    ds.id.chunk_iter(visit)
    return offsets if bool((offsets >= 0).all()) else None


def file_stamp(path) -> tuple:
    """(size, modification time in ns) of ``path``: reads by offset check that the file is unchanged."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _pread(path: str, name: str, offset: int, nbytes: int, stamp: tuple) -> bytes:
    """``nbytes`` of ``path`` at ``offset``, from the file as it was when opened (``stamp``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise DataError(f"{path}: cannot read {name!r} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if (st.st_size, st.st_mtime_ns) != stamp:
            raise DataError(f"{path}: cannot read {name!r} (the file changed since the dataset was opened)")
        data = os.pread(fd, nbytes, int(offset))
    finally:
        os.close(fd)
    if len(data) != nbytes:
        raise DataError(f"{path}: cannot read {name!r} (the file is shorter than its header says)")
    return data


class H5Array:
    """One dataset of a prepared file, or some of its slices (axis 0), read on demand.

    Args:
        path: the HDF5 file.
        name: the dataset (``kspace``, ``coil_kspace`` or ``maps``).
        shape: the dataset's shape (checked by the caller when the file was opened).
        check: check every read for finite values within complex64's range.
        rows: the slices this array stands for (int ``[n]``, default all).
        offsets, stamp: each slice's byte offset (:func:`slice_offsets`) and the file's
            :func:`file_stamp` when opened: slices are then read by offset, without HDF5.

    Slices are returned as complex64 NumPy arrays: ``[H, W]`` (``[C, H, W]``) per slice.
    """

    def __init__(self, path, name: str, shape, check: bool = True, rows=None, offsets=None, stamp=None):
        self.path, self.name, self.check = str(path), name, check
        self.offsets, self.stamp = offsets, stamp
        self.full_shape = tuple(int(s) for s in shape)
        self.rows = None if rows is None else np.asarray(rows, np.int64)
        n = self.full_shape[0] if self.rows is None else len(self.rows)
        self.shape = (n, *self.full_shape[1:])

    dtype = np.dtype(np.complex64)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"H5Array({self.path}:{self.name}, shape={self.shape})"

    def take(self, rows) -> H5Array:
        """The array of slices ``rows`` (a slice, or int indices into this array's slices)."""
        base = np.arange(self.full_shape[0]) if self.rows is None else self.rows
        return H5Array(self.path, self.name, self.full_shape, self.check, base[rows], self.offsets, self.stamp)

    def _file_row(self, i: int) -> int:
        n = self.shape[0]
        if not -n <= i < n:
            raise IndexError(f"slice {i} of {n}")
        i %= n
        return int(i if self.rows is None else self.rows[i])

    def row(self, i: int) -> np.ndarray:
        """Slice ``i`` (of this array's slices), complex64 ``[H, W]`` or ``[C, H, W]``, read-only: from the
        cache, or one read from the file."""
        r = self._file_row(int(i))
        key = (self.path, self.name, r)
        value = CACHE.get(key)
        if value is None:
            value = self._checked(self._read_row(r), f"slice {r}")
            CACHE.put(key, value)
        return value

    def _read_row(self, r: int) -> np.ndarray:
        """Slice ``r`` of the file's dataset: one ``pread`` when its offset is known, else through HDF5."""
        if self.offsets is None:
            return FILES.read(self.path, self.name, r)
        shape = self.full_shape[1:]
        nbytes = int(np.prod(shape, dtype=np.int64)) * RAW_DTYPE.itemsize
        data = _pread(self.path, self.name, self.offsets[r], nbytes, self.stamp)
        return np.frombuffer(data, RAW_DTYPE).reshape(shape)

    def read(self) -> np.ndarray:
        """Every slice this array stands for, complex64 ``self.shape`` (one read, slices in order)."""
        if self.rows is None:
            return self._checked(FILES.read(self.path, self.name, ()), "")
        if len(self.rows) == 0:
            return np.zeros(self.shape, np.complex64)
        order = np.unique(self.rows)  # HDF5 selections must increase
        data = FILES.read(self.path, self.name, order if len(order) > 1 else slice(order[0], order[0] + 1))
        return self._checked(data[np.searchsorted(order, self.rows)], "")

    def __array__(self, dtype=None, copy=None):
        out = self.read()
        return out if dtype is None else out.astype(dtype)

    def _checked(self, data: np.ndarray, where: str) -> np.ndarray:
        from kerasrecon.kspace import check_kspace

        if self.check:
            check_kspace(data, name=f"{self.path}:{self.name}" + (f" {where}" if where else ""))
        return np.asarray(data, np.complex64)


def whole(a):
    """The array ``a`` stands for: an :class:`H5Array` read, a NumPy array (or ``None``) as it is."""
    return a.read() if isinstance(a, H5Array) else a


def row(a, i: int):
    """Slice ``i`` of ``a`` (an :class:`H5Array`, read through the cache, or a NumPy array)."""
    return a.row(i) if isinstance(a, H5Array) else a[i]


def take(a, rows):
    """Slices ``rows`` of ``a`` without reading them (``None`` stays ``None``)."""
    if a is None:
        return None
    return a.take(rows) if isinstance(a, H5Array) else a[rows]
