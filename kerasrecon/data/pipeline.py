"""Input pipelines: normalise, mask, zero-fill, random patches, batch, prefetch. One recipe,
:func:`numpy_element` (NumPy), computes every training element; :func:`numpy_batches` runs it in a
thread pool (the JAX backend and any host without TensorFlow) and :func:`training_dataset` runs it
inside tf.data (``tf.numpy_function``, the TensorFlow backend), so both yield the same elements.

Training samples (deterministic given ``TrainConfig.seed``; element ``i`` is a pure function of
``(seed, i)``, so parallel maps and sharding never change the stream; the slice is drawn over the
whole dataset and read from disk when drawn — :class:`SamplingPlan` holds no data, so memory does
not grow with the dataset):

1. slice ``n``, crop offsets and (``per_sample``) mask index are drawn by :func:`element_indices`
   from ``numpy.random.default_rng([seed, i])`` — one function for both input paths;
2. the fully sampled complex slice is multiplied by its normalisation factor
   ``scale_n = 1 / max|zero_filled_n|`` (zero-filled under the volume's reference slice mask, a
   statistic known at inference time), and a ``patch × patch`` crop is taken (same crop for input
   and target);
3. ``sampling="patch"`` (the thesis): the crop is undersampled on its own grid:
   ``masked_kspace = M ⊙ fft2c(crop)``, ``zero_filled = ifft2c(masked_kspace)``, with a patch-shaped
   mask of the configured kind and R. This keeps the data-consistency layer exact during training,
   but the network only ever sees the aliasing of a p×p mask.
   ``sampling="slice"``: the whole slice is undersampled with a slice-shaped mask (the volume's
   reference mask, or one from a bank of slice-shaped masks with ``per_sample``) and the same window
   is cropped from ``zero_filled`` and the target: the network learns to undo the aliasing it meets
   at inference. A window's k-space is not the slice's, so DC cannot be exact on a crop: the mask and
   masked k-space fed are zeros (the DC layer is then the identity) unless the patch is the whole
   slice, where they are the slice's own and DC is exact. At evaluation and serving DC always runs
   on the whole slice.

Multi-coil volumes (``coil_kspace`` and ``maps`` ``[C, H, W]`` per slice; the target is the
SENSE-combined image): with ``sampling="patch"`` the window's coil images ``S_c[window] · crop`` are
measured on the p×p grid (``y_c = M ⊙ fft2c(S_c · crop)``) and the input is their SENSE-combined
zero-filled image ``Σ_c conj(S_c) ifft2c(y_c)``; with ``sampling="slice"`` it is the window of the
whole slice's SENSE-combined zero-filled image of the measured coils. Where DC is exact (patches, or
windows that are the whole slice) the elements carry the coils (``masked_kspace`` ``[C, p, p, 2]``
and ``maps`` ``[C, p, p, 2]``) and the generator is the multi-coil graph (same weights); otherwise
the single-coil format with zero mask (DC the identity).

Elements: ``({"zero_filled": [p, p, 2] f32, "masked_kspace": [p, p, 2] f32, "mask": [p, p] f32},
target [p, p, 1] f32 magnitude)``, batched to ``[B, ...]``; multi-coil with exact DC adds
``"maps": [C, p, p, 2] f32`` and ``masked_kspace`` is ``[C, p, p, 2]``.
"""

from __future__ import annotations

import numpy as np

from kerasrecon.config import TrainConfig
from kerasrecon.data import store
from kerasrecon.data.slices import reference_masks
from kerasrecon.data.volume import Volume
from kerasrecon.errors import ConfigError, DataError, arg
from kerasrecon.kspace import fft2c_np, ifft2c_np, measure_np, normalise_np, sense_adjoint_np, to_channels
from kerasrecon.masks import make_mask

PER_SAMPLE_SEED_OFFSET = 100_000  # per-sample bank masks never reuse a per-volume reference seed


def check_training_volumes(volumes, patch: int, sampling: str = "patch") -> list[tuple[int, int]]:
    """Raise unless the volumes are non-empty, every slice fits the patch and, with whole-slice
    sampling (``sampling="slice"``), all share one slice shape. Patches are measured on their own
    grid, so volumes of different matrix sizes (resolutions, fields of view) train together.
    Returns each volume's ``(H, W)``."""
    if not volumes or sum(len(v) for v in volumes) == 0:
        raise DataError("the training set is empty (no slices)")
    shapes = [tuple(int(n) for n in v.shape[1:]) for v in volumes]
    if sampling == "slice" and len(set(shapes)) > 1:
        raise DataError(
            f"training slices have different shapes {sorted(set(shapes))}; {arg('data.sampling')} slice needs one: "
            f"re-run 'kerasrecon data prepare' with --crop H W, or train with {arg('data.sampling')} patch"
        )
    for v, (h, w) in zip(volumes, shapes):
        if patch > min(h, w):
            raise ConfigError(f"{arg('data.patch_size')} {patch} is larger than the images of {v.name} ({h}×{w})")
    return shapes


