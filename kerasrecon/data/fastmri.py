"""fastMRI reader (single- and multi-coil), one slice at a time.

A fastMRI single-coil file holds ``kspace`` complex64 ``[S, 640, 368]`` (readout × phase encode,
2× readout oversampling, centred) and ``reconstruction_esc`` float32 ``[S, 320, 320]``, the magnitude
of the centre 320×320 crop of ``ifft2c(kspace)``. kerasrecon trains and applies data consistency on
that 320×320 image grid: ``target = crop(ifft2c(kspace), 320×320)`` and the k-space used for
masking/DC is ``fft2c(target)`` (crop, then re-transform). This discards the readout oversampling,
exactly as fastMRI's own single-coil baselines do; the mask is then drawn on the 320×320 grid.

A multi-coil file holds ``kspace`` complex64 ``[S, C, 640, 368]`` and ``reconstruction_rss``
float32 ``[S, 320, 320]`` (the root-sum-of-squares of the cropped coil images). The same grid is
used coil by coil: ``coil images = crop(ifft2c(kspace_c))``, k-space ``fft2c`` of those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasrecon.data import h5
from kerasrecon.errors import DataError, arg
from kerasrecon.kspace import check_kspace, fft2c_np, ifft2c_np

CROP = (320, 320)


# fastMRI's header attributes and their types (kerasrecon.data.h5.attribute checks them).
ATTR_TYPES = {"acquisition": str, "max": float, "norm": float, "patient_id": str}


def to_training_grid(kspace: np.ndarray, crop=CROP) -> np.ndarray:
    """Raw fastMRI k-space ``[..., H, W]`` (any leading slice/coil axes) on the training grid: the
    image cropped to ``crop`` and transformed back. Returns complex64 ``[..., crop_h, crop_w]``."""
    return fft2c_np(center_crop(ifft2c_np(kspace), crop)).astype(np.complex64)


def center_crop(x: np.ndarray, shape) -> np.ndarray:
    """Centre crop of the last two axes of ``x`` ``[..., H, W]`` to ``shape`` (h, w)."""
    h, w = x.shape[-2:]
    ch, cw = shape
    if ch > h or cw > w:
        raise DataError(f"crop {tuple(shape)} is larger than the image {(h, w)}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top : top + ch, left : left + cw]


class FastMRIFile:
    """Streams slices of a fastMRI ``.h5`` file, single-coil or multi-coil (``multicoil``, ``coils``).

    Args:
        path: the file.
        crop: (h, w) image grid for training/DC; ``None`` (default): the grid of the file's own
            ``reconstruction_esc``/``reconstruction_rss`` (fastMRI's convention, 320×320 for its knee
            files), else (320, 320).

    Use as a context manager or call ``close()``.
    """

    def __init__(self, path, crop=None):
        self.path = Path(path)
        self._f = h5.open_file(self.path)
        try:
            shape = h5.dataset(
                self._f,
                "kspace",
                self.path,
                "complex",
                (3, 4),
                min_shape=(1, 2, 2),
                layout="[slices, H, W] (single-coil) or [slices, coils, H, W] (multi-coil)",
            ).shape
            if len(shape) == 4 and shape[1] < 1:
                raise DataError(f"{self.path}: 'kspace' has no coils. Received: shape={shape}")
            grids = [
                tuple(ds.shape[-2:])
                for key in ("reconstruction_esc", "reconstruction_rss")
                if (ds := h5.dataset(self._f, key, self.path, "real", (3,), required=False, layout="[slices, H, W]"))
                is not None
            ]
            self.crop = tuple(crop) if crop is not None else grids[0] if grids else CROP
            self._grid = tuple(shape[-2:])
            self.attrs = dict(self._f.attrs)
            self._metadata = {
                key: h5.attribute(self.attrs, key, self.path, kind)
                for key, kind in ATTR_TYPES.items()
                if key in self.attrs
            }
        except BaseException:
            self._f.close()
            raise
        self.coils = shape[1] if len(shape) == 4 else 1
        self.multicoil = len(shape) == 4
        # fastMRI's test and challenge files are undersampled: they carry the sampling pattern as a
        # ``mask`` dataset (and no reconstruction). They are inputs to `reconstruct`, never ground truth.
        self.undersampled = "mask" in self._f

    def metadata(self) -> dict:
        """The file's fastMRI header attributes that travel with a prepared volume: ``acquisition``
        (e.g. ``CORPD_FBK``), ``max``, ``norm``, ``patient_id`` — those present, as plain Python values."""
        return dict(self._metadata)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the HDF5 file."""
        self._f.close()

    def __len__(self):
        return self._f["kspace"].shape[0]

    def raw_kspace(self, i: int) -> np.ndarray:
        """Raw k-space of slice ``i``: complex64 ``[640, 368]``, multi-coil ``[C, 640, 368]`` (file grid)."""
        try:
            k = self._f["kspace"][i]
        except OSError as exc:
            raise DataError(f"{self.path}: slice {i} cannot be read (truncated/corrupt?): {exc}") from None
        check_kspace(k, name=f"{self.path}:kspace[{i}]")
        return k.astype(np.complex64)

    def _check_grid(self):
        """``DataError`` naming ``crop`` when the image grid is larger than the file's images (checked when
        images are read: the header and attributes can be read whatever the grid)."""
        (h, w), (gh, gw) = self.crop, self._grid
        if h > gh or w > gw:
            raise DataError(
                f"{self.path}: the image grid {h}×{w} is larger than the file's images {gh}×{gw}; "
                f"pass {arg('crop')} H W with H <= {gh}, W <= {gw}"
            )

    def image(self, i: int) -> np.ndarray:
        """Complex image of slice ``i`` on the training grid: complex64 ``[320, 320]`` (the target),
        multi-coil: the coil images ``[C, 320, 320]``."""
        self._check_grid()
        return center_crop(ifft2c_np(self.raw_kspace(i)), self.crop)

    def kspace(self, i: int) -> np.ndarray:
        """k-space of slice ``i`` on the training grid (crop, then re-transform): complex64 ``[320, 320]``,
        multi-coil ``[C, 320, 320]``."""
        self._check_grid()
        return to_training_grid(self.raw_kspace(i), self.crop)

    def reconstruction_esc(self, i: int):
        """The file's ``reconstruction_esc[i]`` float32 ``[320, 320]``, or ``None`` if absent (test files)."""
        return self._f["reconstruction_esc"][i] if "reconstruction_esc" in self._f else None

    def reconstruction_rss(self, i: int):
        """The file's ``reconstruction_rss[i]`` float32 ``[320, 320]`` (multi-coil), or ``None`` if absent."""
        return self._f["reconstruction_rss"][i] if "reconstruction_rss" in self._f else None

    def iter_kspace(self):
        """Yield the training-grid k-space of each slice, one at a time."""
        for i in range(len(self)):
            yield self.kspace(i)
