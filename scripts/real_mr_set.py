"""Build the real-MR evaluation/training stacks used for the README's results against compressed sensing
(not shipped in the wheel).

Every image is a real scanner image that ships inside a PyPI package (no download at run time:
``pip install nibabel dipy pydicom-data`` once, from the package registry). Sources and licences:

| volume | anatomy, sequence, scanner | package (licence) | file |
|---|---|---|---|
| shoulder | shoulder, Philips 1.5 T | pydicom-data (MIT) | data_store/data/MR2_UNCR.dcm |
| abdomen | abdomen, Siemens 1.5 T | pydicom-data (MIT) | data_store/data/MR-SIEMENS-DICOM-WithOverlays.dcm |
| head_t1 | head T1, 10 slices of 64×64, 3 T (header: HEAD, T1) | pydicom-data (MIT) | data_store/data/emri_small.dcm |
| t1_coronal | brain T1, coronal | dipy (BSD-3) | dipy/data/files/t1_coronal_slice.npy |
| epi_brain | brain EPI (fMRI), 24 slices | nibabel (MIT) | nibabel/tests/data/example4d.nii.gz (t = 0) |
| dwi_b0 | brain diffusion b = 0, 10 slices | dipy (BSD-3) | dipy/data/files/S0_10slices.nii.gz |
| dwi_piesno | brain diffusion, 14 slices | dipy (BSD-3) | dipy/data/files/test_piesno.nii.gz |
| dwi_aniso | brain diffusion, 24 slices | dipy (BSD-3) | dipy/data/files/aniso_vox.nii.gz |

Split by whole volume (never slices of one volume on both sides):
* ``eval/``  — shoulder, abdomen, head_t1, t1_coronal: other anatomies, sequences or scanners than any
  training data (head_t1 and t1_coronal are brains like the training volumes, but T1 scans, not EPI/DWI);
* ``train/`` — the four brain EPI/DWI volumes, zero-padded/cropped to 128×128 (one grid for training).

The shoulder (1024²) and abdomen (484²) are reduced by local means (4×, 2×) so a TV solve takes
seconds; the realistic simulation then adds phase and noise on the reduced grid.

Usage: python scripts/real_mr_set.py OUT [--src DIR]  (DIR: an unpacked copy of the three packages'
files with the paths above, when the packages are not installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

SOURCES = {
    "shoulder": ("pydicom_data", "data_store/data/MR2_UNCR.dcm"),
    "abdomen": ("pydicom_data", "data_store/data/MR-SIEMENS-DICOM-WithOverlays.dcm"),
    "head_t1": ("pydicom_data", "data_store/data/emri_small.dcm"),
    "t1_coronal": ("dipy", "dipy/data/files/t1_coronal_slice.npy"),
    "epi_brain": ("nibabel", "nibabel/tests/data/example4d.nii.gz"),
    "dwi_b0": ("dipy", "dipy/data/files/S0_10slices.nii.gz"),
    "dwi_piesno": ("dipy", "dipy/data/files/test_piesno.nii.gz"),
    "dwi_aniso": ("dipy", "dipy/data/files/aniso_vox.nii.gz"),
}
EVAL = ("shoulder", "abdomen", "head_t1", "t1_coronal")
TRAIN_GRID = (128, 128)


def locate(package: str, rel: str, src: Path | None) -> Path:
    if src is not None and (src / rel).is_file():
        return src / rel
    spec = importlib.util.find_spec(package if package != "pydicom_data" else "data_store")
    if spec and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0]).parent
        if (root / rel).is_file():
            return root / rel
    sys.exit(f"real_mr_set: {rel} not found: pip install {package.replace('_', '-')} or pass --src DIR")


def read(name: str, path: Path) -> np.ndarray:
    """[S, H, W] float32 magnitude."""
    if path.suffix == ".dcm":
        import pydicom

        arr = pydicom.dcmread(str(path)).pixel_array.astype(np.float32)
    elif path.suffix == ".npy":
        arr = np.load(path).astype(np.float32)
    else:
        import nibabel

        arr = np.asarray(nibabel.load(str(path)).dataobj, dtype=np.float32)
        arr = arr[..., 0] if arr.ndim == 4 else arr
        arr = np.rot90(np.moveaxis(arr, 2, 0), axes=(1, 2))  # slices first, anterior up
    arr = arr[None] if arr.ndim == 2 else arr
    factor = {"shoulder": 4, "abdomen": 2}.get(name, 1)
    if factor > 1:
        s, h, w = arr.shape
        arr = arr[:, : h // factor * factor, : w // factor * factor]
        arr = arr.reshape(s, h // factor, factor, w // factor, factor).mean(axis=(2, 4))
    return np.ascontiguousarray(arr, dtype=np.float32)


def fit_grid(arr: np.ndarray, grid) -> np.ndarray:
    """Zero-pad or centre-crop [S, H, W] to grid (background is air: padding adds no structure)."""
    out = np.zeros((arr.shape[0], *grid), np.float32)
    h, w = arr.shape[1:]
    H, W = grid
    sh, sw = min(h, H), min(w, W)
    out[:, (H - sh) // 2 : (H - sh) // 2 + sh, (W - sw) // 2 : (W - sw) // 2 + sw] = arr[
        :, (h - sh) // 2 : (h - sh) // 2 + sh, (w - sw) // 2 : (w - sw) // 2 + sw
    ]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--src", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"real_mr_set: OUT {args.out} exists and is not empty")
    for part in ("eval", "train"):
        (args.out / part).mkdir(parents=True, exist_ok=True)
    for name, (package, rel) in SOURCES.items():
        arr = read(name, locate(package, rel, args.src))
        if name not in EVAL:
            arr = fit_grid(arr, TRAIN_GRID)
        part = "eval" if name in EVAL else "train"
        np.save(args.out / part / f"{name}.npy", arr)
        print(f"{part}/{name}.npy {arr.shape} from {package}:{rel}")


if __name__ == "__main__":
    main()
