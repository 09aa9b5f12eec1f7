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
    return [
        make_mask(mask_cfg.kind, mask_cfg.acceleration, v.kspace.shape[1:], mask_cfg.seed + i, mask_cfg.center_fraction)
        for i, v in enumerate(volumes)
    ]


def normalisation_scales(volumes: list[Volume], masks: list[Mask]) -> list[np.ndarray]:
    """Per-slice factors ``1 / max|zero_filled|``: a float32 ``[S]`` array per volume."""
    return [normalise_np(vol.zero_filled(mask.array))[1] for vol, mask in zip(volumes, masks)]


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
    masks = reference_masks(volumes, mask_cfg)
    scales = normalisation_scales(volumes, masks)
    for vol, mask, scale in zip(volumes, masks, scales):
        yield {
            "name": vol.name,
            "mask": mask,
            "scale": scale,
            "masked_kspace": vol.measured(mask.array, scale),
            "maps": vol.maps,
            "zero_filled": vol.zero_filled(mask.array, scale),
            "target": vol.target(target),
        }
