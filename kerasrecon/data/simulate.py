"""Simulate what a scanner measures from images: smooth phase, complex k-space noise, a coarser grid.

Magnitude images turned into k-space by one FFT on the same grid are an *inverse crime*: zero phase,
no noise and the reconstruction grid identical to the simulation grid flatter every method, most of
all piecewise-constant priors such as TV. :func:`simulate_kspace` removes the three:

* ``phase="smooth"`` multiplies each slice by ``exp(iφ)``, φ a random smooth field (white noise
  low-passed by a Gaussian of width ``min(H, W) / 8``, scaled to a peak-to-peak range of ``2π ·
  phase_range``), as B0/B1 and coil phase make real images complex;
* ``noise = σ`` adds complex white Gaussian noise with ``E|n|² = (σ · max|x|)²`` to every k-space
  sample. The FFT is orthonormal, so the image noise has the same σ per pixel: σ = 0.01 is an image
  SNR (peak / noise std) of 100, i.e. ~30–50 in average tissue — the order of a clinical 3 T TSE
  series. The fully sampled target then carries this noise too, as real reference scans do;
* ``kspace_crop = (h, w)`` keeps only the central ``h × w`` of the source grid's k-space, so the
  target lives on a coarser grid than the data were simulated on (no shared discretisation);
* ``coils = C > 1`` measures through ``C`` simulated birdcage coils (``coils.birdcage_maps`` on the
  source grid): coil images ``S_c · x``, each transformed, cropped and given its own noise (σ as
  above, per coil). ``data prepare`` then estimates maps from these data (``--coil-maps``), as for a
  scanner's, and stores the SENSE-combined volume.

Every draw depends only on ``(seed, volume index)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from kerasrecon.errors import DataError, arg
from kerasrecon.kspace import fft2c_np

PHASES = ("none", "smooth")


@dataclass(frozen=True)
class Simulation:
    """How ``data prepare`` turns images into k-space (defaults: the plain FFT of earlier versions).

    Attributes:
        phase: ``none`` | ``smooth``.
        phase_range: peak-to-peak phase in turns (1.0 = 2π).
        noise: σ of the complex k-space noise as a fraction of the image maximum (0 = none).
        kspace_crop: ``(h, w)`` central k-space kept, or ``None`` (same grid).
        seed: base seed; volume i uses ``(seed, i)``.
        coils: simulated receive coils (1 = single-coil k-space).
    """

    phase: str = "none"
    phase_range: float = 1.0
    noise: float = 0.0
    kspace_crop: tuple | None = None
    seed: int = 0
    coils: int = 1

    def __post_init__(self):
        if self.phase not in PHASES:
            raise DataError(f"{arg('simulation.phase')} must be one of {PHASES}. Received: {self.phase!r}")
        if not (self.noise >= 0 and np.isfinite(self.noise)):
            raise DataError(f"{arg('simulation.noise')} must be a finite number >= 0. Received: {self.noise}")
        if not (self.phase_range > 0 and np.isfinite(self.phase_range)):
            raise DataError(
                f"{arg('simulation.phase_range')} must be a finite number > 0. Received: {self.phase_range}"
            )
        if not (isinstance(self.seed, (int, np.integer)) and 0 <= self.seed < 2**63):
            raise DataError(f"{arg('simulation.seed')} must be an integer >= 0. Received: {self.seed}")
        if self.kspace_crop is not None and (len(self.kspace_crop) != 2 or min(self.kspace_crop) < 8):
            raise DataError(f"{arg('simulation.kspace_crop')}: expected H W >= 8. Received: {self.kspace_crop}")
        if not (isinstance(self.coils, (int, np.integer)) and 1 <= self.coils <= 64):
            raise DataError(f"{arg('simulation.coils')} must be an integer in [1, 64]. Received: {self.coils}")

    @property
    def active(self) -> bool:
        """True when anything beyond the plain FFT is simulated."""
        return self.phase != "none" or self.noise > 0 or self.kspace_crop is not None or self.coils > 1

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        d = asdict(self)
        d["kspace_crop"] = list(self.kspace_crop) if self.kspace_crop else None
        return d


def smooth_phase(shape, rng: np.random.Generator, phase_range: float = 1.0) -> np.ndarray:
    """Random smooth phase maps, float32 ``[S, H, W]`` radians, peak-to-peak ``2π · phase_range``."""
    from scipy.ndimage import gaussian_filter

    s, h, w = shape
    sigma = min(h, w) / 8
    out = np.empty(shape, np.float32)
    for i in range(s):
        field = gaussian_filter(rng.standard_normal((h, w)), sigma, mode="wrap")
        field -= field.min()
        out[i] = (field / max(field.max(), 1e-12) - 0.5) * 2 * np.pi * phase_range
    return out


def crop_kspace(kspace: np.ndarray, shape) -> np.ndarray:
    """Central ``h × w`` of centred k-space ``[S, H, W]`` (DC stays at ``(h // 2, w // 2)``)."""
    h, w = shape
    H, W = kspace.shape[-2:]
    if h > H or w > W:
        raise DataError(f"{arg('simulation.kspace_crop')} {h} {w} is larger than the images ({H}×{W})")
    top, left = H // 2 - h // 2, W // 2 - w // 2
    # Orthonormal FFT on a smaller grid: rescale so image intensities are kept.
    return kspace[..., top : top + h, left : left + w] * np.sqrt(h * w / (H * W))


def simulate_kspace(images: np.ndarray, sim: Simulation, volume_index: int = 0) -> np.ndarray:
    """Simulated measured k-space of one volume.

    Args:
        images: float32 magnitude or complex64 ``[S, H, W]`` (already scaled).
        sim: the :class:`Simulation`.
        volume_index: index of the volume (seeds its draws).

    Returns:
        complex64 ``[S, h, w]`` k-space (``h, w = sim.kspace_crop`` or ``H, W``); ``[S, C, h, w]``
        with ``sim.coils = C > 1``.
    """
    rng = np.random.default_rng([int(sim.seed), int(volume_index)])
    x = np.asarray(images).astype(np.complex64)
    if sim.phase == "smooth":
        x = x * np.exp(1j * smooth_phase(x.shape, rng, sim.phase_range)).astype(np.complex64)
    x_noise_ref = x  # σ is relative to the object's peak, per coil as for one coil
    if sim.coils > 1:
        from kerasrecon.coils import birdcage_maps

        x = birdcage_maps(sim.coils, *x.shape[-2:])[None] * x[:, None]
    kspace = fft2c_np(x)
    if sim.kspace_crop is not None:
        kspace = crop_kspace(kspace, sim.kspace_crop)
    if sim.noise > 0:
        sigma = sim.noise * float(np.abs(x_noise_ref).max())
        noise = rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
        kspace = kspace + (sigma / np.sqrt(2)) * noise
    return kspace.astype(np.complex64)
