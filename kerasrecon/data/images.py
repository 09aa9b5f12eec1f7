"""Import image stacks (``.npy``, ``.h5``, PNG, DICOM) and fastMRI files into a prepared dataset.

Images ``y`` become simulated k-space ``s0 = fft2c(y)``. Magnitude images are scaled so that each
volume's maximum is 1 (the factor is stored as ``scale`` in the manifest and the file's attributes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np

from kerasrecon.data.fastmri import FastMRIFile, center_crop
from kerasrecon.data.volume import FORMAT, MANIFEST, write_prepared_volume
from kerasrecon.errors import DataError, arg
from kerasrecon.io import atomic_dir, check_output
from kerasrecon.kspace import fft2c_np, ifft2c_np

log = logging.getLogger(__name__)

H5_IMAGE_KEYS = ("image", "images", "target", "reconstruction_esc", "reconstruction_rss")
IMAGE_SUFFIXES = (".npy", ".npz", ".h5", ".png", ".dcm")


def read_image_stack(path, dataset: str | None = None) -> np.ndarray:
    """Read one volume of images.

    Args:
        path: a ``.npy`` / ``.npz`` / ``.h5`` / ``.png`` / ``.dcm`` file, or a directory of PNG or
            DICOM slices (sorted by name, or by DICOM InstanceNumber).
        dataset: the HDF5 dataset or ``.npz`` array name (default: the first of ``H5_IMAGE_KEYS``
            present; an ``.npz`` holding a single array uses it).

    Returns:
        ``[S, H, W]`` float64 (magnitude) or complex128, finite (float64 keeps any finite source value;
        ``data prepare`` scales to a peak of 1 before the complex64 cast).
    """
    path = Path(path)
    if path.is_dir():
        pngs = sorted(path.glob("*.png"))
        dcms = sorted(path.glob("*.dcm"))
        if pngs:
            images = [_read_png(p) for p in pngs]
            shapes = sorted({im.shape for im in images})
            if len(shapes) > 1:
                raise DataError(f"{path}: PNG slices of one volume must have one size. Received sizes {shapes}")
            return _as_stack(np.stack(images), path)
        if dcms:
            return _as_stack(_read_dicom_series(dcms), path)
        raise DataError(f"{path}: directory holds no .png or .dcm slices")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = read_npy(path)
    elif suffix == ".npz":
        arr = _read_npz_images(path, dataset)
    elif suffix == ".h5":
        arr = _read_h5_images(path, dataset)
    elif suffix == ".png":
        arr = _read_png(path)
    elif suffix == ".dcm":
        arr = _read_dicom_series([path])
    else:
        raise DataError(f"{path}: unsupported file type; expected one of {IMAGE_SUFFIXES} or a directory")
    return _as_stack(arr, path)


MAX_ARRAY_BYTES = 16 << 30  # 16 GiB: larger than any MR volume these commands read whole


def check_volume_size(shape, dtype, where: str, max_bytes: int = MAX_ARRAY_BYTES) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` as a file declares it, before anything is allocated;
    ``DataError`` naming ``where`` beyond ``max_bytes``."""
    nbytes = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    if nbytes > max_bytes:
        raise DataError(
            f"{where}: declares shape {tuple(shape)} {dtype} ({nbytes / 2**30:.3g} GiB); more than the "
            f"{max_bytes / 2**30:.0f} GiB limit for one volume"
        )
    return nbytes