class SamplingPlan:
    """What an element needs, without holding the data: the training volumes (read slice by slice on
    demand, :mod:`kerasrecon.data.store`), where each volume's slices start in the dataset's slice
    numbering, and the masks — bit-packed, one per volume (its reference mask, seed ``mask.seed +
    volume index``) or ``mask.bank_size`` of them with ``per_sample`` —, so memory grows by a few
    bytes per volume, not with the data. Each slice's normalisation factor is computed the first time
    the slice is drawn (from its zero-filled image under its volume's reference mask) and kept (4 bytes
    a slice).

    Per slice ``s`` of the dataset (``0 <= s < len(plan)``): :meth:`target` complex64 ``[H, W]`` (the
    fully sampled image scaled by its factor), :meth:`kspace` its k-space; multi-coil
    :meth:`coil_kspace` (scaled) and :meth:`maps` complex64 ``[C, H, W]``; :meth:`mask` float32
    ``[gh, gw]`` the bank's ``m``-th mask (slice- or patch-shaped), :meth:`mask_index` the bank index of
    slice ``s``'s reference mask.
    """

    def __init__(self, volumes: list[Volume], cfg: TrainConfig):
        self.p = cfg.data.patch_size
        self.shapes = check_training_volumes(volumes, self.p, cfg.data.sampling)  # (H, W) per volume
        self.h, self.w = self.shapes[0]  # the one slice shape of whole-slice sampling
        self.multicoil = check_coils(volumes)
        self.coils = volumes[0].coils
        self.seed = int(cfg.seed)
        self.volumes = list(volumes)
        self.offsets = np.concatenate([[0], np.cumsum([len(v) for v in volumes])]).astype(np.int64)
        self.per_sample = cfg.mask.per_sample
        self.whole_slice = cfg.data.sampling == "slice"
        self.augment = cfg.data.augment
        self.zoom = float(cfg.data.zoom)
        self.exact_dc = dc_is_exact(cfg, self.h, self.w)
        m = cfg.mask
        if m.per_sample:
            seeds = [m.seed + PER_SAMPLE_SEED_OFFSET + j for j in range(m.bank_size)]
        else:
            seeds = [m.seed + i for i in range(len(volumes))]
        self.grid = (self.h, self.w) if self.whole_slice else (self.p, self.p)
        self.bank = np.stack(
            [_packed(make_mask(m.kind, m.acceleration, self.grid, s, m.center_fraction)) for s in seeds]
        )
        if self.whole_slice and not m.per_sample:  # the bank is the reference masks
            self.references = self.bank
        else:
            self.references = [_packed(mask) for mask in reference_masks(volumes, m)]  # each at its volume's shape
        self.scales = np.full(len(self), np.nan, np.float32)
        self._token = object()  # this plan's key in the slice cache

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def coil_inputs(self) -> bool:
        """Whether elements carry the coils and maps (multi-coil data where DC is exact)."""
        return self.multicoil and self.exact_dc

    def locate(self, s: int) -> tuple[int, int]:
        """(volume index, slice within the volume) of dataset slice ``s``."""
        v = int(np.searchsorted(self.offsets, s, side="right")) - 1
        return v, int(s - self.offsets[v])

    def mask(self, m: int) -> np.ndarray:
        """The bank's ``m``-th mask, float32 ``[gh, gw]``."""
        return _unpacked(self.bank[m], self.grid)

    def mask_index(self, s: int) -> int:
        """The bank index of slice ``s``'s reference mask (its volume's)."""
        return self.locate(s)[0]

    def scale(self, s: int) -> np.float32:
        """Slice ``s``'s normalisation factor ``1 / max|zero_filled|`` (its volume's reference mask)."""
        value = self.scales[s]
        if np.isnan(value):
            v, r = self.locate(s)
            vol, ref = self.volumes[v], _unpacked(self.references[v], self.shapes[v])
            if self.multicoil:
                zero_filled = measure_np(vol.coil_kspace_at(r)[None], ref, vol.maps_at(r)[None])[1]
            else:
                zero_filled = measure_np(vol.kspace_at(r)[None], ref)[1]
            value = self.scales[s] = normalise_np(zero_filled.astype(np.complex64))[1][0]
        return value

    def target(self, s: int) -> np.ndarray:
        """Slice ``s``'s fully sampled image, scaled: complex64 ``[H, W]``, read-only (kept in the slice
        cache: a slice drawn again costs no FFT)."""
        key = (self._token, s)
        value = store.CACHE.get(key)
        if value is None:
            v, r = self.locate(s)
            value = (ifft2c_np(self.volumes[v].kspace_at(r)) * self.scale(s)).astype(np.complex64)
            store.CACHE.put(key, value)
        return value

    def kspace(self, s: int) -> np.ndarray:
        """Slice ``s``'s k-space, scaled: complex64 ``[H, W]``."""
        v, r = self.locate(s)
        return (self.volumes[v].kspace_at(r) * self.scale(s)).astype(np.complex64)

    def coil_kspace(self, s: int) -> np.ndarray:
        """Slice ``s``'s coil k-space, scaled: complex64 ``[C, H, W]`` (multi-coil data)."""
        v, r = self.locate(s)
        return (self.volumes[v].coil_kspace_at(r) * self.scale(s)).astype(np.complex64)

    def maps(self, s: int) -> np.ndarray:
        """Slice ``s``'s coil maps: complex64 ``[C, H, W]`` (multi-coil data)."""
        v, r = self.locate(s)
        return self.volumes[v].maps_at(r)


