"""Input pipelines: normalise, mask, zero-fill, random patches, batch, prefetch. One recipe,
:func:`numpy_element` (NumPy), computes every training element; :func:`numpy_batches` runs it in a
thread pool (the JAX backend and any host without TensorFlow) and :func:`training_dataset` runs it
inside tf.data (``tf.numpy_function``, the TensorFlow backend), so both yield the same elements.

Training samples (deterministic given ``TrainConfig.seed``; element ``i`` is a pure function of
``(seed, i)``, so parallel maps and sharding never change the stream):

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

from dataclasses import dataclass

import numpy as np

from kerasrecon.config import TrainConfig
from kerasrecon.data.slices import normalisation_scales, reference_masks
from kerasrecon.data.volume import Volume
from kerasrecon.errors import ConfigError, DataError, arg
from kerasrecon.kspace import fft2c_np, ifft2c_np, per_slice, sense_adjoint_np, to_channels
from kerasrecon.masks import make_mask

PER_SAMPLE_SEED_OFFSET = 100_000  # per-sample bank masks never reuse a per-volume reference seed


def check_training_volumes(volumes, patch: int):
    """Raise unless the volumes are non-empty, share one slice shape and fit the patch. Returns (H, W)."""
    if not volumes or sum(v.kspace.shape[0] for v in volumes) == 0:
        raise DataError("the training set is empty (no slices)")
    shapes = {tuple(v.kspace.shape[1:]) for v in volumes}
    if len(shapes) > 1:
        raise DataError(
            f"training slices have different shapes {sorted(shapes)}; re-run 'kerasrecon data prepare' with --crop H W"
        )
    h, w = shapes.pop()
    if patch > min(h, w):
        raise ConfigError(f"{arg('data.patch_size')} {patch} is larger than the images ({h}×{w})")
    return h, w


@dataclass
class SamplingPlan:
    """Everything an element needs, computed once per run from the training volumes and config.

    ``targets`` complex64 ``[N, H, W]`` (each slice scaled by its normalisation factor), ``kspace``
    their k-space (whole-slice sampling only), ``bank`` float32 ``[M, gh, gw]`` masks (slice- or
    patch-shaped), ``mask_of_slice`` int ``[N]`` (the bank index of each slice's reference mask).
    Multi-coil data: ``maps`` complex64 ``[N, C, H, W]`` and, for whole-slice sampling, ``coil_kspace``
    (scaled, same shape); the input is then the SENSE-combined zero-filled image of the undersampled
    coils (``coil_inputs``: the elements carry the coils and maps, for exact multi-coil DC in training).
    """

    p: int
    h: int
    w: int
    seed: int
    targets: np.ndarray
    kspace: np.ndarray | None
    bank: np.ndarray
    mask_of_slice: np.ndarray
    per_sample: bool
    whole_slice: bool
    exact_dc: bool
    coil_kspace: np.ndarray | None = None
    maps: np.ndarray | None = None

    @property
    def coil_inputs(self) -> bool:
        return self.maps is not None and self.exact_dc


def sampling_plan(volumes: list[Volume], cfg: TrainConfig) -> SamplingPlan:
    """The :class:`SamplingPlan` of ``cfg`` on ``volumes`` (checks the volumes first)."""
    p = cfg.data.patch_size
    h, w = check_training_volumes(volumes, p)
    multicoil = check_coils(volumes)
    ref = reference_masks(volumes, cfg.mask)
    scales = normalisation_scales(volumes, ref)
    targets = np.concatenate([v.images * per_slice(s, 3) for v, s in zip(volumes, scales)]).astype(np.complex64)
    vol_of_slice = np.concatenate([np.full(v.kspace.shape[0], i) for i, v in enumerate(volumes)])
    if cfg.mask.per_sample:
        seeds = [cfg.mask.seed + PER_SAMPLE_SEED_OFFSET + j for j in range(cfg.mask.bank_size)]
    else:
        seeds = [cfg.mask.seed + i for i in range(len(volumes))]
    whole_slice = cfg.data.sampling == "slice"
    grid = (h, w) if whole_slice else (p, p)
    bank = np.stack(
        [make_mask(cfg.mask.kind, cfg.mask.acceleration, grid, s, cfg.mask.center_fraction).array for s in seeds]
    ).astype(np.float32)
    # Whole-slice sampling needs each slice's k-space: it is the volume's own (scaled), taken once here
    # instead of one full-slice FFT per sample.
    kspace = (
        np.concatenate([v.kspace * per_slice(s, 3) for v, s in zip(volumes, scales)]).astype(np.complex64)
        if whole_slice
        else None
    )
    coil_kspace = maps = None
    if multicoil:
        if whole_slice:  # patches are measured from the scaled SENSE target and the window's maps
            coil_kspace = np.concatenate([v.coil_kspace * per_slice(s, 4) for v, s in zip(volumes, scales)])
        maps = np.concatenate([v.maps for v in volumes])
    return SamplingPlan(
        p,
        h,
        w,
        int(cfg.seed),
        targets,
        kspace,
        bank,
        vol_of_slice.astype(np.int64),
        cfg.mask.per_sample,
        whole_slice,
        dc_is_exact(cfg, h, w),
        coil_kspace,
        maps,
    )


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
    return check_coils(volumes) and dc_is_exact(cfg, *volumes[0].kspace.shape[1:])


def element_indices(plan: SamplingPlan, i: int) -> np.ndarray:
    """Element ``i``'s draws, a pure function of ``(seed, i)``: int32 ``[4]`` = (slice, top, left, bank
    mask). Both input paths (tf.data and NumPy) call this one function, so they yield the same stream."""
    u = np.random.default_rng([plan.seed, int(i)]).random(4)
    n = len(plan.targets)
    s = min(int(u[0] * n), n - 1)
    top = min(int(u[1] * (plan.h - plan.p + 1)), plan.h - plan.p)
    left = min(int(u[2] * (plan.w - plan.p + 1)), plan.w - plan.p)
    m = min(int(u[3] * len(plan.bank)), len(plan.bank) - 1) if plan.per_sample else int(plan.mask_of_slice[s])
    return np.array([s, top, left, m], np.int32)


def numpy_element(plan: SamplingPlan, i: int):
    """Element ``i`` computed with NumPy: ``({"zero_filled": [p, p, 2], "masked_kspace": [p, p, 2],
    "mask": [p, p]}, target [p, p, 1])``, all float32 (the module docstring's recipe)."""
    s, top, left, m = (int(x) for x in element_indices(plan, i))
    p, mask = plan.p, plan.bank[m]
    window = (slice(top, top + p), slice(left, left + p))
    patch = plan.targets[s][window]
    if plan.maps is not None:
        maps = plan.maps[s][(slice(None), *window)]
        if plan.whole_slice:  # the window of the slice's SENSE-combined zero-filled image
            masked = plan.coil_kspace[s] * mask
            zero_filled = sense_adjoint_np(masked[None], plan.maps[s][None], mask)[0][window]
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
        masked = plan.kspace[s] * mask
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
        c = plan.maps.shape[1]
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
):
    """Infinite, deterministic tf.data stream of training batches.

    Args:
        volumes: training volumes (same slice shape).
        cfg: the run's config (mask, data.patch_size, data.batch_size, seed).
        batch_size: batch size of this input pipeline (default ``cfg.data.batch_size``).
        num_shards, shard_index: take elements ``i ≡ shard_index (mod num_shards)`` (multi-worker).
        start: index of the first element (resuming at step s uses ``s × global batch``).

    Returns:
        ``tf.data.Dataset`` of ``(inputs dict, target)`` as described in the module docstring.
    """
    import tensorflow as tf

    plan = sampling_plan(volumes, cfg)
    p = plan.p
    keys, shapes = element_spec(plan)

    def element(i):
        inputs, target = numpy_element(plan, int(i))
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