def read_npy(path, max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
    """Load a ``.npy`` file without pickles, checking the size its header claims *before* allocating
    (a damaged or hostile header cannot ask for terabytes). ``DataError`` naming the file otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            fmt = np.lib.format
            version = fmt.read_magic(fh)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(fh)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:  # EOFError: an empty file
        raise DataError(
            f"{path}: cannot read .npy ({str(exc).splitlines()[0] if str(exc) else 'empty file'})"
        ) from None
    if dtype.hasobject:
        raise DataError(f"{path}: .npy holds Python objects (dtype {dtype}); expected a numeric array")
    nbytes = check_volume_size(shape, dtype, f"{path}: the header", max_bytes)
    if nbytes > path.stat().st_size:
        raise DataError(
            f"{path}: header claims shape {tuple(shape)} {dtype} ({nbytes} bytes) but the file holds "
            f"{path.stat().st_size} bytes (truncated?)"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"{path}: cannot read .npy ({str(exc).splitlines()[0] if str(exc) else 'empty file'})"
        ) from None


def _as_stack(arr: np.ndarray, path) -> np.ndarray:
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{path}: expected numeric images [S, H, W] or [H, W]. Received: dtype={arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape[1:]) < 8 or arr.shape[0] < 1:
        raise DataError(
            f"{path}: expected images [S, H, W] or [H, W] with S >= 1 and H, W >= 8. Received: shape={arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: images contain NaN/Inf")
    return arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)


def _read_npz_images(path, dataset):
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            keys = (
                [dataset] if dataset else ([names[0]] if len(names) == 1 else [k for k in H5_IMAGE_KEYS if k in names])
            )
            if not keys or keys[0] not in names:
                raise DataError(
                    f"{path}: no image array (looked for {dataset or H5_IMAGE_KEYS}); found {names}; "
                    f"pass {arg('dataset')}=NAME"
                )
            return z[keys[0]]
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"{path}: cannot read .npz ({str(exc).splitlines()[0] if str(exc) else 'empty file'})"
        ) from None


def _read_h5_images(path, dataset):
    from kerasrecon.data import h5

    with h5.open_file(path) as f:
        keys = [dataset] if dataset else [k for k in H5_IMAGE_KEYS if k in f]
        if not keys or keys[0] not in f:
            raise DataError(
                f"{path}: no image dataset (looked for {dataset or H5_IMAGE_KEYS}); "
                f"found {sorted(f.keys())}; pass {arg('dataset')}=NAME"
            )
        ds = h5.dataset(f, keys[0], path, "numeric", (2, 3), layout="images [S, H, W] or [H, W]")
        check_volume_size(ds.shape, ds.dtype, f"{path}: {keys[0]!r}")
        try:
            return ds[()]
        except OSError as exc:
            raise DataError(f"{path}: {keys[0]!r} cannot be read (truncated/corrupt?): {exc}") from None


def _read_png(path):
    from skimage import io

    try:
        img = io.imread(path)
    except Exception as exc:  # imageio/PIL raise many kinds on a damaged file
        raise DataError(f"{path}: cannot read PNG ({exc.__class__.__name__})") from None
    if img.ndim == 3:  # RGB(A) -> luminance of the first three channels
        img = img[..., :3].mean(axis=-1)
    return img.astype(np.float32)


def _read_dicom_series(files):
    try:
        import pydicom
    except ImportError:
        raise DataError("reading DICOM needs pydicom: pip install 'kerasrecon[dicom]'") from None
    dss = []
    for f in files:
        try:
            dss.append((pydicom.dcmread(str(f)), f))
        except Exception as exc:  # InvalidDicomError, truncated headers (EOFError, struct.error, ...)
            raise DataError(f"{f}: not a readable DICOM file ({exc.__class__.__name__})") from None
    dss.sort(key=lambda d: int(getattr(d[0], "InstanceNumber", 0) or 0))
    slices = []
    for ds, f in dss:
        if "PixelData" not in ds:
            raise DataError(f"{f}: DICOM file has no PixelData (not an image)")
        try:
            px = ds.pixel_array.astype(np.float32)
        except Exception as exc:  # truncated pixel data, unsupported transfer syntax, ...
            raise DataError(
                f"{f}: cannot decode DICOM pixel data ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0][:100] if str(exc) else ''})"
            ) from None
        if px.ndim != 2:
            raise DataError(f"{f}: expected a 2-D (single-frame, grey-scale) DICOM image. Received: shape={px.shape}")
        slope, intercept = float(getattr(ds, "RescaleSlope", 1)), float(getattr(ds, "RescaleIntercept", 0))
        slices.append(px * slope + intercept)
    shapes = sorted({s.shape for s in slices})
    if len(shapes) > 1:
        raise DataError(f"{files[0].parent}: slices of one series must have one size. Received sizes {shapes}")
    return np.stack(slices)


def is_prepared_dataset(path) -> bool:
    """True when directory ``path`` holds a dataset written by ``data prepare`` (its manifest names the
    format): the only kind of directory ``data prepare --force`` replaces."""
    from kerasrecon.schema import read_json

    try:
        meta = read_json(Path(path) / MANIFEST)
    except DataError:
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def is_fastmri(path: Path) -> bool:
    """True for an ``.h5`` file with a ``kspace`` dataset (checked further by ``FastMRIFile``)."""
    if path.suffix.lower() != ".h5":
        return False
    try:
        with h5py.File(path, "r") as f:
            return "kspace" in f
    except OSError:
        return False


def _sources(src: Path):
    if not src.exists():
        raise DataError(f"SRC {src}: does not exist")
    if src.is_file():
        return [src]
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in (".npy", ".npz", ".h5"))
    subdirs = sorted(p for p in src.iterdir() if p.is_dir() and (any(p.glob("*.png")) or any(p.glob("*.dcm"))))
    loose = sorted(src.glob("*.png")) or sorted(src.glob("*.dcm"))
    found = files + subdirs + ([src] if loose else [])
    if not found:
        raise DataError(f"SRC {src}: no .npy/.npz/.h5 files or PNG/DICOM slice folders found (empty directory?)")
    return found


def _with_acquisition(sources, acquisition: str):
    """The fastMRI sources whose ``acquisition`` attribute equals ``acquisition`` (read before anything
    is written). A non-fastMRI source, or no match at all, is a one-line ``DataError``."""
    kept, found = [], set()
    for path in sources:
        if path == "demo" or not is_fastmri(path):
            raise DataError(
                f"{arg('acquisition')} {acquisition}: {path} is not a fastMRI file (only those carry an acquisition)"
            )
        with FastMRIFile(path) as f:
            value = f.metadata().get("acquisition", "")
        found.add(value or "(none)")
        if value == acquisition:
            kept.append(path)
    if not kept:
        raise DataError(
            f"{arg('acquisition')} {acquisition}: no file has it; the files hold {', '.join(sorted(found))}"
        )
    return kept


def prepare_dataset(
    src,
    out,
    dataset: str | None = None,
    crop=None,
    simulation=None,
    acquisition: str | None = None,
    coil_maps: str = "acs",
    acs_lines: int = 24,
    force: bool = False,
) -> dict:
    """Convert image stacks or fastMRI files into a prepared dataset directory.

    Args:
        src: a file or a directory of ``.npy``/``.h5`` files and PNG/DICOM folders (one volume each).
        out: output directory; must not exist or be empty, must not overlap ``src``.
        dataset: HDF5 image dataset name for non-fastMRI ``.h5`` files.
        crop: optional (h, w) centre crop applied to every image (fastMRI default 320×320).
        simulation: optional :class:`kerasrecon.data.simulate.Simulation` (smooth phase, k-space
            noise, coarser grid) for image sources; ``src="demo"`` prepares the embedded demo images.
        acquisition: keep only fastMRI files with this ``acquisition`` attribute (``CORPD_FBK``...);
            other sources are then an error (they have no acquisition).
        coil_maps: multi-coil fastMRI files only: how coil sensitivities are estimated, ``acs``
            (VarNet's: centre-of-k-space coil images over their RSS) or ``espirit`` (sigpy). The
            volume's k-space is that of the SENSE-combined image ``Σ_c conj(S_c) x_c``; the coil
            k-space ``[S, C, H, W]`` and the maps are stored beside it (datasets ``coil_kspace``, ``maps``).
        acs_lines: centre phase-encode columns used to estimate the maps (ESPIRiT's calibration width).
        force: replace an existing prepared dataset at ``out`` (never a directory that is not one).

    Returns:
        the manifest dict (also written to ``out/manifest.json``).
    """
    from kerasrecon.data.simulate import Simulation

    simulation = simulation or Simulation()
    demo = str(src) == "demo" and not Path(src).exists()
    src, out = Path(src), Path(out)
    if crop is not None and (len(crop) != 2 or min(int(c) for c in crop) < 8):
        raise DataError(f"{arg('crop')}: expected H W >= 8. Received: {' '.join(str(c) for c in crop)}")
    check_output(
        out,
        "OUT",
        inputs=[("SRC", None if demo else src)],
        force=force,
        kind="dir",
        replaceable=is_prepared_dataset,
        what="a prepared dataset (manifest.json)",
    )
    from kerasrecon.coils import COIL_MAP_METHODS

    if coil_maps not in COIL_MAP_METHODS:
        raise DataError(f"{arg('coil_maps')} must be one of {', '.join(COIL_MAP_METHODS)}. Received: {coil_maps!r}")
    if acs_lines < 4:
        raise DataError(f"{arg('acs_lines')} must be >= 4. Received: {acs_lines}")
    sources = ["demo"] if demo else _sources(src)
    if acquisition:
        sources = _with_acquisition(sources, acquisition)
    try:
        with atomic_dir(out, "prepare", replace=force, option="OUT") as tmp:
            volumes = [
                _prepare_one(p, tmp, dataset, crop, simulation, i, (coil_maps, acs_lines))
                for i, p in enumerate(sources)
            ]
            manifest = {
                "format": FORMAT,
                "version": 1,
                "source": str(src),
                "kspace_convention": "centred orthonormal fft2c over the last two axes",
                "simulation": simulation.to_dict(),
                "volumes": volumes,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    except OSError as exc:  # ENOSPC, EACCES, ... (h5py wraps some of them); nothing is left behind
        raise DataError(f"OUT {out}: cannot write ({exc.strerror or str(exc).splitlines()[0]})") from None
    return manifest


def check_written(array: np.ndarray, where: str):
    """Refuse an array about to be written to a prepared volume (complex64, as stored) that holds NaN/Inf,
    is all zero, or has no slice/coil: every source kind goes through this after its last cast."""
    if array.size == 0 or 0 in array.shape:
        raise DataError(f"{where}: empty (shape {array.shape}); expected at least one slice (and coil)")
    if not np.all(np.isfinite(array)):
        raise DataError(
            f"{where}: not finite after conversion to complex64 (values beyond float32's range or NaN in the source)"
        )
    if not np.any(array):
        raise DataError(f"{where}: all zero; nothing to reconstruct")


def _sense_combined(coil_kspace: np.ndarray, method: str, acs_lines: int, attrs: dict):
    """Multi-coil k-space ``[S, C, H, W]`` -> (k-space of the SENSE-combined image ``[S, H, W]``,
    ``{"coil_kspace", "maps"}``, attrs with ``coils``, ``coil_maps``, ``acs_lines``)."""
    from kerasrecon.coils import estimate_maps, sense_combine_np

    maps = estimate_maps(coil_kspace, method, acs_lines)
    combined = sense_combine_np(ifft2c_np(coil_kspace), maps)
    attrs = {**attrs, "coils": int(coil_kspace.shape[1]), "coil_maps": method, "acs_lines": int(acs_lines)}
    return fft2c_np(combined), {"coil_kspace": coil_kspace, "maps": maps}, attrs


def _prepare_one(path, tmp: Path, dataset, crop, simulation, index, coil_options=("acs", 24)):
    from kerasrecon.data.simulate import simulate_kspace

    if path == "demo":
        from kerasrecon.data.demo import DEMO_FILE, demo_images

        name, path, images = "ch2better", Path("demo:" + DEMO_FILE), demo_images()
    else:
        name, images = (path.stem if path.is_file() else path.name), None
    if images is None and is_fastmri(path):
        if simulation.active:
            raise DataError(
                f"{path}: {arg('simulation.phase')}/{arg('simulation.noise')}/{arg('simulation.kspace_crop')} "
                "simulate measurements from images; "
                "a fastMRI file already holds measured k-space"
            )
        with FastMRIFile(path, crop=crop) as f:
            if f.undersampled:
                raise DataError(
                    f"{path}: an undersampled fastMRI test/challenge file (it has a 'mask' dataset), "
                    "not fully sampled ground truth; reconstruct it with 'kerasrecon reconstruct'"
                )
            kspace = np.stack(list(f.iter_kspace()))
            extra_attrs = f.metadata()
            multicoil = f.multicoil
        scale, kind, extra_data = 1.0, "fastmri-singlecoil", {}
        if multicoil:
            kspace, extra_data, extra_attrs = _sense_combined(kspace, *coil_options, extra_attrs)
            kind = "fastmri-multicoil"
    else:
        extra_attrs, extra_data = {}, {}
        images = read_image_stack(path, dataset) if images is None else images
        if crop:
            images = center_crop(images, crop)
        images = images.astype(np.complex128 if np.iscomplexobj(images) else np.float64)
        peak = float(np.abs(images).max())
        if not peak > 0:
            raise DataError(f"{path}: all images are zero")
        scale = 1.0 / peak
        if not np.isfinite(scale):  # a peak below ~1e-308 (denormal): no float can carry the volume
            raise DataError(f"{path}: images peak at {peak:.3g}; too small to scale to 1")
        kind = "complex-images" if np.iscomplexobj(images) else "magnitude-images"
        if simulation.active:
            kspace, kind = simulate_kspace(images * scale, simulation, index), kind + "+simulated"
            if simulation.coils > 1:
                kspace, extra_data, extra_attrs = _sense_combined(kspace, *coil_options, extra_attrs)
                kind += f"+{simulation.coils}coils"
        else:
            kspace = fft2c_np((images * scale).astype(np.complex64))
    for key, value in (("k-space", kspace), *extra_data.items()):  # what is written, after every cast
        check_written(value.astype(np.complex64), f"{path}: {key}")
    target = tmp / f"{name}.h5"
    if target.exists():
        raise DataError(f"{path}: two sources map to the same volume name {name!r}")
    write_prepared_volume(
        target, {"kspace": kspace, **extra_data}, {"source": str(path), "scale": scale, **extra_attrs}
    )
    log.info("prepared %s -> %s %s", path, target.name, kspace.shape)
    return {
        "file": target.name,
        "source": str(path),
        "kind": kind,
        "shape": list(kspace.shape),
        "scale": scale,
        **extra_attrs,
    }
