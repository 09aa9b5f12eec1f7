"""Seeded k-space sampling masks.

Every mask class is a callable ``MaskClass(acceleration=R, ...)(shape=(H, W), seed=s)`` returning a
:class:`Mask`: the ``[H, W]`` float32 {0, 1} array plus its identity (kind, R requested/achieved,
seed, shape, sha256 of the bits), which travels with every result row. No global RNG is touched:
each call builds ``np.random.default_rng(seed)``.

Kinds:

* ``poisson`` — 2-D variable-density Poisson-disc sampling with a fully sampled calibration centre.
  Samples are placed by random sequential adsorption on the grid (a point is accepted when no accepted
  point lies within its exclusion radius), the radius growing linearly with distance from the centre.
  The radius scale is solved so that the sample count reaches ``round(H·W / R)``; the few surplus
  points are then dropped at random, so the achieved acceleration equals R to within one sample.
* ``random`` — 1-D Cartesian: fully sampled centre (``center_fraction`` of the columns) plus columns
  drawn at random without replacement, exactly ``round(W / R)`` columns in all (fastMRI's
  ``RandomMaskFunc`` with an exact count).
* ``equispaced`` — 1-D Cartesian: centre plus columns evenly spaced outside it, from a seeded offset,
  so that the *total* sampled fraction is 1/R — the behaviour of fastMRI's
  ``EquispacedMaskFractionFunc`` (its ``EquispacedMaskFunc`` instead spaces lines exactly R apart,
  which with the centre samples more than 1/R).

Lines run along the first image axis (H): the sampled phase-encode columns are chosen in W.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kerasrecon.errors import ConfigError, arg

MASK_KINDS = ("poisson", "random", "equispaced")
CALIB_FRACTION = 0.05  # side of the fully sampled Poisson calibration square, as a fraction of H, W
CENTER_FRACTION = 0.08  # fastMRI's default fully sampled centre for 4x line masks
VD_SLOPE = 2.0  # exclusion radius grows as r0 * (1 + VD_SLOPE * normalised radius)
_MAX_SOLVER_ITERS = 40
_RSA_CHUNK = 512  # points of the visiting order screened at once by random sequential adsorption
MAX_SIDE = 4096  # larger than any MR k-space matrix; stops a typo from allocating tens of GiB


@dataclass(frozen=True)
class Mask:
    """A sampling mask with its identity.

    Attributes:
        array: float32 ``[H, W]`` with values in {0, 1}.
        kind: one of ``MASK_KINDS``.
        acceleration: requested R.
        seed: the seed it was drawn with.
        center_fraction: the fully sampled centre it was drawn with (lines: fraction of columns;
            Poisson: side of the calibration square as a fraction of H, W).
    """

    array: np.ndarray
    kind: str
    acceleration: float
    seed: int
    center_fraction: float | None = None

    @property
    def achieved_acceleration(self) -> float:
        """``H·W / number of samples``."""
        return float(self.array.size / max(int(self.array.sum()), 1))

    @property
    def sha256(self) -> str:
        """sha256 of the mask bits (row-major uint8), the shape prefixed."""
        return mask_hash(self.array)

    @property
    def id(self) -> dict:
        """The mask's identity: kind, R requested/achieved, seed, centre fraction, shape, sha256."""
        return {
            "mask_kind": self.kind,
            "acceleration": float(self.acceleration),
            "center_fraction": self.center_fraction,
            "achieved_acceleration": round(self.achieved_acceleration, 4),
            "mask_seed": int(self.seed),
            "mask_shape": list(self.array.shape),
            "mask_sha256": self.sha256,
        }


def mask_hash(array: np.ndarray) -> str:
    """sha256 hex digest of a mask ``[H, W]`` (shape prefixed, then the bits as uint8)."""
    bits = (np.asarray(array) > 0.5).astype(np.uint8)
    h = hashlib.sha256(f"{bits.shape}".encode())
    h.update(np.ascontiguousarray(bits).tobytes())
    return h.hexdigest()


def _check(acceleration, shape, seed):
    if not isinstance(acceleration, (int, float)) or not math.isfinite(acceleration) or acceleration < 1:
        raise ConfigError(f"acceleration must be a number >= 1. Received: acceleration={acceleration!r}")
    if len(shape) != 2 or any(int(s) < 2 for s in shape):
        raise ConfigError(f"mask shape must be (H, W) with H, W >= 2. Received: shape={tuple(shape)}")
    if any(int(s) > MAX_SIDE for s in shape):
        raise ConfigError(f"mask shape must be (H, W) with H, W <= {MAX_SIDE}. Received: shape={tuple(shape)}")
    if seed is None or int(seed) < 0:
        raise ConfigError(f"mask seed must be an integer >= 0. Received: seed={seed!r}")
    return (int(shape[0]), int(shape[1]))


