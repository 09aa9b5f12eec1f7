"""The single home of the k-space convention.

Convention (used everywhere in kerasrecon and written into exported models):

* k-space and images are complex64 arrays ``[..., H, W]``; the 2-D transform acts on the last two
  axes (-2, -1).
* ``fft2c`` is the *centred orthonormal* DFT: ``fftshift(fft2(ifftshift(x)), norm="ortho")``, so the
  DC sample sits at index ``(H // 2, W // 2)`` and ``ifft2c(fft2c(x)) == x`` with ``‖fft2c(x)‖ = ‖x‖``
  (Parseval; ``F^H F = I``).
* Undersampling: ``masked_kspace = mask * kspace`` and ``zero_filled = ifft2c(masked_kspace)``
  (``x = F^H (M ⊙ s0)``). Masks are real ``{0, 1}`` arrays broadcastable to ``[..., H, W]``.
* Models see complex images as float32 channels ``[..., H, W, 2]`` (real, imaginary); only this
  module converts (``to_channels`` / ``from_channels``).

Two implementations follow the one convention, each where it is needed, and no third:

* ``*_np``: NumPy on complex arrays (data preparation, the input pipelines, baselines, evaluation,
  the ``Reconstructor``);
* ``*_ch``: ``keras.ops`` on channel form ``[..., H, W, 2]`` — everything that runs in a graph: the
  models, losses and data consistency on any Keras backend, and the SavedModel signatures
  (``keras.ops.fft2`` lowers to ``tf.signal.fft2d`` on TensorFlow, ``jnp.fft.fft2`` on JAX).

``to_channels`` / ``from_channels`` convert NumPy arrays between the two forms.
"""

from __future__ import annotations

import numpy as np

from kerasrecon.errors import DataError

AXES = (-2, -1)


# --------------------------------------------------------------------------------------- NumPy
def fft2c_np(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT (NumPy).

    Args:
        image: complex array ``[..., H, W]``.

    Returns:
        k-space, complex ``[..., H, W]`` (complex64 if the input was complex64 or real float32).
    """
    out = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=AXES), norm="ortho"), axes=AXES)
    return out.astype(_complex_dtype(image), copy=False)


def ifft2c_np(kspace: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2-D FFT (NumPy), the adjoint and inverse of ``fft2c_np``.

    Args:
        kspace: complex array ``[..., H, W]``.

    Returns:
        image, complex ``[..., H, W]``.
    """
    out = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=AXES), norm="ortho"), axes=AXES)
    return out.astype(_complex_dtype(kspace), copy=False)


def _complex_dtype(x: np.ndarray):
    return np.complex128 if np.asarray(x).dtype in (np.float64, np.complex128) else np.complex64


