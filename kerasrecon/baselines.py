"""Classical compressed-sensing baselines on exactly the k-space the models see (sigpy solvers).

Methods (``BASELINES``):

* ``zero_filled`` — ``|F^H (M ⊙ s0)|`` (always scored by ``evaluate``; listed here for the CLI);
* ``tv`` — ``argmin_x ½‖M F x − y‖² + λ‖∇x‖₁`` (``sigpy.mri.app.TotalVariationRecon``, PDHG);
* ``l1wavelet`` — ``argmin_x ½‖M F x − y‖² + λ‖Ψx‖₁`` with Daubechies-4 wavelets
  (``sigpy.mri.app.L1WaveletRecon``, FISTA).

Both solve the single-coil problem (sensitivity map of ones) with sigpy's centred orthonormal FFT,
which is kerasrecon's ``fft2c`` (tested). They run on the *normalised* masked k-space (zero-filled
maximum 1, the models' input scale), so one λ fits images of any intensity; outputs are scaled back.

λ is never tuned on evaluation slices: :func:`sweep_lambda` picks it by mean PSNR over a few slices
of the run's *training* split, with their own masks, and the chosen λ, the grid, the iteration count
and the seconds per slice are written beside every table. sigpy is an optional extra:
``pip install 'kerasrecon[baselines]'``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from kerasrecon.errors import ConfigError, DataError, arg
from kerasrecon.kspace import check_kspace

BASELINES = ("zero_filled", "tv", "l1wavelet")
SOLVERS = ("tv", "l1wavelet")
# λ relative to normalised k-space (zero-filled image maximum = 1); the sweep's default grid.
LAMBDA_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
DEFAULT_ITERS = 100
SWEEP_SLICES = 4


def require_sigpy(option: str | None = None):
    """Import sigpy.mri or raise a one-line ``ConfigError`` naming ``option`` (default: the
    ``baselines`` argument) and the extra."""
    option = option or arg("baselines")
    try:
        import sigpy
        import sigpy.mri  # noqa: F401
    except ImportError:
        raise ConfigError(f"{option} tv/l1wavelet needs sigpy: pip install 'kerasrecon[baselines]'") from None
    return sigpy


def solve(
    method: str,
    masked_kspace: np.ndarray,
    mask: np.ndarray,
    lam: float,
    iters: int = DEFAULT_ITERS,
    maps: np.ndarray | None = None,
) -> np.ndarray:
    """Reconstruct slices with a CS solver (SENSE-CS with ``maps``).

    Args:
        method: ``tv`` or ``l1wavelet``.
        masked_kspace: complex ``[S, H, W]`` (zeros where not sampled), centred orthonormal convention;
            multi-coil ``[S, C, H, W]`` with ``maps``.
        mask: ``[H, W]`` or ``[S, H, W]`` of 0/1.
        lam: regularisation weight λ (> 0).
        iters: solver iterations.
        maps: coil sensitivities complex ``[S, C, H, W]`` (multi-coil), or ``None``.

    Returns:
        complex64 ``[S, H, W]`` images.
    """
    sp = require_sigpy()
    from sigpy.mri import app

    if method not in SOLVERS:
        raise ConfigError(f"{arg('baselines')}: unknown solver {method!r}; expected one of {SOLVERS}")
    if not (isinstance(lam, (int, float, np.floating)) and np.isfinite(lam) and lam > 0):
        raise ConfigError(f"{arg('baseline_lambdas')} must be finite numbers > 0. Received: {lam!r}")
    if not isinstance(iters, (int, np.integer)) or isinstance(iters, bool) or iters < 1:
        raise ConfigError(f"{arg('baseline_iters')} must be an integer >= 1. Received: {iters!r}")
    masked_kspace = np.asarray(masked_kspace)
    rank = 3 if maps is None else 4
    if masked_kspace.ndim != rank or 0 in masked_kspace.shape or min(masked_kspace.shape[-2:]) < 2:
        raise DataError(
            f"masked_kspace: expected complex {'[S, H, W]' if maps is None else '[S, C, H, W] (with maps)'} "
            f"with S, C >= 1 and H, W >= 2. Received: shape={masked_kspace.shape}"
        )
    check_kspace(masked_kspace, name="masked_kspace")
    if maps is None:
        masked_kspace, maps = masked_kspace[:, None], np.ones_like(masked_kspace[:, None])
    else:
        maps = np.asarray(maps)
        if maps.shape != masked_kspace.shape:
            raise DataError(f"maps: expected the shape of masked_kspace {masked_kspace.shape}. Received: {maps.shape}")
        check_kspace(maps, name="maps")
    s, _, h, w = masked_kspace.shape
    mask = np.asarray(mask)
    if mask.shape not in ((h, w), (s, h, w)) or not np.issubdtype(mask.dtype, np.number) and mask.dtype != bool:
        raise DataError(
            f"mask: expected 0/1 of shape {(h, w)} or {(s, h, w)}. Received: shape={mask.shape}, dtype={mask.dtype}"
        )
    mask = mask.astype(np.float32)
    if not np.all((mask == 0) | (mask == 1)):
        raise DataError("mask: expected only 0 and 1 (NaN, 0.5 or other values found)")
    masks = np.broadcast_to(mask, (s, h, w))
    solver = app.TotalVariationRecon if method == "tv" else app.L1WaveletRecon
    out = np.empty((s, h, w), np.complex64)
    for i in range(s):
        y = (masked_kspace[i] * masks[i]).astype(np.complex64)
        out[i] = solver(
            y,
            np.asarray(maps[i], np.complex64),
            lam,
            weights=masks[i],
            max_iter=iters,
            show_pbar=False,
            device=sp.cpu_device,
        ).run()
    return out


def recon_fn(method: str, lam: float, iters: int = DEFAULT_ITERS):
    """``solve`` with the models' normalisation, in evaluate's one signature (``evaluate.ReconFn``).

    The returned ``fn(kspace, mask, batch_size=..., maps=None)`` takes k-space complex ``[B, H, W]``
    (multi-coil ``[B, C, H, W]`` with ``maps`` ``[B, C, H, W]``: SENSE-TV/L1) at any scale and mask
    ``[B, H, W]``, scales each slice so its (SENSE-combined) zero-filled peak is 1 (so λ means the same
    for every image, as for the models), solves, and returns the magnitude float32 ``[B, H, W]`` at
    the input's scale.
    """
    from kerasrecon.kspace import measure_np, normalise_np, per_slice

    def fn(kspace, mask, batch_size=None, maps=None):
        kspace, mask = np.asarray(kspace), np.asarray(mask)
        masked, zero_filled = measure_np(kspace, mask, maps)
        _, scale = normalise_np(zero_filled)
        out = solve(method, masked * per_slice(scale, masked.ndim), mask, lam, iters, maps)
        return (np.abs(out) / per_slice(scale, 3)).astype(np.float32)

    return fn


@dataclass
class BaselineSetting:
    """The λ chosen for one solver and how: recorded with every results table."""

    method: str
    lam: float
    iters: int
    grid: list = field(default_factory=list)
    sweep_psnr: list = field(default_factory=list)
    tuned_on: str = ""

    def to_dict(self) -> dict:
        """Plain dict (JSON)."""
        return asdict(self)


def sweep_slices(train_volumes, n: int = SWEEP_SLICES):
    """Up to ``n`` training slices, evenly spaced over all training volumes: a list of ``Volume``."""
    index = [(vi, si) for vi, v in enumerate(train_volumes) for si in range(v.kspace.shape[0])]
    if not index:
        raise DataError(
            f"{arg('baselines')}: the training split is empty, so λ cannot be tuned without using "
            f"evaluation slices; pass one value to {arg('baseline_lambdas')}"
        )
    picks = [index[int(j)] for j in np.unique(np.linspace(0, len(index) - 1, min(n, len(index))).round())]
    # Keep each slice in its own volume (same index), so it is undersampled with its volume's mask.
    out = []
    for vi, v in enumerate(train_volumes):
        rows = [si for (vj, si) in picks if vj == vi]
        out.append(v.slices(rows if rows else slice(0, 0)))
    return out


def sweep_lambda(
    method: str,
    train_volumes,
    mask_cfg,
    grid=LAMBDA_GRID,
    iters: int = DEFAULT_ITERS,
    n_slices: int = SWEEP_SLICES,
    tuned_on: str = "training split",
) -> BaselineSetting:
    """Choose λ for ``method`` by mean PSNR on ``n_slices`` training slices (never evaluation slices).

    Args:
        method: ``tv`` or ``l1wavelet``.
        train_volumes: the run's training volumes (``Volume`` list).
        mask_cfg: ``MaskConfig``; training volume i uses the mask seed ``mask_cfg.seed + i``.
        grid: candidate λ values; a single value is used without sweeping.
        iters: solver iterations.

    Returns:
        :class:`BaselineSetting` with the grid and the mean PSNR of each candidate.
    """
    from kerasrecon.data.slices import evaluation_slices
    from kerasrecon.kspace import per_slice
    from kerasrecon.metrics import psnr

    grid = [float(g) for g in grid]
    if not grid or min(grid) <= 0:
        raise ConfigError(f"{arg('baseline_lambdas')} must be positive numbers. Received: {grid}")
    if len(grid) == 1:
        return BaselineSetting(method, grid[0], iters, grid, [], f"fixed by {arg('baseline_lambdas')}")
    items = [ev for ev in evaluation_slices(sweep_slices(train_volumes, n_slices), mask_cfg) if ev["target"].shape[0]]
    scores = []
    for lam in grid:
        vals = []
        for ev in items:
            pred = np.abs(solve(method, ev["masked_kspace"], ev["mask"].array, lam, iters, ev["maps"]))
            pred /= per_slice(ev["scale"], 3)
            vals += [psnr(t, p, float(t.max())) for t, p in zip(ev["target"], pred)]
        scores.append(float(np.mean(vals)))
    n = sum(ev["target"].shape[0] for ev in items)
    best = grid[int(np.argmax(scores))]
    return BaselineSetting(method, best, iters, grid, scores, f"swept on {n} slices of the {tuned_on}")


def baseline_fns(
    names,
    train_volumes,
    mask_cfg,
    grid=LAMBDA_GRID,
    iters: int = DEFAULT_ITERS,
    tuned_on: str = "training split",
    progress=None,
):
    """Recon functions and settings for the requested baselines.

    Args:
        names: subset of ``BASELINES`` (``zero_filled`` needs nothing: evaluate always scores it).
        train_volumes: the run's training volumes (for the λ sweep).

    Returns:
        ``(fns {name: evaluate.ReconFn}, settings {name: dict})``.
    """
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ConfigError(f"{arg('baselines')}: unknown {unknown}; expected any of {BASELINES}")
    solvers = [n for n in dict.fromkeys(names) if n in SOLVERS]
    if solvers:
        require_sigpy()
    fns, settings = {}, {}
    for name in solvers:
        t0 = time.perf_counter()
        setting = sweep_lambda(name, train_volumes, mask_cfg, grid, iters, tuned_on=tuned_on)
        if progress:
            progress(f"{name}: λ = {setting.lam:g} ({setting.tuned_on}, {time.perf_counter() - t0:.0f} s)")
        fns[name] = recon_fn(name, setting.lam, setting.iters)
        settings[name] = setting.to_dict()
    return fns, settings
