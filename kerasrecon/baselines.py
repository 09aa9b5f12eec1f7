"""Classical compressed-sensing baselines on exactly the k-space the models see, solved to convergence.

Methods (``BASELINES``):

* ``zero_filled`` — ``|F^H (M ⊙ s0)|`` (always scored by ``evaluate``; listed here for the CLI);
* ``tv`` — ``argmin_x ½‖M F S x − y‖² + λ‖∇x‖₁`` (anisotropic, periodic finite differences, as
  ``sigpy.mri.app.TotalVariationRecon``). Single coil: ADMM (:func:`tv_admm`), whose x-update is exact
  in k-space because ``Fᴴ M F`` and the periodic ``∇ᴴ∇`` are both diagonal there; multi-coil (SENSE-TV):
  sigpy's primal-dual solver;
* ``l1wavelet`` — ``argmin_x ½‖M F S x − y‖² + λ‖Ψx‖₁`` with Daubechies-4 wavelets
  (``sigpy.mri.app.L1WaveletRecon``, FISTA).

Every solver stops by one rule: the relative change of the iterate over ``CHECK_EVERY`` iterations,
``‖x_k − x_{k−10}‖ / ‖x_k‖``, falls below ``tol`` (default: ``DEFAULT_TOLS`` per solver), or the cap
``max_iter`` is reached.
The default was chosen on the demo slices at R = 4 and 8 (λ 1e-3 and 1e-2): running on to a tolerance
100× smaller changes PSNR by < 0.05 dB (TV) — where sigpy's TV at the 100 iterations used before was
up to 14 dB short of its own solution. The iterations used and the seconds per slice are recorded
with every table.

All solve with sigpy's/kerasrecon's centred orthonormal FFT (tested equal). They run on the
*normalised* masked k-space (zero-filled maximum 1, the models' input scale), so one λ fits images of
any intensity; outputs are scaled back.

λ is never tuned on evaluation slices: :func:`sweep_lambda` picks it by mean PSNR over a few slices
of the run's *training* split, with their own masks and the same stopping rule, and the chosen λ, the
grid, the iterations and the seconds per slice are written beside every table. sigpy is an optional
extra (L1-wavelet and SENSE-TV): ``pip install 'kerasrecon[baselines]'``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from kerasrecon.errors import ConfigError, DataError, arg
from kerasrecon.kspace import check_kspace, normalise_np, sense_adjoint_np

BASELINES = ("zero_filled", "tv", "l1wavelet")
SOLVERS = ("tv", "l1wavelet")
# λ relative to normalised k-space (zero-filled image maximum = 1); the sweep's default grid.
LAMBDA_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
DEFAULT_ITERS = 5000  # the cap of the stopping rule, not a fixed count
# The stopping rule's tolerance per solver: relative change of the iterate over CHECK_EVERY iterations.
# FISTA (l1wavelet) oscillates at ~2e-5 long after its PSNR has settled; PDHG (multi-coil tv) needs 1e-5.
DEFAULT_TOLS = {"tv": 1e-5, "l1wavelet": 1e-4}


def default_tol(method: str) -> float:
    """The stopping rule's default tolerance for ``method`` (``DEFAULT_TOLS``)."""
    return DEFAULT_TOLS[method]


CHECK_EVERY = 10
SWEEP_SLICES = 4


def _grad(x: np.ndarray) -> np.ndarray:
    """Periodic forward differences of ``x [H, W]``: ``[2, H, W]`` = (x − x shifted down, x − x shifted right)."""
    return np.stack([x - np.roll(x, 1, 0), x - np.roll(x, 1, 1)])