def _packed(mask) -> np.ndarray:
    """A mask (``Mask`` or ``[h, w]`` array of 0/1) as packed bits, uint8 ``[ceil(h·w / 8)]``."""
    return np.packbits(np.asarray(getattr(mask, "array", mask)).reshape(-1) > 0)


def _unpacked(bits: np.ndarray, shape) -> np.ndarray:
    """:func:`_packed`'s inverse: float32 ``shape``."""
    return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(np.float32)


def sampling_plan(volumes: list[Volume], cfg: TrainConfig) -> SamplingPlan:
    """The :class:`SamplingPlan` of ``cfg`` on ``volumes`` (checks the volumes first)."""
    return SamplingPlan(volumes, cfg)


def check_coils(volumes: list[Volume]) -> bool:
    """True for multi-coil training data; raises unless all volumes agree (single-coil, or multi-coil
    with one coil count)."""
    kinds = {v.coils if v.multicoil else 0 for v in volumes}
    if len(kinds) > 1:
        names = ", ".join(f"{k} coils" if k else "single-coil" for k in sorted(kinds))
        raise DataError(
            f"the training volumes mix coil counts ({names}); train on single-coil and multi-coil data separately"
        )
    return kinds != {0}


def dc_is_exact(cfg: TrainConfig, h: int, w: int) -> bool:
    """Whether DC is exact in training on ``h × w`` slices: patches on their own grid, or windows
    that are the whole slice (elsewhere the window's k-space is not the slice's)."""
    return cfg.data.sampling != "slice" or cfg.data.patch_size == h == w


def coil_inputs(volumes: list[Volume], cfg: TrainConfig) -> bool:
    """Whether the training elements of ``volumes`` under ``cfg`` carry coils and maps (multi-coil data
    with :func:`dc_is_exact`); the generator is then built with ``multicoil=True``."""
    return check_coils(volumes) and dc_is_exact(cfg, *volumes[0].shape[1:])


def element_indices(plan: SamplingPlan, i: int) -> np.ndarray:
    """Element ``i``'s draws, a pure function of ``(seed, i)``: int32 ``[4]`` = (slice, top, left, bank
    mask). Both input paths (tf.data and NumPy) call this one function, so they yield the same stream."""
    u = np.random.default_rng([plan.seed, int(i)]).random(4)
    n = len(plan)
    s = min(int(u[0] * n), n - 1)
    h, w = plan.shapes[plan.locate(s)[0]]  # the window lies in slice s's own volume
    top = min(int(u[1] * (h - plan.p + 1)), h - plan.p)
    left = min(int(u[2] * (w - plan.p + 1)), w - plan.p)
    m = min(int(u[3] * len(plan.bank)), len(plan.bank) - 1) if plan.per_sample else plan.mask_index(s)
    return np.array([s, top, left, m], np.int32)


