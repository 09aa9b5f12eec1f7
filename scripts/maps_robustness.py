"""Does a multi-coil model work with the coil maps a user brings? Reconstruct the same measured data
with the dataset's stored maps, with sigpy's ESPIRiT maps (``kerasrecon[baselines]``) and with the
stored maps turned by a constant and by a linear phase (the same data fit all four), and score each
against the dataset's SENSE target and against the map-free RSS of the fully sampled coil images.

Usage: python scripts/maps_robustness.py MODEL DATA [-R 4] [--mask poisson] [--mask-seed 0]
           [--calib 24]

MODEL: a run directory, an export or ``pretrained:NAME``; DATA: a prepared multi-coil dataset (every
volume is used). Prints one JSON object: per maps variant and target, PSNR (dB) as the slice mean,
the mean over volumes and per volume; R, mask kind and seed are in it.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from kerasrecon import Reconstructor
from kerasrecon.coils import espirit_maps, rss_np
from kerasrecon.data import load_volumes
from kerasrecon.errors import KerasReconError
from kerasrecon.kspace import ifft2c_np
from kerasrecon.masks import make_mask
from kerasrecon.metrics import psnr


def variants(maps: np.ndarray, coil_kspace: np.ndarray, calib: int) -> dict:
    """The maps variants for one volume: complex64 ``[S, C, H, W]`` each."""
    x = np.arange(maps.shape[-1])[None, :] / maps.shape[-1]
    return {
        "stored": maps,
        "espirit": np.stack([espirit_maps(k, calib_width=calib) for k in coil_kspace]),
        "stored x e^{2i}": maps * np.exp(2j),
        "stored x e^{3i x/W}": maps * np.exp(3j * x)[None, None],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("-R", type=float, default=4.0)
    ap.add_argument("--mask", default="poisson")
    ap.add_argument("--mask-seed", type=int, default=0)
    ap.add_argument("--calib", type=int, default=24, help="ESPIRiT calibration width (centre of k-space)")
    args = ap.parse_args(argv)
    try:
        print(json.dumps(measure(args), indent=1))
    except KerasReconError as exc:  # a bad model, dataset or option: one line, exit 2
        sys.exit(f"maps_robustness: {exc}")


def measure(args) -> dict:
    """The result object of ``main`` for parsed ``args``."""
    rec = Reconstructor.load(args.model)
    if not all(v.multicoil for v in load_volumes(args.data)):
        raise KerasReconError(f"DATA {args.data}: expected a multi-coil dataset (coil k-space and maps)")
    per_volume: dict = {}
    slices: dict = {}
    for vol in load_volumes(args.data):
        coil_kspace, maps = vol.coil_kspace, vol.maps
        mask = make_mask(args.mask, args.R, coil_kspace.shape[-2:], args.mask_seed)
        targets = {"sense": np.abs(ifft2c_np(vol.kspace)), "rss": rss_np(ifft2c_np(coil_kspace))}
        for name, given in variants(maps, coil_kspace, args.calib).items():
            out = rec(coil_kspace * mask.array, mask, maps=given.astype(np.complex64))
            for target_name, target in targets.items():
                values = [psnr(target[i], out[i]) for i in range(len(vol))]
                key = f"{name} vs {target_name}"
                slices.setdefault(key, []).extend(values)
                per_volume.setdefault(key, {})[vol.name] = round(float(np.mean(values)), 2)
    return {
        "model": args.model,
        "data": args.data,
        "R": args.R,
        "mask": args.mask,
        "mask_seed": args.mask_seed,
        "psnr": {
            key: {
                "slice_mean": round(float(np.mean(values)), 2),
                "volume_mean": round(float(np.mean(list(per_volume[key].values()))), 2),
                "per_volume": per_volume[key],
            }
            for key, values in slices.items()
        },
    }


if __name__ == "__main__":
    main()