def undersample_np(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask ⊙ kspace`` after checking shapes. kspace complex ``[..., H, W]``, mask ``[H, W]``."""
    check_kspace(kspace)
    check_mask(mask, kspace.shape[-2:])
    return (kspace * mask).astype(kspace.dtype, copy=False)


def zero_filled_np(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero-filled image ``F^H(M ⊙ s0)``: complex ``[..., H, W]`` from kspace ``[..., H, W]``, mask ``[H, W]``."""
    return ifft2c_np(undersample_np(kspace, mask))


def coil_mask(mask: np.ndarray) -> np.ndarray:
    """A mask ``[H, W]`` (broadcasts as is) or ``[B, H, W]`` (gets a coil axis: ``[B, 1, H, W]``)."""
    mask = np.asarray(mask)
    return mask if mask.ndim == 2 else mask[..., None, :, :]


def sense_forward_np(image: np.ndarray, maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """SENSE forward operator ``A x = M ⊙ F(S_c x)`` (NumPy).

    Args:
        image: complex ``[B, H, W]``.
        maps: coil sensitivities, complex ``[B, C, H, W]`` (single coil: ``C = 1``, ``S = 1``).
        mask: ``[H, W]`` or ``[B, H, W]`` in {0, 1}.

    Returns:
        multi-coil k-space, complex ``[B, C, H, W]``.
    """
    return fft2c_np(maps * image[:, None]) * coil_mask(mask)


def sense_adjoint_np(kspace: np.ndarray, maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Adjoint ``Aᴴ y = Σ_c conj(S_c) · Fᴴ(M ⊙ y_c)`` (NumPy): the SENSE-combined zero-filled image.

    Args:
        kspace: complex ``[B, C, H, W]``; maps: complex ``[B, C, H, W]``; mask ``[H, W]`` or ``[B, H, W]``.

    Returns:
        complex ``[B, H, W]``.
    """
    return np.sum(np.conj(maps) * ifft2c_np(kspace * coil_mask(mask)), axis=1)


def measure_np(kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What a scanner with ``mask`` measures and its zero-filled image (NumPy).

    Args:
        kspace: complex ``[S, H, W]``, or multi-coil ``[S, C, H, W]`` with ``maps``.
        mask: ``[H, W]`` or ``[S, H, W]`` in {0, 1}.
        maps: coil sensitivities complex ``[S, C, H, W]``, or ``None`` (single coil).

    Returns:
        ``(masked_kspace, zero_filled)``: ``M ⊙ kspace`` (the shape of ``kspace``) and ``Fᴴ(M ⊙ kspace)``,
        multi-coil the SENSE combination ``Σ_c conj(S_c) Fᴴ(M ⊙ y_c)``, complex ``[S, H, W]``.
    """
    if maps is None:
        masked = kspace * mask
        return masked, ifft2c_np(masked)
    masked = kspace * coil_mask(mask)
    return masked, sense_adjoint_np(masked, maps, mask)


def per_slice(scale: np.ndarray, ndim: int) -> np.ndarray:
    """``scale`` float ``[S]`` shaped ``[S, 1, ...]`` to broadcast over an array ``[S, ...]`` of rank ``ndim``."""
    return np.asarray(scale).reshape((-1,) + (1,) * (ndim - 1))


NORMALISE_EPS = 1e-8  # floor of the zero-filled peak (an all-zero slice keeps scale 1e8, not inf)


def normalise_np(zero_filled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The models' input scale: each slice scaled so that its zero-filled magnitude peaks at 1.

    A statistic known at inference time (the zero-filled image), used by training, evaluation, the
    ``Reconstructor`` and (in TensorFlow) the SavedModel graph.

    Args:
        zero_filled: complex ``[S, H, W]``.

    Returns:
        ``(scaled complex64 [S, H, W], scale float32 [S])`` with ``scaled = zero_filled * scale``.
    """
    peak = np.abs(zero_filled).reshape(zero_filled.shape[0], -1).max(axis=1)
    scale = (1.0 / np.maximum(peak, NORMALISE_EPS)).astype(np.float32)
    return (zero_filled * per_slice(scale, 3)).astype(np.complex64), scale


def model_inputs_np(kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """The generator's inputs for whole slices (NumPy): measure, zero-fill, normalise.

    Args:
        kspace: complex ``[S, H, W]`` (multi-coil ``[S, C, H, W]`` with ``maps``), fully sampled or
            already masked.
        mask: ``[H, W]`` or ``[S, H, W]`` in {0, 1}.
        maps: complex ``[S, C, H, W]`` coil sensitivities, or ``None``.

    Returns:
        ``(inputs, scale)``: the generator's input dict (``zero_filled`` float32 ``[S, H, W, 2]``,
        ``masked_kspace`` float32 ``[S, H, W, 2]`` or ``[S, C, H, W, 2]``, ``mask`` float32, and with
        coils ``maps`` float32 ``[S, C, H, W, 2]``) and ``scale`` float32 ``[S]`` (outputs are
        divided by it to return to the input's intensity scale).
    """
    masked, zero_filled = measure_np(kspace, mask, maps)
    zero_filled, scale = normalise_np(zero_filled)
    inputs = {
        "zero_filled": to_channels(zero_filled),
        "masked_kspace": to_channels(masked * per_slice(scale, masked.ndim)),
        "mask": np.asarray(mask, np.float32),
    }
    if maps is not None:
        inputs["maps"] = to_channels(maps)
    return inputs, scale


# Self-ensemble: the 8 flips and transposes of the grid. Each is exact in both domains: mirroring the
# image about the grid's centre (position p = n - N // 2 -> -p) mirrors k-space the same way, and
# transposing one transposes the other, so a transformed acquisition is a valid acquisition.
ENSEMBLE_SIZES = (1, 2, 4, 8)


def check_ensemble(n, option: str = "ensemble", export: str | None = None) -> int:
    """``n`` as a self-ensemble size (one of ``ENSEMBLE_SIZES``), else ``DataError`` naming ``option``.

    Args:
        n: the requested size (an int; bools and floats are refused).
        option: how the error names the argument.
        export: the SavedModel export it would apply to, if any: its size is fixed when it is exported,
            so ``n > 1`` is refused naming it.

    Returns:
        ``n`` as an int.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) not in ENSEMBLE_SIZES:
        raise DataError(f"{option}: expected one of {', '.join(map(str, ENSEMBLE_SIZES))}. Received: {n!r}")
    if n > 1 and export is not None:
        raise DataError(
            f"{option} {n}: {export} is a SavedModel export: its self-ensemble is fixed when it is exported "
            "('kerasrecon export --ensemble N'); or use the run directory or pretrained:NAME"
        )
    return int(n)


def centred_flip_np(x: np.ndarray, axis: int) -> np.ndarray:
    """Mirror ``x`` about the centred grid's origin along ``axis``: ``out[n] = x[(2 (N // 2) - n) mod N]``.

    For even ``N`` this is ``np.flip`` followed by a roll of one (index 0, position ``-N/2``, maps to
    itself); for odd ``N`` it is ``np.flip``. It commutes with ``fft2c_np`` and ``ifft2c_np``.

    Args:
        x: array ``[..., H, W]`` (image, k-space, mask or coil maps).
        axis: ``-2`` (H) or ``-1`` (W).

    Returns:
        array of ``x``'s shape and dtype.
    """
    n = x.shape[axis]
    return np.roll(np.flip(x, axis), 1 - n % 2, axis)


def dihedral_np(x: np.ndarray, t: int, inverse: bool = False) -> np.ndarray:
    """Transform ``t`` (0-7) of the grid, or its inverse: bit 0 mirrors H, bit 1 mirrors W (each with
    :func:`centred_flip_np`), bit 2 transposes H and W (applied last; first when ``inverse``).

    Args:
        x: array ``[..., H, W]``; ``t``: 0 is the identity, 0-3 keep the shape, 4-7 give ``[..., W, H]``.

    Returns:
        the transformed array (contiguous), ``[..., H, W]`` or ``[..., W, H]``.
    """
    if inverse and t & 4:
        x = np.swapaxes(x, -1, -2)
    for bit, axis in ((1, -2), (2, -1)):
        if t & bit:
            x = centred_flip_np(x, axis)
    if not inverse and t & 4:
        x = np.swapaxes(x, -1, -2)
    return np.ascontiguousarray(x)


def check_kspace(kspace: np.ndarray, name: str = "kspace") -> None:
    """Raise ``DataError`` unless ``kspace`` is a finite complex array of rank >= 2.

    Args:
        kspace: array expected complex ``[..., H, W]``.
        name: how the error message names the array (a file or option).
    """
    arr = np.asarray(kspace)
    if arr.ndim < 2:
        raise DataError(f"{name} must have rank >= 2 ([..., H, W]). Received: shape={arr.shape}")
    if not np.iscomplexobj(arr):
        raise DataError(f"{name} must be complex k-space. Received: dtype={arr.dtype}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise DataError(f"{name} contains {bad} NaN/Inf values; expected finite k-space")
    if arr.dtype != np.complex64 and arr.size:  # kerasrecon computes in complex64: the values must fit
        peak = max(float(np.max(np.abs(arr.real))), float(np.max(np.abs(arr.imag))))
        if peak > float(np.finfo(np.float32).max):
            raise DataError(
                f"{name} holds values up to {peak:.3g}, beyond complex64's range "
                f"({float(np.finfo(np.float32).max):.3g}); rescale it"
            )


def check_mask(mask, shape, name: str = "mask") -> None:
    """Raise ``DataError`` unless ``mask`` is a finite real array broadcastable to ``[..., H, W]``.

    Args:
        mask: array ``[H, W]`` or ``[B, H, W]`` with values in ``[0, 1]``.
        shape: the trailing ``(H, W)`` of the data it is applied to.
        name: how the error message names the mask.
    """
    arr = np.asarray(mask)
    if arr.ndim < 2 or tuple(arr.shape[-2:]) != tuple(shape):
        raise DataError(f"{name} shape {arr.shape} does not match the data's (H, W)={tuple(shape)}")
    if np.iscomplexobj(arr) or not np.all(np.isfinite(arr)):
        raise DataError(f"{name} must be real and finite. Received: dtype={arr.dtype}")


def to_channels(x: np.ndarray) -> np.ndarray:
    """Complex ``[..., H, W]`` -> float32 ``[..., H, W, 2]`` (real, imaginary)."""
    x = np.asarray(x)
    return np.stack([x.real, x.imag], axis=-1).astype(np.float32)


def from_channels(x: np.ndarray) -> np.ndarray:
    """Float ``[..., H, W, 2]`` (real, imaginary) -> complex64 ``[..., H, W]``."""
    x = np.asarray(x)
    if x.shape[-1:] != (2,):
        raise DataError(f"expected 2 channels (real, imag) in the last axis. Received: shape={x.shape}")
    return (x[..., 0] + 1j * x[..., 1]).astype(np.complex64)


# ------------------------------------------------------------------------ keras.ops (any backend)
def _ops():
    from keras import ops  # deferred: NumPy-only users do not import Keras

    return ops


def _roll_centre(x, sign: int):
    """``fftshift`` (sign +1) or ``ifftshift`` (sign -1) of ``x [..., H, W]`` on its last two axes."""
    ops = _ops()
    shape = ops.shape(x)
    h, w = shape[-2], shape[-1]
    shift = (h // 2, w // 2) if sign > 0 else (-(h // 2), -(w // 2))
    return ops.roll(x, shift, axis=(-2, -1))


def _ortho(x, inverse: bool):
    ops = _ops()
    shape = ops.shape(x)
    n = ops.cast(shape[-2] * shape[-1], x.dtype)
    return ops.sqrt(n) if inverse else ops.rsqrt(n)


def _centred_fft_ch(x, inverse: bool):
    """ifftshift -> (i)fft2 -> fftshift, orthonormal, of channel-form ``[..., H, W, 2]`` (any backend)."""
    ops = _ops()
    transform = ops.ifft2 if inverse else ops.fft2
    re, im = transform((_roll_centre(x[..., 0], -1), _roll_centre(x[..., 1], -1)))
    scale = _ortho(re, inverse=inverse)  # ifft2 already divides by H·W
    return ops.stack([_roll_centre(re, 1) * scale, _roll_centre(im, 1) * scale], axis=-1)


def fft2c_ch(x):
    """Centred orthonormal 2-D FFT in channel form, with ``keras.ops.fft2``.

    Args:
        x: float32 ``[..., H, W, 2]`` (real, imaginary) image.

    Returns:
        float32 ``[..., H, W, 2]`` k-space; DC at ``(H // 2, W // 2)``.
    """
    return _centred_fft_ch(x, inverse=False)


def ifft2c_ch(k):
    """Centred orthonormal inverse 2-D FFT in channel form, with ``keras.ops.ifft2``.

    Args:
        k: float32 ``[..., H, W, 2]`` (real, imaginary) k-space.

    Returns:
        float32 ``[..., H, W, 2]`` image.
    """
    return _centred_fft_ch(k, inverse=True)


def dihedral_ch(x, t: int, inverse: bool = False, channels: bool = True):
    """:func:`dihedral_np` in a graph (any backend, dynamic H and W): transform ``t`` (0-7) of the grid.

    Args:
        x: float32 channel form ``[..., H, W, 2]`` (``channels``) or a mask ``[..., H, W]``.
        t: bit 0 mirrors H, bit 1 mirrors W about the centred grid's origin, bit 2 transposes H and W
            (last; first when ``inverse``).

    Returns:
        the transformed tensor, ``[..., H, W(, 2)]`` or ``[..., W, H(, 2)]``.
    """
    ops = _ops()
    h_axis, w_axis = (-3, -2) if channels else (-2, -1)
    if inverse and t & 4:
        x = ops.swapaxes(x, h_axis, w_axis)
    for bit, axis in ((1, h_axis), (2, w_axis)):
        if t & bit:
            n = ops.shape(x)[axis]
            x = ops.roll(ops.flip(x, axis=axis), 1 - n % 2, axis=axis)
    if not inverse and t & 4:
        x = ops.swapaxes(x, h_axis, w_axis)
    return x


def data_consistency_ch(image, masked_kspace, mask, noise_lambda=None, eta=None):
    """Put measured k-space samples back into a reconstruction (channel form, any backend).

    Hard (``noise_lambda=None``): ``k = (1 - M) ⊙ F(x) + M ⊙ s0``, measured samples are replaced
    exactly. Soft (noise level ``λ > 0``): measured samples become ``(F(x) + λ s0) / (1 + λ)``
    (the noisy-data solution of Schlemper et al. 2017); large λ tends to hard replacement.
    Learned step ``eta`` (a scalar tensor; E2E-VarNet's soft DC): ``k = F(x) − η M ⊙ (F(x) − s0)``;
    η = 1 is hard replacement, η = λ / (1 + λ) the soft blend.

    Args:
        image: float32 ``[B, H, W, 2]``, the network's image.
        masked_kspace: float32 ``[B, H, W, 2]``, measured k-space (values off the mask are ignored).
        mask: float32 ``[H, W]`` or ``[B, H, W]`` in {0, 1}.
        noise_lambda: ``None`` for hard replacement, else a positive float.
        eta: ``None``, or a scalar step (overrides ``noise_lambda``).

    Returns:
        float32 ``[B, H, W, 2]``.
    """
    ops = _ops()
    k = fft2c_ch(image)
    m = ops.expand_dims(ops.cast(mask, k.dtype), -1)
    return ifft2c_ch(_replace_measured(k, masked_kspace, m, noise_lambda, eta))


def _replace_measured(k, masked_kspace, m, noise_lambda, eta=None):
    """``(1 - M) ⊙ k + M ⊙ s0`` (hard), with ``(k + λ s0) / (1 + λ)`` on the samples (soft), or
    ``k − η M ⊙ (k − s0)`` (learned step): the one k-space update of single- and multi-coil data
    consistency (``m`` broadcasts against ``k``)."""
    if eta is not None:
        return k - eta * m * (k - masked_kspace)
    measured = masked_kspace if noise_lambda is None else (k + noise_lambda * masked_kspace) / (1.0 + noise_lambda)
    return (1.0 - m) * k + m * measured


def complex_mul_ch(a, b, conjugate_a: bool = False):
    """``a · b`` (or ``conj(a) · b``) of channel-form tensors ``[..., 2]`` (any backend, broadcasting)."""
    ops = _ops()
    ar, ai = a[..., 0], (-a[..., 1] if conjugate_a else a[..., 1])
    br, bi = b[..., 0], b[..., 1]
    return ops.stack([ar * br - ai * bi, ar * bi + ai * br], axis=-1)


def sense_forward_ch(image, maps, mask):
    """SENSE forward ``A x = M ⊙ F(S_c x)`` in channel form (any backend).

    Args:
        image: float32 ``[B, H, W, 2]``; maps: float32 ``[B, C, H, W, 2]``; mask: ``[B, H, W]``.

    Returns:
        float32 ``[B, C, H, W, 2]``.
    """
    ops = _ops()
    k = fft2c_ch(complex_mul_ch(maps, ops.expand_dims(image, 1)))
    return k * ops.expand_dims(ops.expand_dims(ops.cast(mask, k.dtype), 1), -1)


def sense_adjoint_ch(kspace, maps, mask):
    """Adjoint ``Aᴴ y = Σ_c conj(S_c) · Fᴴ(M ⊙ y_c)`` in channel form (any backend).

    Args:
        kspace: float32 ``[B, C, H, W, 2]``; maps: float32 ``[B, C, H, W, 2]``; mask: ``[B, H, W]``.

    Returns:
        float32 ``[B, H, W, 2]``.
    """
    ops = _ops()
    m = ops.expand_dims(ops.expand_dims(ops.cast(mask, kspace.dtype), 1), -1)
    return ops.sum(complex_mul_ch(maps, ifft2c_ch(kspace * m), conjugate_a=True), axis=1)


def sense_data_consistency_ch(image, masked_kspace, maps, mask, noise_lambda=None, eta=None):
    """Multi-coil data consistency (channel form, any backend): each coil's k-space of the network's
    image, ``k_c = F(S_c x)``, gets its measured samples back (hard, or the soft blend of
    ``data_consistency_ch``), and the coils are SENSE-combined: ``x' = Σ_c conj(S_c) Fᴴ k'_c``.
    With ``C = 1, S = 1`` this is ``data_consistency_ch``.

    Args:
        image: float32 ``[B, H, W, 2]``; masked_kspace: float32 ``[B, C, H, W, 2]`` (measured samples,
            zeros elsewhere); maps: float32 ``[B, C, H, W, 2]`` (``Σ_c |S_c|² = 1`` on the object);
            mask: ``[B, H, W]`` in {0, 1}; noise_lambda: ``None`` (hard) or a positive float; eta: a
            learned scalar step (see ``data_consistency_ch``) or ``None``.

    Returns:
        float32 ``[B, H, W, 2]``.
    """
    ops = _ops()
    k = fft2c_ch(complex_mul_ch(maps, ops.expand_dims(image, 1)))
    m = ops.expand_dims(ops.expand_dims(ops.cast(mask, k.dtype), 1), -1)
    k = _replace_measured(k, masked_kspace, m, noise_lambda, eta)
    return ops.sum(complex_mul_ch(maps, ifft2c_ch(k), conjugate_a=True), axis=1)


def sense_cg_solve_ch(rhs, maps, mask, mu, iters: int, x0=None):
    """``(AᴴA + μI)⁻¹ rhs`` by ``iters`` conjugate-gradient iterations (channel form, any backend), with
    ``A = M ⊙ F(S_c ·)`` the SENSE operator: MoDL's data-consistency solve (Aggarwal et al., IEEE TMI
    2019). ``AᴴA + μI`` is Hermitian positive definite for μ > 0, so CG on the real and imaginary parts
    together (the real inner product ``Re⟨a, b⟩``) is CG on the complex system. A fixed number of
    iterations keeps the graph static; an exhausted residual gives zero steps, never 0/0.

    Args:
        rhs: float32 ``[B, H, W, 2]``, e.g. ``Aᴴy + μz``; maps: float32 ``[B, C, H, W, 2]``; mask:
            ``[B, H, W]`` in {0, 1}; mu: a positive scalar (tensor or float); iters: CG iterations
            (>= 1); x0: float32 ``[B, H, W, 2]`` start (``None``: 0).

    Returns:
        float32 ``[B, H, W, 2]``.
    """
    ops = _ops()

    def normal(x):
        return sense_adjoint_ch(sense_forward_ch(x, maps, mask), maps, mask) + mu * x

    def dot(a, b):
        return ops.sum(a * b, axis=(1, 2, 3), keepdims=True)

    def ratio(num, den):  # num / den, and 0 where den is 0 (an exhausted residual)
        safe = ops.where(den > 0, den, ops.ones_like(den))
        return ops.where(den > 0, num / safe, ops.zeros_like(num))

    x = ops.zeros_like(rhs) if x0 is None else x0
    r = rhs if x0 is None else rhs - normal(x0)
    p, rs = r, dot(r, r)
    for _ in range(iters):
        ap = normal(p)
        alpha = ratio(rs, dot(p, ap))
        x, r = x + alpha * p, r - alpha * ap
        rs_new = dot(r, r)
        p, rs = r + ratio(rs_new, rs) * p, rs_new
    return x


PHASE_WINDOW = 0.1  # σ of map_phase_ch's Gaussian k-space window, as a fraction of H and of W


def map_phase_ch(masked_kspace, maps, window: float = PHASE_WINDOW, support=None):
    """The phase that fixes a set of sensitivity maps' phase convention (channel form, any backend).

    Maps are defined up to a phase: ``S_c e^{iθ}`` with any ``θ(r)`` fits the same data, and the SENSE
    image ``Σ_c conj(S_c) Fᴴ y_c`` turns by ``e^{-iθ}``. ACS maps (``coils.acs_maps_np``) take the
    object's low-resolution phase out of the image; ESPIRiT's and simulated maps leave it in. This is
    the unit phase ``u = l / |l|`` of the low-resolution SENSE image ``l = Σ_c conj(S_c) Fᴴ(G ⊙ y_c)``,
    ``G`` a Gaussian window of σ = ``window``·H by ``window``·W samples around DC. Then ``S_c u`` is
    the same maps in the ACS convention: their low-resolution SENSE image is real and non-negative,
    whatever phase the maps came with (exactly for a constant θ, to the window's resolution for a
    smooth one). ``u = 1`` where ``|l| <= 1e-6`` of the slice's peak (off the maps' support).
    With ``support``, also ``u = 0`` where the RSS of the windowed coil images is at most ``support``
    times its peak: maps ``S_c u`` are then 0 off the object, as ACS maps are.

    Args:
        masked_kspace: float32 ``[B, C, H, W, 2]`` measured multi-coil k-space (zeros off the mask).
        maps: float32 ``[B, C, H, W, 2]`` coil sensitivities.
        window: σ of the window as a fraction of each side.
        support: ``None``, or the fraction of the low-resolution RSS peak below which ``u = 0``.

    Returns:
        float32 ``[B, H, W, 2]``, ``|u|`` = 1 (0 off the support).
    """
    ops = _ops()
    shape = ops.shape(masked_kspace)
    dtype = masked_kspace.dtype

    def axis(n):
        offset = ops.cast(ops.arange(n) - n // 2, dtype) / (window * ops.cast(n, dtype))
        return ops.exp(-0.5 * ops.square(offset))

    gauss = axis(shape[2])[:, None] * axis(shape[3])[None, :]  # [H, W]
    coil_low = ifft2c_ch(masked_kspace * gauss[:, :, None])
    low = ops.sum(complex_mul_ch(maps, coil_low, conjugate_a=True), axis=1)  # [B, H, W, 2]
    size = abs_ch(low)
    keep = size > 1e-6 * ops.max(size, axis=(1, 2), keepdims=True)
    size = ops.where(keep, size, 1.0)  # no 0/0 where u is set to 1
    re = ops.where(keep, low[..., 0] / size, 1.0)
    im = ops.where(keep, low[..., 1] / size, 0.0)
    if support is not None:
        rss = ops.sqrt(ops.sum(ops.square(coil_low), axis=(1, 4)))  # [B, H, W]
        inside = ops.cast(rss > support * ops.max(rss, axis=(1, 2), keepdims=True), re.dtype)
        re, im = re * inside, im * inside
    return ops.stack([re, im], axis=-1)


def magnitude(x):
    """``|x|`` of channel form: float32 ``[..., H, W, 2]`` -> ``[..., H, W, 1]`` (any backend)."""
    ops = _ops()
    return ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + 1e-12)


def abs_ch(x):
    """``|x|`` of channel form without an offset or overflow (``hypot``): ``[..., 2]`` -> ``[...]`` (any backend)."""
    return _ops().hypot(x[..., 0], x[..., 1])


def normalise_ch(zero_filled):
    """``normalise_np`` in ``keras.ops`` (any backend): each slice scaled so that its zero-filled
    magnitude peaks at 1.

    Args:
        zero_filled: float32 ``[B, H, W, 2]``.

    Returns:
        ``(scaled float32 [B, H, W, 2], scale float32 [B, 1, 1, 1])`` with ``scaled = zero_filled * scale``.
    """
    ops = _ops()
    peak = ops.max(abs_ch(zero_filled), axis=(1, 2), keepdims=True)[..., None]
    scale = 1.0 / ops.maximum(peak, NORMALISE_EPS)
    return zero_filled * scale, scale