class PoissonMask:
    """2-D variable-density Poisson-disc mask with a fully sampled calibration centre.

    Args:
        acceleration: float, R >= 1 (samples = round(H·W / R)).
        calib_fraction: float, side of the centre square as a fraction of (H, W). Default 0.05.
        vd_slope: float, variable-density strength; 0 gives uniform Poisson-disc. Default 2.0.

    Example:
        >>> m = PoissonMask(acceleration=6)(shape=(444, 448), seed=7)
        >>> round(m.achieved_acceleration, 2)
        6.0
    """

    kind = "poisson"

    def __init__(self, acceleration: float, calib_fraction: float = CALIB_FRACTION, vd_slope: float = VD_SLOPE):
        if not 0 <= calib_fraction < 1:
            raise ConfigError(f"calib_fraction must be in [0, 1). Received: calib_fraction={calib_fraction}")
        self.acceleration = acceleration
        self.calib_fraction = calib_fraction
        self.vd_slope = vd_slope

    def __call__(self, shape, seed: int) -> Mask:
        """Draw the mask. shape: (H, W); seed: int >= 0. Returns a :class:`Mask`."""
        h, w = _check(self.acceleration, shape, seed)
        target = int(round(h * w / self.acceleration))
        calib = _centre_box(h, w, self.calib_fraction)
        if abs(h * w / max(target, 1) - self.acceleration) > 0.01 * self.acceleration:
            raise ConfigError(
                f"acceleration {self.acceleration} is too high for shape {(h, w)}: {target} samples cannot "
                f"reach R within 1 % (achievable R = {h * w / max(target, 1):.3f})"
            )
        if calib.sum() > target:
            raise ConfigError(
                f"acceleration {self.acceleration} is too high for shape {(h, w)}: the calibration centre "
                f"alone has {int(calib.sum())} samples, more than the {target} allowed"
            )
        rng = np.random.default_rng(seed)
        order = rng.permutation(h * w)
        rho = _normalised_radius(h, w)
        bits, radius = _solve_radius(h, w, order, rho, calib, target, self.vd_slope)
        surplus = int(bits.sum()) - target
        if surplus > 0:
            # Drop the surplus at random where disc spacing is active (radius >= 1 px), so the fully
            # sampled centre keeps no holes; fall back to any non-calibration sample.
            spaced = bits & ~calib & (radius >= 1.0)
            pool = spaced if spaced.sum() >= surplus else bits & ~calib
            candidates = np.flatnonzero(pool.ravel())
            drop = rng.choice(candidates, size=surplus, replace=False)
            flat = bits.ravel()
            flat[drop] = False
            bits = flat.reshape(h, w)
        return Mask(bits.astype(np.float32), self.kind, float(self.acceleration), int(seed), float(self.calib_fraction))


