"""Coil sensitivities for multi-coil k-space: estimation, simulation and SENSE combination.

Conventions (as in ``kspace.py``): k-space is centred and orthonormal; multi-coil arrays are
``[..., C, H, W]`` complex with the coil axis third from the end. Sensitivity maps ``S`` are
normalised so that ``Σ_c |S_c|² = 1`` wherever there is signal and ``S = 0`` elsewhere; then the
SENSE combination ``Σ_c conj(S_c) · x_c`` of coil images ``x_c = S_c · x`` returns ``x`` inside the
object, and single coil is the case ``C = 1, S = 1``.

Estimators:

* ``acs_maps_np`` — the initialisation fastMRI's VarNet uses: coil images of the fully sampled centre
  of k-space only (low resolution), each divided by their root-sum-of-squares. Needs nothing but
  the measured k-space; ``acs_maps_ch`` is the same in ``keras.ops`` (inside a served graph).
* ``espirit_maps`` — ESPIRiT (Uecker et al. 2014) through sigpy's ``EspiritCalib`` (the optional
  ``baselines`` extra): the eigenvector maps of the calibration matrix, better at coil edges and
  where the object has holes.

``birdcage_maps`` simulates a birdcage array (the analytic model of sigpy's ``birdcage_maps``) for
``data prepare --coils`` and for tests.
"""

from __future__ import annotations

import numpy as np

from kerasrecon.errors import ConfigError, DataError, arg
from kerasrecon.kspace import check_kspace, ifft2c_np

MAP_THRESHOLD = 0.05  # maps are zero where the low-resolution RSS is below this fraction of its peak