def augmentation(plan: SamplingPlan, i: int) -> tuple[int, float]:
    """Element ``i``'s augmentation draw, a pure function of ``(seed, i)`` (a stream of its own, so the
    element's slice, window and mask are those of the un-augmented run): ``(t, phi)``, ``t`` in 0..7
    indexing :func:`turn`, ``phi`` the global phase in [0, 2π)."""
    u = np.random.default_rng([plan.seed, int(i), 1]).random(2)
    return min(int(u[0] * 8), 7), float(u[1] * 2 * np.pi)


def zoom_draw(plan: SamplingPlan, i: int) -> tuple[float, float, float]:
    """Element ``i``'s zoom draw, a pure function of ``(seed, i)`` (a stream of its own: the element's
    slice, window, mask and turn are those of the un-zoomed run): ``(z, dy, dx)``, ``z`` log-uniform in
    ``[1, plan.zoom]``, ``(dy, dx)`` the zoomed window's offset inside the p×p window, uniform in
    ``[0, (p - 1)(1 - 1/z)]``."""
    u = np.random.default_rng([plan.seed, int(i), 2]).random(3)
    z = float(plan.zoom ** u[0])
    room = (plan.p - 1) * (1 - 1 / z)
    return z, float(u[1] * room), float(u[2] * room)


def zoom_window(x: np.ndarray, p: int, z: float, y0: float, x0: float, order: int = 3) -> np.ndarray:
    """A p×p grid over the window of side p/z at ``(y0, x0)`` of ``x``: complex ``[..., H, W]`` ->
    complex64 ``[..., p, p]`` whose pixel ``(j, k)`` is the spline interpolation (``order``, real and
    imaginary parts apart, over the whole ``H × W`` plane) of ``x[..., y0 + j/z, x0 + k/z]``. The
    window must lie in the plane; ``z = 1`` at integer ``(y0, x0)`` is the crop."""
    from scipy import ndimage

    grid = np.arange(p) / z
    rows, cols = np.meshgrid(y0 + grid, x0 + grid, indexing="ij")

    def one(plane):
        return ndimage.map_coordinates(plane, [rows, cols], order=order, mode="nearest")

    flat = np.asarray(x).reshape(-1, *x.shape[-2:])
    out = np.stack([one(a.real.astype(np.float64)) + 1j * one(a.imag.astype(np.float64)) for a in flat])
    return out.reshape(*x.shape[:-2], p, p).astype(np.complex64)


def turn(x: np.ndarray, t: int) -> np.ndarray:
    """One of the 8 symmetries of the square on the last two axes of ``x`` ``[..., p, p]``: ``t % 4``
    quarter turns, then (``t >= 4``) a flip of the last axis."""
    x = np.rot90(x, t % 4, axes=(-2, -1))
    return np.ascontiguousarray(x[..., ::-1] if t >= 4 else x)


def numpy_element(plan: SamplingPlan, i: int):
    """Element ``i`` computed with NumPy: ``({"zero_filled": [p, p, 2], "masked_kspace": [p, p, 2],
    "mask": [p, p]}, target [p, p, 1])``, all float32 (the module docstring's recipe)."""
    s, top, left, m = (int(x) for x in element_indices(plan, i))
    p, mask = plan.p, plan.mask(m)
    window = (slice(top, top + p), slice(left, left + p))
    zoomed = plan.zoom != 1  # patch sampling only (checked with the config), as augment
    if zoomed:
        z, dy, dx = zoom_draw(plan, i)
        patch = zoom_window(plan.target(s), p, z, top + dy, left + dx)
    else:
        patch = plan.target(s)[window]
    if plan.augment:
        t, phi = augmentation(plan, i)
        patch = (turn(patch, t) * np.exp(1j * phi)).astype(np.complex64)
    if plan.multicoil:
        slice_maps = plan.maps(s)
        if zoomed:  # linear: maps stay 0 between pixels where they are 0
            maps = zoom_window(slice_maps, p, z, top + dy, left + dx, order=1)
        else:
            maps = slice_maps[(slice(None), *window)]
        if plan.augment:
            maps = turn(maps, t)
        if plan.whole_slice:  # the window of the slice's SENSE-combined zero-filled image
            masked = plan.coil_kspace(s) * mask
            zero_filled = sense_adjoint_np(masked[None], slice_maps[None], mask)[0][window]
        else:  # the window's coil images measured on the p×p grid
            masked = fft2c_np(maps * patch) * mask
            zero_filled = sense_adjoint_np(masked[None], maps[None], mask)[0]
        if plan.coil_inputs:
            inputs = {
                "zero_filled": to_channels(zero_filled),
                "masked_kspace": to_channels(masked),
                "mask": np.ascontiguousarray(mask, np.float32),
                "maps": to_channels(maps),
            }
            return inputs, np.abs(patch)[..., None].astype(np.float32)
        masked, mask = np.zeros((p, p), np.complex64), np.zeros((p, p), np.float32)  # DC the identity
    elif plan.whole_slice:
        masked = plan.kspace(s) * mask
        zero_filled = ifft2c_np(masked)[window]
        if not plan.exact_dc:
            masked, mask = np.zeros((p, p), np.complex64), np.zeros((p, p), np.float32)
    else:
        masked = fft2c_np(patch) * mask
        zero_filled = ifft2c_np(masked)
    inputs = {
        "zero_filled": to_channels(zero_filled),
        "masked_kspace": to_channels(masked.astype(np.complex64)),
        "mask": np.ascontiguousarray(mask, np.float32),
    }
    return inputs, np.abs(patch)[..., None].astype(np.float32)