def _grad_adjoint(v: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`_grad`: ``[2, H, W]`` -> ``[H, W]``."""
    return (v[0] - np.roll(v[0], -1, 0)) + (v[1] - np.roll(v[1], -1, 1))


def tv_admm(
    masked_kspace: np.ndarray,
    mask: np.ndarray,
    lam: float,
    tol: float = DEFAULT_TOLS["tv"],
    max_iter: int = DEFAULT_ITERS,
) -> tuple[np.ndarray, int]:
    """Single-coil TV by ADMM with an exact x-update: ``argmin_x ½‖M F x − y‖² + λ Σ|∇x|``.

    Splitting ``z = ∇x`` (scaled dual ``u``, penalty ρ adapted by residual balancing), the x-update
    ``(Fᴴ M F + ρ ∇ᴴ∇) x = Fᴴ y + ρ ∇ᴴ(z − u)`` is a division in centred k-space: ``M`` is diagonal
    there, and the periodic differences have eigenvalues ``2 − 2cos(2πk/N)`` per axis (``fftshift``ed
    to the centred layout). ``z`` is the complex soft threshold of ``∇x + u`` at ``λ/ρ``.

    Args:
        masked_kspace: complex ``[H, W]`` measured samples (zeros elsewhere), centred orthonormal.
        mask: ``[H, W]`` of 0/1.
        lam: λ > 0; tol, max_iter: the stopping rule (module docstring).

    Returns:
        ``(image complex64 [H, W], iterations used)``.
    """
    from kerasrecon.kspace import fft2c_np, ifft2c_np

    h, w = masked_kspace.shape
    y = masked_kspace.astype(np.complex64)
    mask = mask.astype(np.float32)
    lap = (
        np.fft.fftshift(2 - 2 * np.cos(2 * np.pi * np.arange(h) / h))[:, None]
        + np.fft.fftshift(2 - 2 * np.cos(2 * np.pi * np.arange(w) / w))[None, :]
    ).astype(np.float32)
    rho = 1.0
    x = ifft2c_np(y)
    z = _grad(x)
    u = np.zeros_like(z)
    previous = x
    for it in range(1, max_iter + 1):
        x = ifft2c_np((y + rho * fft2c_np(_grad_adjoint(z - u))) / (mask + rho * lap + 1e-12))
        gx = _grad(x)
        v = gx + u
        z_old = z
        z = v * np.maximum(0, 1 - (lam / rho) / np.maximum(np.abs(v), 1e-30))
        u = v - z
        primal, dual = np.linalg.norm(gx - z), rho * np.linalg.norm(_grad_adjoint(z - z_old))
        if primal > 10 * dual:  # residual balancing (Boyd et al. 2011, §3.4.1)
            rho, u = rho * 2, u / 2
        elif dual > 10 * primal:
            rho, u = rho / 2, u * 2
        if it % CHECK_EVERY == 0:
            change = np.linalg.norm(x - previous) / max(np.linalg.norm(x), 1e-30)
            previous = x
            if change < tol:
                return x.astype(np.complex64), it
    return x.astype(np.complex64), max_iter


def _run_to_tolerance(solver, tol: float, max_iter: int):
    """Run a sigpy ``App`` built with a large ``max_iter`` under the stopping rule; returns
    ``(its iterate, iterations used)``."""
    previous = solver.x.copy()
    for it in range(1, max_iter + 1):
        solver.alg.update()
        if it % CHECK_EVERY == 0:
            change = float(np.linalg.norm(solver.x - previous) / max(float(np.linalg.norm(solver.x)), 1e-30))
            previous = solver.x.copy()
            if change < tol:
                return solver.x, it
    return solver.x, max_iter


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
    tol: float | None = None,
    return_iterations: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Reconstruct slices with a CS solver (SENSE-CS with ``maps``), each run to the stopping rule.

    Each slice is solved at the models' input scale — its k-space scaled so that the zero-filled
    (multi-coil: SENSE-combined) image peaks at 1 — and the result scaled back, so ``lam`` does not
    depend on the data's intensity and is the λ that ``evaluate``/``compare`` print and sweep.

    Args:
        method: ``tv`` or ``l1wavelet``.
        masked_kspace: complex ``[S, H, W]`` or ``[H, W]`` (zeros where not sampled), centred
            orthonormal convention; multi-coil ``[S, C, H, W]`` with ``maps``.
        mask: ``[H, W]`` or ``[S, H, W]`` of 0/1.
        lam: regularisation weight λ (> 0) for the normalised slice.
        iters: the most iterations per slice (the rule's cap).
        maps: coil sensitivities complex ``[S, C, H, W]`` (multi-coil), or ``None``.
        tol: the rule's tolerance on the relative change of the iterate over ``CHECK_EVERY`` iterations
            (``None``: the method's ``DEFAULT_TOLS`` entry; 0: run ``iters`` iterations).
        return_iterations: also return the iterations each slice used.

    Returns:
        complex64 ``[S, H, W]`` images (``[H, W]`` for ``[H, W]`` input) at the input's scale; with
        ``return_iterations``, ``(images, int [S])``.
    """
    if method not in SOLVERS:
        raise ConfigError(f"{arg('baselines')}: unknown solver {method!r}; expected one of {SOLVERS}")
    if not (isinstance(lam, (int, float, np.floating)) and np.isfinite(lam) and lam > 0):
        raise ConfigError(f"{arg('baseline_lambdas')} must be finite numbers > 0. Received: {lam!r}")
    if not isinstance(iters, (int, np.integer)) or isinstance(iters, bool) or iters < 1:
        raise ConfigError(f"{arg('baseline_iters')} must be an integer >= 1. Received: {iters!r}")
    tol = default_tol(method) if tol is None else tol
    if not (isinstance(tol, (int, float, np.floating)) and np.isfinite(tol) and tol >= 0):
        raise ConfigError(f"{arg('baseline_tol')} must be a finite number >= 0. Received: {tol!r}")
    masked_kspace = np.asarray(masked_kspace)
    if maps is None and masked_kspace.ndim == 2:  # one slice
        out = solve(method, masked_kspace[None], mask, lam, iters, None, tol, return_iterations)
        return (out[0][0], out[1]) if return_iterations else out[0]
    rank = 3 if maps is None else 4
    if masked_kspace.ndim != rank or 0 in masked_kspace.shape or min(masked_kspace.shape[-2:]) < 2:
        raise DataError(
            f"masked_kspace: expected complex {'[S, H, W]' if maps is None else '[S, C, H, W] (with maps)'} "
            f"with S, C >= 1 and H, W >= 2. Received: shape={masked_kspace.shape}"
        )
    check_kspace(masked_kspace, name="masked_kspace")
    single = maps is None
    if single:
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
    out, used = np.empty((s, h, w), np.complex64), np.zeros(s, np.int64)
    for i in range(s):
        y = masked_kspace[i] * masks[i]
        scale = normalise_np(sense_adjoint_np(y[None], maps[i][None], masks[i]))[1][0]
        y = (y * scale).astype(np.complex64)
        if method == "tv" and single:
            x, used[i] = tv_admm(y[0], masks[i], float(lam), tol, iters)
            out[i] = x / scale
            continue
        sp = require_sigpy()
        from sigpy.mri import app

        solver = (app.TotalVariationRecon if method == "tv" else app.L1WaveletRecon)(
            y,
            np.asarray(maps[i], np.complex64),
            lam,
            weights=masks[i],
            max_iter=iters + 1,
            show_pbar=False,
            device=sp.cpu_device,
        )
        x, used[i] = _run_to_tolerance(solver, tol, iters)
        out[i] = x / scale
    return (out, used) if return_iterations else out


def recon_fn(method: str, lam: float, iters: int = DEFAULT_ITERS, tol: float | None = None):
    """``solve`` in evaluate's one signature (``evaluate.ReconFn``).

    The returned ``fn(kspace, mask, batch_size=..., maps=None)`` takes k-space complex ``[B, H, W]``
    (multi-coil ``[B, C, H, W]`` with ``maps`` ``[B, C, H, W]``: SENSE-TV/L1) at any scale and mask
    ``[B, H, W]`` and solves (``solve`` masks and normalises each slice, so λ means the same for every
    image, as for the models), and returns the magnitude float32 ``[B, H, W]`` at the input's scale.
    ``fn.iterations`` lists the iterations each solved slice used.
    """

    def fn(kspace, mask, batch_size=None, maps=None):
        out, used = solve(method, np.asarray(kspace), np.asarray(mask), lam, iters, maps, tol, return_iterations=True)
        fn.iterations.extend(int(n) for n in used)
        return np.abs(out).astype(np.float32)

    fn.iterations = []
    return fn


@dataclass
class BaselineSetting:
    """The λ chosen for one solver and how: recorded with every results table."""

    method: str
    lam: float
    iters: int  # the stopping rule's cap
    grid: list = field(default_factory=list)
    sweep_psnr: list = field(default_factory=list)
    tuned_on: str = ""
    tol: float | None = None

    @property
    def at_grid_edge(self) -> bool:
        """The swept λ is the grid's smallest or largest value: the best λ may lie outside the grid."""
        return len(self.sweep_psnr) > 1 and self.lam in (min(self.grid), max(self.grid))

    def to_dict(self) -> dict:
        """Plain dict (JSON), with ``at_grid_edge``."""
        return {**asdict(self), "at_grid_edge": self.at_grid_edge}


def sweep_slices(train_volumes, n: int = SWEEP_SLICES):
    """Up to ``n`` training slices, evenly spaced over all training volumes: a list of ``Volume``."""
    index = [(vi, si) for vi, v in enumerate(train_volumes) for si in range(len(v))]
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
    tol: float | None = None,
    progress=None,
) -> BaselineSetting:
    """Choose λ for ``method`` by mean PSNR on ``n_slices`` training slices (never evaluation slices).

    Args:
        method: ``tv`` or ``l1wavelet``.
        train_volumes: the run's training volumes (``Volume`` list).
        mask_cfg: ``MaskConfig``; training volume i uses the mask seed ``mask_cfg.seed + i``.
        grid: candidate λ values; a single value is used without sweeping.
        iters, tol: the stopping rule (cap and tolerance), the same as for the evaluated slices.
        progress: optional callable for a one-line message after each candidate λ.

    Returns:
        :class:`BaselineSetting` with the grid and the mean PSNR of each candidate.
    """
    from kerasrecon.data.slices import evaluation_slices
    from kerasrecon.kspace import per_slice
    from kerasrecon.metrics import psnr

    grid = [float(g) for g in grid]
    tol = default_tol(method) if tol is None else tol
    if not grid or min(grid) <= 0:
        raise ConfigError(f"{arg('baseline_lambdas')} must be positive numbers. Received: {grid}")
    if len(grid) == 1:
        return BaselineSetting(method, grid[0], iters, grid, [], f"fixed by {arg('baseline_lambdas')}", tol)
    items = [ev for ev in evaluation_slices(sweep_slices(train_volumes, n_slices), mask_cfg) if ev["target"].shape[0]]
    scores, t0 = [], time.perf_counter()
    for i, lam in enumerate(grid):
        vals = []
        for ev in items:
            pred = np.abs(solve(method, ev["masked_kspace"], ev["mask"].array, lam, iters, ev["maps"], tol))
            pred /= per_slice(ev["scale"], 3)
            vals += [psnr(t, p, float(t.max())) for t, p in zip(ev["target"], pred)]
        scores.append(float(np.mean(vals)))
        if progress:
            progress(
                f"{method}: λ {lam:g} {scores[-1]:.2f} dB ({i + 1}/{len(grid)} of the sweep, "
                f"{time.perf_counter() - t0:.0f} s)"
            )
    n = sum(ev["target"].shape[0] for ev in items)
    best = grid[int(np.argmax(scores))]
    return BaselineSetting(method, best, iters, grid, scores, f"swept on {n} slices of the {tuned_on}", tol)