def rss_np(coil_images: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares over coils: complex ``[..., C, H, W]`` -> float32 ``[..., H, W]``
    (fastMRI's multi-coil target, ``reconstruction_rss``)."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=-3)).astype(np.float32)


def sense_combine_np(coil_images: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """``Σ_c conj(S_c) · x_c``: coil images and maps complex ``[..., C, H, W]`` -> complex64 ``[..., H, W]``."""
    return np.sum(np.conj(maps) * coil_images, axis=-3).astype(np.complex64)


def normalise_maps(maps: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
    """Scale maps ``[..., C, H, W]`` so that ``Σ_c |S_c|² = 1`` on ``support`` (bool ``[..., H, W]``;
    default: where that sum is non-zero) and set them to 0 elsewhere. Returns complex64."""
    energy = np.sqrt(np.sum(np.abs(maps) ** 2, axis=-3, keepdims=True))
    keep = energy > 0 if support is None else (support[..., None, :, :] & (energy > 0))
    return np.where(keep, maps / np.where(energy > 0, energy, 1), 0).astype(np.complex64)


def birdcage_maps(coils: int, height: int, width: int, radius: float = 1.5) -> np.ndarray:
    """Simulated birdcage coil sensitivities: complex64 ``[coils, height, width]``, ``Σ|S|² = 1``.

    ``coils`` loops evenly spaced on a circle of ``radius`` (in units of the half field of view)
    around the image centre; coil c's sensitivity falls as ``1 / distance`` with phase
    ``atan2(x, -y) - 2π c / C`` (the model of sigpy's ``birdcage_maps``).
    """
    if coils < 1:
        raise ConfigError(f"{arg('coils')} must be >= 1. Received: {coils}")
    if coils == 1:
        return np.ones((1, height, width), np.complex64)
    c, y, x = np.mgrid[:coils, :height, :width].astype(np.float64)
    angle = 2 * np.pi * c / coils
    dx = (x - width / 2.0) / (width / 2.0) - radius * np.cos(angle)
    dy = (y - height / 2.0) / (height / 2.0) - radius * np.sin(angle)
    maps = np.exp(1j * (np.arctan2(dx, -dy) - angle)) / np.sqrt(dx**2 + dy**2)
    return normalise_maps(maps)


def acs_region(shape, acs: int) -> np.ndarray:
    """float32 ``[H, W]``: 1 on the ``acs`` centre columns (phase-encode lines around DC), else 0."""
    h, w = shape
    if not 1 <= acs <= w:
        raise ConfigError(f"{arg('acs_lines')} must be in [1, {w}]. Received: {acs}")
    region = np.zeros((h, w), np.float32)
    start = w // 2 - acs // 2
    region[:, start : start + acs] = 1
    return region


def acs_maps_np(kspace: np.ndarray, acs: int, threshold: float = MAP_THRESHOLD) -> np.ndarray:
    """Maps from the fully sampled centre: ``x_c = Fᴴ(ACS ⊙ y_c)``, ``S_c = x_c / RSS(x)`` where
    ``RSS > threshold · max``, 0 elsewhere (VarNet's sensitivity initialisation).

    Args:
        kspace: complex ``[..., C, H, W]`` (fully sampled or undersampled with a sampled centre).
        acs: number of centre phase-encode columns that are fully sampled.
        threshold: fraction of the peak low-resolution RSS below which maps are 0.

    Returns:
        complex64 ``[..., C, H, W]`` with ``Σ_c |S_c|² = 1`` on the support.
    """
    low = ifft2c_np(kspace * acs_region(kspace.shape[-2:], acs))
    rss = np.sqrt(np.sum(np.abs(low) ** 2, axis=-3))
    support = rss > threshold * rss.max(axis=(-2, -1), keepdims=True)
    return normalise_maps(low, support)


ESPIRIT_KERNEL = 6  # sigpy's EspiritCalib kernel width (its default), passed explicitly


def espirit_maps(kspace: np.ndarray, calib_width: int = 24, threshold: float = 0.02, crop: float = 0.95) -> np.ndarray:
    """ESPIRiT maps through sigpy (``pip install 'kerasrecon[baselines]'``).

    Args:
        kspace: complex ``[C, H, W]`` of one slice.
        calib_width: side of the centre calibration region (fully sampled there), from
            ``ESPIRIT_KERNEL`` to ``min(H, W)``.
        threshold, crop: sigpy's singular-value threshold and eigenvalue crop.

    Returns:
        complex64 ``[C, H, W]``, normalised to ``Σ_c |S_c|² = 1`` on the support (0 elsewhere).
    """
    try:
        from sigpy.mri.app import EspiritCalib
    except ImportError:
        raise ConfigError(
            f"{arg('coil_maps')} espirit needs sigpy: pip install 'kerasrecon[baselines]' "
            f"(or use {arg('coil_maps')} acs)"
        ) from None
    if kspace.ndim != 3:
        raise DataError(f"ESPIRiT: expected one slice of multi-coil k-space [C, H, W]. Received: {kspace.shape}")
    if not ESPIRIT_KERNEL <= calib_width <= min(kspace.shape[-2:]):
        raise ConfigError(
            f"{arg('acs_lines')} {calib_width}: ESPIRiT's calibration region must hold its {ESPIRIT_KERNEL}×"
            f"{ESPIRIT_KERNEL} kernel and fit the {kspace.shape[-2]}×{kspace.shape[-1]} image "
            f"(expected {ESPIRIT_KERNEL}..{min(kspace.shape[-2:])})"
        )
    maps = EspiritCalib(
        kspace.astype(np.complex64),
        calib_width=calib_width,
        kernel_width=ESPIRIT_KERNEL,
        thresh=threshold,
        crop=crop,
        show_pbar=False,
    ).run()
    return normalise_maps(np.asarray(maps))


COIL_MAP_METHODS = ("acs", "espirit")


def estimate_maps(kspace: np.ndarray, method: str, acs: int) -> np.ndarray:
    """Maps for multi-coil k-space ``[S, C, H, W]`` slice by slice with ``method`` (``espirit`` or
    ``acs``; ``acs`` centre columns are the calibration region). Returns complex64 ``[S, C, H, W]``."""
    if method not in COIL_MAP_METHODS:
        raise ConfigError(f"{arg('coil_maps')} must be one of {', '.join(COIL_MAP_METHODS)}. Received: {method!r}")
    kspace = np.asarray(kspace)
    if kspace.ndim != 4 or 0 in kspace.shape or min(kspace.shape[-2:]) < 2:
        raise DataError(
            f"kspace: expected multi-coil complex [S, C, H, W] with S, C >= 1 and H, W >= 2. "
            f"Received: shape={kspace.shape}"
        )
    check_kspace(kspace, name="kspace")
    if not isinstance(acs, (int, np.integer)) or isinstance(acs, bool) or not 1 <= acs <= kspace.shape[-1]:
        raise ConfigError(f"{arg('acs_lines')} must be an integer in [1, W = {kspace.shape[-1]}]. Received: {acs!r}")
    if method == "acs":
        return acs_maps_np(kspace, acs)
    return np.stack([espirit_maps(k, calib_width=acs) for k in kspace])


def acs_lines_ch(width, center_fraction: float):
    """Centre columns for coil maps estimated from a mask of ``center_fraction``:
    ``max(4, round(center_fraction · width))`` (int32; ``width`` may be a tensor, any backend)."""
    from keras import ops

    return ops.maximum(4, ops.cast(ops.round(center_fraction * ops.cast(width, "float32")), "int32"))


def acs_region_ch(width, acs):
    """``acs_region``'s columns in ``keras.ops``: float32 ``[W]``, 1 on the ``acs`` centre columns."""
    from keras import ops

    cols = ops.arange(width)
    start = width // 2 - acs // 2
    return ops.cast(ops.logical_and(cols >= start, cols < start + acs), "float32")


def acs_maps_ch(masked_kspace, acs, eps: float = 1e-6):
    """``acs_maps_np`` in ``keras.ops`` (any backend), for a served graph.

    Args:
        masked_kspace: float32 ``[B, C, H, W, 2]`` measured multi-coil k-space (channel form).
        acs: number of fully sampled centre columns (int or int32 scalar tensor; see ``acs_region``).
        eps: floor of the RSS relative to its per-slice peak (no division by zero off the object).

    Returns:
        float32 ``[B, C, H, W, 2]``: ``x_c / RSS`` where ``RSS > MAP_THRESHOLD · peak``, else 0.
    """
    from keras import ops

    from kerasrecon.kspace import ifft2c_ch

    region = ops.cast(acs_region_ch(ops.shape(masked_kspace)[3], acs), masked_kspace.dtype)
    low = ifft2c_ch(masked_kspace * region[:, None])
    rss = ops.sqrt(ops.sum(ops.square(low), axis=(1, 4), keepdims=True))  # [B, 1, H, W, 1]
    peak = ops.max(rss, axis=(2, 3), keepdims=True)
    keep = ops.cast(rss > MAP_THRESHOLD * peak, low.dtype)
    # all-zero data (nothing measured): maps 0, not 0/0 = NaN (the NumPy twin does the same)
    return low / ops.maximum(rss, ops.maximum(eps * peak, 1e-30)) * keep