def element_spec(plan: SamplingPlan):
    """The input keys of an element and their shapes: ``(keys, shapes)`` as in the module docstring."""
    p = plan.p
    if plan.coil_inputs:
        c = plan.coils
        return ("zero_filled", "masked_kspace", "mask", "maps"), ([p, p, 2], [c, p, p, 2], [p, p], [c, p, p, 2])
    return ("zero_filled", "masked_kspace", "mask"), ([p, p, 2], [p, p, 2], [p, p])


def numpy_batches(
    volumes: list[Volume],
    cfg: TrainConfig,
    batch_size: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    start: int = 0,
    workers: int = 4,
    prefetch: int = 4,
):
    """Infinite, deterministic stream of training batches without TensorFlow (the JAX backend's input).

    The same elements as :func:`training_dataset` for the same config and indices (tested): element
    ``start + shard_index + k·num_shards`` for k = 0, 1, ... A thread pool computes ``prefetch``
    batches ahead (NumPy's FFTs release the GIL).

    Yields:
        ``(inputs dict, target)`` of NumPy float32 arrays, batched: ``[B, p, p, 2]``, ``[B, p, p]``,
        ``[B, p, p, 1]``.
    """
    import collections
    from concurrent.futures import ThreadPoolExecutor

    plan = sampling_plan(volumes, cfg)
    b = batch_size or cfg.data.batch_size

    def make(k):
        first = start + shard_index + k * b * num_shards
        elements = [numpy_element(plan, first + j * num_shards) for j in range(b)]
        inputs = {key: np.stack([e[0][key] for e in elements]) for key in elements[0][0]}
        return inputs, np.stack([e[1] for e in elements])

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kerasrecon-input") as pool:
        queue = collections.deque(pool.submit(make, k) for k in range(prefetch))
        k = prefetch
        while True:
            batch = queue.popleft().result()
            queue.append(pool.submit(make, k))
            k += 1
            yield batch


def training_dataset(
    volumes: list[Volume],
    cfg: TrainConfig,
    batch_size: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    start: int = 0,
    failures: list | None = None,
):
    """Infinite, deterministic tf.data stream of training batches.

    Args:
        volumes: training volumes (one slice shape with whole-slice sampling; any shapes that fit
            the patch with patch sampling).
        cfg: the run's config (mask, data.patch_size, data.batch_size, seed).
        batch_size: batch size of this input pipeline (default ``cfg.data.batch_size``).
        num_shards, shard_index: take elements ``i ≡ shard_index (mod num_shards)`` (multi-worker).
        start: index of the first element (resuming at step s uses ``s × global batch``).
        failures: a list that receives any exception an element raises (a ``DataError`` from a read),
            which tf.data itself reports as an ``OpError`` with a traceback in its message.

    Returns:
        ``tf.data.Dataset`` of ``(inputs dict, target)`` as described in the module docstring.
    """
    import tensorflow as tf

    plan = sampling_plan(volumes, cfg)
    p = plan.p
    keys, shapes = element_spec(plan)

    def element(i):
        try:
            inputs, target = numpy_element(plan, int(i))
        except Exception as exc:
            if failures is not None:
                failures.append(exc)
            raise
        return [inputs[k] for k in keys] + [target]

    def sample(i):  # numpy_element in the tf.data graph: one recipe for both input paths
        out = tf.numpy_function(element, [i], [tf.float32] * (len(keys) + 1), stateful=False)
        for t, shape in zip(out, [*shapes, [p, p, 1]]):
            t.set_shape(shape)
        return dict(zip(keys, out[:-1])), out[-1]

    ds = tf.data.Dataset.counter(start=start, dtype=tf.int64)
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    ds = ds.map(sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size or cfg.data.batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)
