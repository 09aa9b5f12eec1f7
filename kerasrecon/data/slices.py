"""What training and evaluation share about whole slices: each volume's reference mask (seed
``mask.seed + volume index``), the per-slice normalisation factors of its zero-filled image, and the
whole-slice evaluation inputs built from them (models and classical baselines get the same arrays)."""

from __future__ import annotations

import numpy as np

from kerasrecon.config import MaskConfig
from kerasrecon.data.volume import Volume
from kerasrecon.kspace import normalise_np
from kerasrecon.masks import Mask, make_mask


def reference_masks(volumes: list[Volume], mask_cfg: MaskConfig) -> list[Mask]:
    """One slice-shaped mask per volume, seed ``mask_cfg.seed + volume index``."""
    return [reference_mask(v, mask_cfg, i) for i, v in enumerate(volumes)]


def reference_mask(volume: Volume, mask_cfg: MaskConfig, index: int) -> Mask:
    """The slice-shaped mask of the ``index``-th volume: seed ``mask_cfg.seed + index``."""
    return make_mask(
        mask_cfg.kind, mask_cfg.acceleration, volume.shape[1:], mask_cfg.seed + index, mask_cfg.center_fraction
    )


def normalisation_scales(volumes: list[Volume], masks: list[Mask]) -> list[np.ndarray]:
    """Per-slice factors ``1 / max|zero_filled|``: a float32 ``[S]`` array per volume."""
    return [normalisation_scale(vol, mask) for vol, mask in zip(volumes, masks)]


def normalisation_scale(volume: Volume, mask: Mask) -> np.ndarray:
    """One volume's per-slice factors ``1 / max|zero_filled|`` under its reference ``mask``: float32 ``[S]``."""
    return normalise_np(volume.zero_filled(mask.array))[1]


def evaluation_slices(volumes: list[Volume], mask_cfg: MaskConfig, target: str = "sense"):
    """Whole-slice evaluation inputs, one volume at a time.

    Yields dicts per volume with NumPy arrays: ``name``; ``mask`` (:class:`Mask`, slice shape, seed
    ``mask_cfg.seed + volume index``); ``scale`` float32 ``[S]``; ``masked_kspace`` complex64
    ``[S, H, W]`` (normalised; multi-coil volumes: the coils' ``[S, C, H, W]``); ``maps`` complex64
    ``[S, C, H, W]`` or ``None`` (single-coil); ``zero_filled`` complex64 ``[S, H, W]`` (normalised;
    multi-coil: SENSE-combined); ``target`` float32 ``[S, H, W]`` magnitude (original scale;
    multi-coil: of the SENSE-combined fully sampled image, or with ``target="rss"`` the coil images'
    root-sum-of-squares, fastMRI's target).
    """
    for i, vol in enumerate(volumes):  # one volume in memory at a time
        vol, mask = vol.loaded(), reference_mask(vol, mask_cfg, i)
        scale = normalisation_scale(vol, mask)
        yield {
            "name": vol.name,
            "mask": mask,
            "scale": scale,
            "masked_kspace": vol.measured(mask.array, scale),
            "maps": vol.maps,
            "zero_filled": vol.zero_filled(mask.array, scale),
            "target": vol.target(target),
        }
