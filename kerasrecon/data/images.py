"""Import image stacks (``.npy``, ``.h5``, PNG, DICOM) and fastMRI files into a prepared dataset.

Images ``y`` become simulated k-space ``s0 = fft2c(y)``. Magnitude images are scaled so that each
volume's maximum is 1 (the factor is stored as ``scale`` in the manifest and the file's attributes).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np

from kerasrecon.data.fastmri import FastMRIFile, center_crop
from kerasrecon.data.volume import FORMAT, MANIFEST
from kerasrecon.errors import DataError
from kerasrecon.kspace import fft2c_np

log = logging.getLogger(__name__)

H5_IMAGE_KEYS = ("image", "images", "target", "reconstruction_esc", "reconstruction_rss")
IMAGE_SUFFIXES = (".npy", ".h5", ".png", ".dcm")


def read_image_stack(path, dataset: str | None = None) -> np.ndarray:
    """Read one volume of images.

    Args:
        path: a ``.npy`` / ``.h5`` / ``.png`` / ``.dcm`` file, or a directory of PNG or DICOM slices
            (sorted by name, or by DICOM InstanceNumber).
        dataset: the HDF5 dataset name (default: the first of ``H5_IMAGE_KEYS`` present).

    Returns:
        ``[S, H, W]`` float32 (magnitude) or complex64.
    """
    path = Path(path)
    if path.is_dir():
        pngs = sorted(path.glob("*.png"))
        dcms = sorted(path.glob("*.dcm"))
        if pngs:
            return np.stack([_read_png(p) for p in pngs])
        if dcms:
            return _read_dicom_series(dcms)
        raise DataError(f"{path}: directory holds no .png or .dcm slices")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: cannot read .npy ({exc})") from None
    elif suffix == ".h5":
        arr = _read_h5_images(path, dataset)
    elif suffix == ".png":
        arr = _read_png(path)
    elif suffix == ".dcm":
        arr = _read_dicom_series([path])
    else:
        raise DataError(f"{path}: unsupported file type; expected one of {IMAGE_SUFFIXES} or a directory")
    return _as_stack(arr, path)


def _as_stack(arr: np.ndarray, path) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape[1:]) < 8:
        raise DataError(f"{path}: expected images [S, H, W] or [H, W] with H, W >= 8. Received: shape={arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: images contain NaN/Inf")
    return arr.astype(np.complex64 if np.iscomplexobj(arr) else np.float32)


def _read_h5_images(path, dataset):
    try:
        with h5py.File(path, "r") as f:
            keys = [dataset] if dataset else [k for k in H5_IMAGE_KEYS if k in f]
            if not keys or keys[0] not in f:
                raise DataError(f"{path}: no image dataset (looked for {dataset or H5_IMAGE_KEYS}); "
                                f"found {sorted(f.keys())}; pass --dataset NAME")
            return f[keys[0]][()]
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None


def _read_png(path):
    from skimage import io

    img = io.imread(path)
    if img.ndim == 3:  # RGB(A) -> luminance of the first three channels
        img = img[..., :3].mean(axis=-1)
    return img.astype(np.float32)


def _read_dicom_series(files):
    try:
        import pydicom
    except ImportError:
        raise DataError("reading DICOM needs pydicom: pip install 'kerasrecon[dicom]'") from None
    dss = [pydicom.dcmread(str(f)) for f in files]
    dss.sort(key=lambda d: int(getattr(d, "InstanceNumber", 0)))
    slices = []
    for ds in dss:
        px = ds.pixel_array.astype(np.float32)
        slope, intercept = float(getattr(ds, "RescaleSlope", 1)), float(getattr(ds, "RescaleIntercept", 0))
        slices.append(px * slope + intercept)
    return np.stack(slices)


def is_fastmri(path: Path) -> bool:
    """True for an ``.h5`` file with a complex ``kspace`` dataset."""
    if path.suffix.lower() != ".h5":
        return False
    try:
        with h5py.File(path, "r") as f:
            return "kspace" in f and np.issubdtype(f["kspace"].dtype, np.complexfloating)
    except OSError:
        return False


def _sources(src: Path):
    if not src.exists():
        raise DataError(f"SRC {src}: does not exist")
    if src.is_file():
        return [src]
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in (".npy", ".h5"))
    subdirs = sorted(p for p in src.iterdir() if p.is_dir() and (any(p.glob("*.png")) or any(p.glob("*.dcm"))))
    loose = sorted(src.glob("*.png")) or sorted(src.glob("*.dcm"))
    found = files + subdirs + ([src] if loose else [])
    if not found:
        raise DataError(f"SRC {src}: no .npy/.h5 files or PNG/DICOM slice folders found (empty directory?)")
    return found


def prepare_dataset(src, out, dataset: str | None = None, crop=None) -> dict:
    """Convert image stacks or fastMRI files into a prepared dataset directory.

    Args:
        src: a file or a directory of ``.npy``/``.h5`` files and PNG/DICOM folders (one volume each).
        out: output directory; must not exist or be empty (nothing is overwritten).
        dataset: HDF5 image dataset name for non-fastMRI ``.h5`` files.
        crop: optional (h, w) centre crop applied to every image (fastMRI default 320×320).

    Returns:
        the manifest dict (also written to ``out/manifest.json``).
    """
    src, out = Path(src), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"OUT {out}: exists and is not an empty directory; choose a new path")
    sources = _sources(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out.parent))
    try:
        volumes = [_prepare_one(p, tmp, dataset, crop) for p in sources]
        manifest = {"format": FORMAT, "version": 1, "source": str(src),
                    "kspace_convention": "centred orthonormal fft2c over the last two axes",
                    "volumes": volumes}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _prepare_one(path: Path, tmp: Path, dataset, crop):
    name = path.stem if path.is_file() else path.name
    if is_fastmri(path):
        with FastMRIFile(path, crop=crop or (320, 320)) as f:
            kspace = np.stack(list(f.iter_kspace()))
        scale, kind = 1.0, "fastmri-singlecoil"
    else:
        images = read_image_stack(path, dataset)
        if crop:
            images = center_crop(images, crop)
        peak = float(np.abs(images).max())
        if peak <= 0:
            raise DataError(f"{path}: all images are zero")
        scale = 1.0 / peak
        kspace = fft2c_np((images * scale).astype(np.complex64))
        kind = "complex-images" if np.iscomplexobj(images) else "magnitude-images"
    target = tmp / f"{name}.h5"
    if target.exists():
        raise DataError(f"{path}: two sources map to the same volume name {name!r}")
    with h5py.File(target, "w") as f:
        f.create_dataset("kspace", data=kspace.astype(np.complex64), compression="gzip", compression_opts=4)
        f.attrs["source"] = str(path)
        f.attrs["scale"] = scale
    log.info("prepared %s -> %s %s", path, target.name, kspace.shape)
    return {"file": target.name, "source": str(path), "kind": kind, "shape": list(kspace.shape), "scale": scale}