def _centre_box(h, w, fraction):
    box = np.zeros((h, w), dtype=bool)
    ch, cw = (
        max(int(round(h * fraction)), 1 if fraction > 0 else 0),
        max(int(round(w * fraction)), 1 if fraction > 0 else 0),
    )
    if ch and cw:
        box[h // 2 - ch // 2 : h // 2 - ch // 2 + ch, w // 2 - cw // 2 : w // 2 - cw // 2 + cw] = True
    return box


def _normalised_radius(h, w):
    """Distance from the DC sample, 1.0 at the middle of each edge. float64 [H, W]."""
    ky = (np.arange(h) - h // 2) / (h / 2)
    kx = (np.arange(w) - w // 2) / (w / 2)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def _rsa(h, w, order, radius, calib):
    """Random sequential adsorption on the grid: visit points in ``order``, accept a point unless an
    accepted point's exclusion disc covers it. Returns bool [H, W].

    The visit runs in chunks of ``order``: the points of a chunk already covered when the chunk starts
    are skipped at once (covering only grows), and the rest are visited one by one as before, so the
    result is the same as the point-by-point visit."""
    rmax = int(math.ceil(radius.max()))
    pad = rmax + 1
    pw = w + 2 * pad
    blocked = np.zeros((h + 2 * pad) * pw, dtype=bool)
    # Offsets (flat, in the padded grid) of discs for each integer-quantised radius.
    discs = {}
    accepted = calib.ravel().copy()
    r_flat = radius.ravel()
    for idx in np.flatnonzero(accepted):
        _block(blocked, _padded(idx, w, pw, pad), pw, r_flat[idx], discs)
    order = np.asarray(order)
    where = _padded(order, w, pw, pad)  # each visited point's index in the padded grid
    for start in range(0, order.size, _RSA_CHUNK):
        chunk, at = order[start : start + _RSA_CHUNK], where[start : start + _RSA_CHUNK]
        open_ = ~accepted[chunk] & ~blocked[at]
        for idx, p in zip(chunk[open_].tolist(), at[open_].tolist()):
            if blocked[p]:  # covered by a point accepted earlier in this chunk
                continue
            accepted[idx] = True
            _block(blocked, p, pw, r_flat[idx], discs)
    return accepted.reshape(h, w)


def _padded(idx, w, pw, pad):
    """Flat index in the padded grid (``pad`` cells on each side, row length ``pw``) of the flat grid
    index ``idx`` (int or int array)."""
    y, x = np.divmod(idx, w)
    return (y + pad) * pw + x + pad


def _block(blocked, p, pw, r, discs):
    """Cover the exclusion disc of radius ``r`` (quantised to 1/4 pixel, so disc offsets are reused)
    around padded index ``p``."""
    key = round(float(r) * 4) / 4
    offs = discs.get(key)
    if offs is None:
        ri = int(math.ceil(key))
        dy, dx = np.mgrid[-ri : ri + 1, -ri : ri + 1]
        keep = (dy**2 + dx**2) < key**2
        offs = (dy[keep] * pw + dx[keep]).astype(np.int64)
        discs[key] = offs
    blocked[p + offs] = True


def _solve_radius(h, w, order, rho, calib, target, vd_slope):
    """Find a radius scale r0 whose RSA mask has between target and 1.03·target samples.

    Returns (bits bool [H, W], exclusion radius float [H, W])."""
    shape_r = 1.0 + vd_slope * rho
    # Disc packing: roughly one sample per ~0.8·r² pixels; start there and refine.
    r0 = math.sqrt(h * w / target / 0.8) / float(np.mean(shape_r))
    lo, hi = 0.0, None  # lo: r0 known to give >= target; hi: r0 known to give < target
    best = None
    for _ in range(_MAX_SOLVER_ITERS):
        bits = _rsa(h, w, order, r0 * shape_r, calib)
        n = int(bits.sum())
        if n >= target:
            if best is None or n < best[0].sum():
                best = (bits, r0 * shape_r)
            if n <= 1.03 * target:
                return bits, r0 * shape_r
            lo = max(lo, r0)
        else:
            hi = r0 if hi is None else min(hi, r0)
        step = r0 * math.sqrt(n / (1.015 * target))  # count ~ r0^-2
        if hi is not None and not lo < step < hi:
            step = math.sqrt(max(lo, 1e-3) * hi) if lo > 0 else hi / 1.5
        r0 = step
    if best is None:
        raise ConfigError(f"could not reach {target} Poisson samples for shape {(h, w)}")
    return best


class RandomLineMask:
    """1-D Cartesian mask: centre columns plus random columns, exactly round(W / R) columns.

    Args:
        acceleration: float, R >= 1.
        center_fraction: float, fully sampled central fraction of the W columns. Default 0.08.
    """

    kind = "random"

    def __init__(self, acceleration: float, center_fraction: float = CENTER_FRACTION):
        self.acceleration = acceleration
        self.center_fraction = center_fraction

    def _centre(self, w):
        n_low = int(round(w * self.center_fraction))
        cols = np.zeros(w, dtype=bool)
        start = (w - n_low + 1) // 2
        cols[start : start + n_low] = True
        return cols

    def __call__(self, shape, seed: int) -> Mask:
        """Draw the mask. shape: (H, W); seed: int >= 0. Returns a :class:`Mask` [H, W]."""
        h, w = _check(self.acceleration, shape, seed)
        cols = self._centre(w)
        target = int(round(w / self.acceleration))
        if cols.sum() > target:
            raise ConfigError(
                f"acceleration {self.acceleration} is too high for width {w} with "
                f"center_fraction={self.center_fraction}: {int(cols.sum())} centre columns > {target}"
            )
        rng = np.random.default_rng(seed)
        cols = self._select(cols, target, rng)
        return Mask(
            np.repeat(cols[None, :], h, axis=0).astype(np.float32),
            self.kind,
            float(self.acceleration),
            int(seed),
            float(self.center_fraction),
        )

    def _select(self, cols, target, rng):
        extra = rng.choice(np.flatnonzero(~cols), size=target - int(cols.sum()), replace=False)
        cols[extra] = True
        return cols


class EquispacedLineMask(RandomLineMask):
    """1-D Cartesian mask: the centre columns plus columns evenly spaced over the rest, starting at a
    seeded offset, with the total fraction 1/R (fastMRI's ``EquispacedMaskFractionFunc``; the spacing
    is ``(W − centre) / (W/R − centre)``, a little more than R)."""

    kind = "equispaced"

    def _select(self, cols, target, rng):
        w = cols.size
        offset = int(rng.integers(0, max(int(round(self.acceleration)), 1)))
        spacing = (w - cols.sum()) / max(target - cols.sum(), 1)
        outside = np.flatnonzero(~cols)
        picks = outside[(offset + np.arange(target - cols.sum()) * spacing).astype(int) % outside.size]
        cols[picks] = True
        return cols


MASK_CLASSES = {"poisson": PoissonMask, "random": RandomLineMask, "equispaced": EquispacedLineMask}


def resolved_center_fraction(kind: str, center_fraction: float | None = None) -> float:
    """The fully sampled centre a mask of ``kind`` is drawn with: ``center_fraction``, or the kind's
    default (``CALIB_FRACTION`` for Poisson's calibration square, ``CENTER_FRACTION`` for lines)."""
    if center_fraction is not None:
        return float(center_fraction)
    return CALIB_FRACTION if kind == "poisson" else CENTER_FRACTION


def make_mask(
    kind: str, acceleration: float, shape: tuple[int, int], seed: int, center_fraction: float | None = None
) -> Mask:
    """Draw a mask by kind name. Returns :class:`Mask` with ``array`` float32 ``[H, W]``.

    ``center_fraction``: the fully sampled centre (``None``: the kind's default, ``CENTER_FRACTION``
    for line masks, ``CALIB_FRACTION`` for Poisson's calibration square).

    The last masks drawn are kept by their arguments, so drawing the same mask again costs a copy;
    each call returns its own array.
    """
    if kind not in MASK_CLASSES:
        raise ConfigError(f"unknown mask kind {kind!r}; expected one of {', '.join(MASK_KINDS)}")
    if center_fraction is not None and not 0 <= center_fraction < 1:
        raise ConfigError(f"{arg('center_fraction')} must be in [0, 1). Received: {center_fraction}")
    fraction = resolved_center_fraction(kind, center_fraction)
    h, w = _check(acceleration, shape, seed)
    key = (kind, float(acceleration), h, w, int(seed), fraction)
    with _DRAWN_LOCK:
        mask = _DRAWN.get(key)
        if mask is not None:
            _DRAWN.move_to_end(key)
    if mask is None:
        if kind == "poisson":
            mask = PoissonMask(acceleration=acceleration, calib_fraction=fraction)(shape=(h, w), seed=seed)
        else:
            mask = MASK_CLASSES[kind](acceleration=acceleration, center_fraction=fraction)(shape=(h, w), seed=seed)
        with _DRAWN_LOCK:
            _DRAWN[key] = mask
            while len(_DRAWN) > _DRAWN_SIZE:
                _DRAWN.popitem(last=False)
    return replace(mask, array=mask.array.copy())  # the caller's own array: the one kept stays as drawn


# The masks make_mask drew last, by their arguments: a mask is a pure function of them, and drawing a
# 2-D Poisson mask takes ~0.1-0.5 s, which evaluate, compare and training would otherwise pay again for
# every model and dataset on the same grid. At most _DRAWN_SIZE masks (~0.8 MB each at 444 x 448).
_DRAWN: OrderedDict = OrderedDict()
_DRAWN_SIZE = 32
_DRAWN_LOCK = threading.Lock()


MASK_FILE_SUFFIXES = (".npy", ".png")


def check_mask_output(out, force: bool = False) -> Path:
    """Validate a mask file name before anything is drawn or written (suffix, output policy)."""
    from kerasrecon.io import check_output

    out = Path(out)
    if out.suffix.lower() not in MASK_FILE_SUFFIXES:
        raise ConfigError(f"{arg('out')} {out}: expected a .npy or .png file name")
    return check_output(out, arg("out"), force=force)


def save_mask(mask: Mask, out, force: bool = False):
    """Write ``mask.array`` to ``out`` through the output policy (:func:`kerasrecon.io.check_output`: no
    link, no overwrite without ``force``; temporary file, then rename, so a full disk leaves nothing
    under ``out``).

    Args:
        mask: the :class:`Mask`.
        out: ``.npy`` (float32 {0, 1} ``[H, W]``) or ``.png`` (uint8, white = sampled).
        force: replace an existing ``out``.
    """
    from kerasrecon.io import atomic_file

    out = check_mask_output(out, force)
    with atomic_file(out, "mask", option=arg("out")) as tmp:
        if out.suffix.lower() == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, mask.array.astype(np.float32))
        else:
            from skimage import io as skio

            skio.imsave(tmp, (mask.array * 255).astype("uint8"), check_contrast=False)  # tmp keeps the suffix