def baseline_fns(
    names,
    train_volumes,
    mask_cfg,
    grid=LAMBDA_GRID,
    iters: int = DEFAULT_ITERS,
    tuned_on: str = "training split",
    progress=None,
    tol: float | None = None,
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
    if "l1wavelet" in solvers or ("tv" in solvers and any(v.multicoil for v in train_volumes)):
        require_sigpy()  # single-coil TV is kerasrecon's own ADMM
    fns, settings = {}, {}
    for name in solvers:
        t0 = time.perf_counter()
        setting = sweep_lambda(
            name, train_volumes, mask_cfg, grid, iters, tuned_on=tuned_on, tol=tol, progress=progress
        )
        if progress:
            edge = f"; at the edge of the grid, widen {arg('baseline_lambdas')}" if setting.at_grid_edge else ""
            progress(f"{name}: λ = {setting.lam:g} ({setting.tuned_on}, {time.perf_counter() - t0:.0f} s{edge})")
        fns[name] = recon_fn(name, setting.lam, setting.iters, setting.tol)
        settings[name] = setting.to_dict()
    return fns, settings


def record_iterations(fns: dict, settings: dict) -> dict:
    """Add to each solver's ``settings`` entry the iterations its slices used (``iterations_used``:
    min, mean, max over the slices ``fns[name]`` solved since it was made). Returns ``settings``."""
    for name, fn in fns.items():
        used = getattr(fn, "iterations", None)
        if used and name in settings:
            settings[name]["iterations_used"] = {
                "min": int(min(used)),
                "mean": round(float(np.mean(used)), 1),
                "max": int(max(used)),
                "slices": len(used),
            }
    return settings


def cached_tv(lam: float, cache: dict | None = None):
    """``(tv_of, tv)``: ``tv_of(masked_kspace, mask)`` the complex converged TV image (:func:`solve`;
    complex ``[S, H, W]``, mask 0/1 ``[S, H, W]`` or ``[H, W]``), solved once per input and kept in
    ``cache`` (pass one dict to share solves between calls); ``tv`` its magnitude, float32
    ``[S, H, W]``, in ``kerasrecon.evaluate``'s ReconFn signature."""
    cache = {} if cache is None else cache

    def tv_of(kspace, mask):
        key = (kspace.shape, float(np.abs(kspace).sum()), float(np.asarray(mask).sum()))
        if key not in cache:
            cache[key] = solve("tv", kspace, mask, lam)
        return cache[key]

    def tv(kspace, mask, batch_size=None, maps=None):
        return np.abs(tv_of(np.asarray(kspace), np.asarray(mask))).astype(np.float32)

    return tv_of, tv
