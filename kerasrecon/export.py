"""Export a trained generator as a TensorFlow SavedModel that needs nothing but TensorFlow.

Signatures (dynamic batch and image size):

* ``serving_default(kspace_real, kspace_imag, mask)``: k-space float32 ``[B, H, W]`` (real and
  imaginary parts, centred orthonormal convention) and mask float32 ``[B, H, W]`` or ``[H, W]`` →
  ``image`` float32 ``[B, H, W]`` (magnitude, original scale) and ``complex_image`` float32
  ``[B, H, W, 2]``. Inside the graph: masking, zero-filling, per-slice normalisation by
  ``1 / max|zero_filled|``, the generator, data consistency, and undoing the normalisation.
* ``from_zero_filled(zero_filled)``: a zero-filled complex image float32 ``[B, H, W, 2]`` → ``image``
  and ``complex_image`` (same normalisation; no data consistency, as there is no k-space).
* ``multicoil(kspace_real, kspace_imag, mask)``: multi-coil k-space float32 ``[B, C, H, W]`` and mask
  ``[B, H, W]`` or ``[H, W]`` → ``image`` ``[B, H, W]`` and ``complex_image``. Inside the graph: coil
  sensitivities from the sampled centre (``coils.acs_maps_ch``: the ``acs_lines`` centre columns,
  ``max(4, round(center_fraction · W))`` of the training mask, coil images over their RSS), the
  SENSE-combined zero-filled image, normalisation, the generator (same weights) with coil-wise data
  consistency. Nothing but k-space and mask is needed.

A plug-and-play model (``TrainConfig.pnp``; :class:`PnPModule`) has ``serving_default`` alone, with
its whole solver in the graph: normalisation to the zero-filled peak, converged TV
(:func:`tv_admm_graph`, ``baselines.tv_admm`` as a ``tf.while_loop``) or the zero-filled start, then
the denoiser and data-consistency steps, the self-ensemble inside each denoiser step.

Inputs are validated in the graph before any FFT (``INPUT_CONTRACT``): a violation raises
``tf.errors.InvalidArgumentError`` naming the input, never a crash or a silent NaN image. The
signatures therefore declare unknown rank.

Self-ensemble (``export_run(..., ensemble=N)``, ``kerasrecon export --ensemble N``): every signature
reconstructs the input and its first N - 1 mirrored/transposed versions (``kspace.dihedral_ch``; coil
maps estimated once and transformed with the data) and returns the mean of the complex outputs turned
back, as ``Reconstructor(..., ensemble=N)`` does; N times the time.

Metadata: ``assets/kerasrecon.json`` and the string variable ``metadata_json`` of the loaded object:
kerasrecon and TensorFlow versions, the training config, step, normalisation, k-space convention,
the self-ensemble size, the signature documentation and the input contract.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import tensorflow as tf

from kerasrecon import __version__
from kerasrecon.config import TrainConfig
from kerasrecon.errors import ConfigError, arg
from kerasrecon.kspace import (
    abs_ch,
    check_ensemble,
    dihedral_ch,
    fft2c_ch,
    ifft2c_ch,
    normalise_ch,
    sense_adjoint_ch,
)
from kerasrecon.masks import CENTER_FRACTION

METADATA_FILE = "kerasrecon.json"
NORMALISATION = "per slice: x / max|zero_filled| before the generator, multiplied back after"
CONVENTION = "centred orthonormal 2-D DFT over the last two axes: fftshift(fft2(ifftshift(x)), norm='ortho')"
SIGNATURES = {
    "serving_default": "kspace_real, kspace_imag float32 [B,H,W]; mask float32 [B,H,W] or [H,W] "
    "-> image float32 [B,H,W] (magnitude), complex_image float32 [B,H,W,2]",
    "from_zero_filled": "zero_filled float32 [B,H,W,2] -> image float32 [B,H,W], complex_image float32 [B,H,W,2]",
    "multicoil": "kspace_real, kspace_imag float32 [B,C,H,W]; mask float32 [B,H,W] or [H,W] -> image float32 "
    "[B,H,W] (SENSE-combined magnitude), complex_image float32 [B,H,W,2]; coil maps estimated "
    "in the graph from the sampled centre",
}
# The generators' inputs inside the SavedModel (channel form, float32): images/k-space [B, H, W, 2],
# coil k-space and maps [B, C, H, W, 2], masks [B, H, W].
_CHANNELS = tf.TensorSpec([None, None, None, 2], tf.float32)
_COIL_CHANNELS = tf.TensorSpec([None, None, None, None, 2], tf.float32)
_MASK = tf.TensorSpec([None, None, None], tf.float32)
# serving_default's and multicoil's inputs: any rank, so that a wrong shape reaches the graph's checks
KSPACE_SIGNATURE = [
    tf.TensorSpec(None, tf.float32, name="kspace_real"),
    tf.TensorSpec(None, tf.float32, name="kspace_imag"),
    tf.TensorSpec(None, tf.float32, name="mask"),
]
PNP_SOLVER = (
    "plug-and-play (kerasrecon.pnp), single-coil: {start} of the normalised slice, then {iters} steps "
    "x <- F^H[M y + (1 - M) F D(x, sigma_k)], sigma_k geometric from {first:g} to {last:g}; "
    "no multicoil or from_zero_filled signature"
)
INPUT_CONTRACT = {
    "kspace_real, kspace_imag": "float32, rank 3 [B, H, W], equal shapes, B >= 1, H >= 2, W >= 2, all finite",
    "mask": "float32 [H, W] or [B, H, W] matching the k-space, values exactly 0 or 1, all finite",
    "zero_filled": "float32 rank 4 [B, H, W, 2] (real, imag), B >= 1, H >= 2, W >= 2, all finite",
    "multicoil kspace_real, kspace_imag": "float32, rank 4 [B, C, H, W], equal shapes, B, C >= 1, H, W >= 2, "
    "all finite; mask as above for [B, H, W]",
    "violation": "tf.errors.InvalidArgumentError whose message names the input, what was expected and what "
    "was received; a result that is not finite (k-space magnitudes that overflow float32 in "
    "the FFT) is an InvalidArgumentError on 'image'",
}


def _checked(tensors, checks):
    """Pass ``tensors`` through ``checks``; the first violated check (in list order) raises.

    Every condition and message is computed with ops that cannot fail on any input shape (graph
    optimisation may evaluate them in any order), the first failing one is selected with
    ``argmax``, and one ``Assert`` reports it; the outputs depend on that ``Assert``.

    Args:
        tensors: tuple of tensors to pass through.
        checks: ``[(condition_fn, template, received_fn)]``; ``condition_fn()`` -> bool scalar;
            ``template`` a ``tf.strings.format`` template with one ``{}`` per tensor of ``received_fn()``.
    """
    oks = tf.stack([cond_fn() for cond_fn, _, _ in checks])
    messages = tf.stack(
        [tf.strings.format(template, received_fn(), summarize=8) for _, template, received_fn in checks]
    )
    first_bad = tf.argmax(tf.cast(tf.logical_not(oks), tf.int32))
    check = tf.debugging.Assert(tf.reduce_all(oks), [tf.gather(messages, first_bad)])
    with tf.control_dependencies([check]):
        return tuple(tf.identity(t) for t in tensors)


def _padded(shape, n: int = 8):
    """The first ``n`` entries of ``shape`` followed by -1s: indexing it never fails."""
    out = tf.concat([shape, tf.fill([n], -1)], axis=0)[:n]
    out.set_shape([n])
    return out


def _as_rank(x, rank: int):
    """``x`` with static rank ``rank``, by a reshape to its own (already checked) shape. Not
    ``tf.ensure_shape``: graph optimisation propagates its shape back to the input and then folds
    ``tf.rank`` of the input to the expected value, which would disable the checks."""
    return tf.reshape(x, _padded(tf.shape(x), rank))


def _same(a, b):
    """``a == b`` for 1-D shape tensors of any lengths; computed without ops that can fail, because
    graph optimisation may evaluate a check before the ones it is nested under."""
    return tf.logical_and(tf.equal(tf.size(a), tf.size(b)), tf.reduce_all(tf.equal(_padded(a), _padded(b))))


def _rank_check(x, name: str, ranks, expected: str):
    return (
        lambda: tf.reduce_any(tf.equal(tf.rank(x), tf.constant(ranks))),
        f"{name}: expected {expected}; got rank {{}} (shape {{}})",
        lambda: [tf.rank(x), tf.shape(x)],
    )


def _finite_check(x, name: str):
    return (
        lambda: tf.reduce_all(tf.math.is_finite(x)),
        f"{name}: expected finite values; got {{}} NaN/Inf",
        lambda: [tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(x)), tf.int32))],
    )


def _size_check(x, name: str):
    """``x`` = [B, H, W, ...]: B >= 1, H >= 2, W >= 2 (the rank was checked before)."""
    return (
        lambda: tf.logical_and(_padded(tf.shape(x))[0] >= 1, tf.reduce_all(_padded(tf.shape(x))[1:3] >= 2)),
        f"{name}: expected B >= 1, H >= 2, W >= 2; got shape {{}}",
        lambda: [tf.shape(x)],
    )


def _validate_kspace(kspace_real, kspace_imag, mask, coils: bool):
    """The checks of ``serving_default`` (``[B, H, W]``) and ``multicoil`` (``[B, C, H, W]``) inputs."""
    rank, layout = (4, "[B, C, H, W]") if coils else (3, "[B, H, W]")
    kshape, ishape, mshape = tf.shape(kspace_real), tf.shape(kspace_imag), tf.shape(mask)

    def spatial():  # [B, H, W]
        return tf.concat([_padded(kshape)[:1], _padded(kshape)[2:4]], 0) if coils else kshape

    expected_mask = lambda: spatial()[tf.maximum(3 - tf.size(mshape), 0) :]  # noqa: E731
    size_check = (
        (
            lambda: tf.logical_and(tf.reduce_all(_padded(kshape)[:2] >= 1), tf.reduce_all(_padded(kshape)[2:4] >= 2)),
            "kspace_real: expected B, C >= 1 and H, W >= 2; got shape {}",
            lambda: [kshape],
        )
        if coils
        else _size_check(kspace_real, "kspace_real")
    )
    checks = [
        _rank_check(kspace_real, "kspace_real", [rank], f"rank {rank} {layout}"),
        _rank_check(kspace_imag, "kspace_imag", [rank], f"rank {rank} {layout}"),
        (
            lambda: _same(kshape, ishape),
            "kspace_imag: expected the shape of kspace_real {}; got {}",
            lambda: [kshape, ishape],
        ),
        size_check,
        _rank_check(mask, "mask", [2, 3], "[H, W] or [B, H, W]"),
        (
            lambda: _same(mshape, expected_mask()),
            "mask: expected shape [H, W] or [B, H, W] = {}; got {}",
            lambda: [expected_mask(), mshape],
        ),
        _finite_check(kspace_real, "kspace_real"),
        _finite_check(kspace_imag, "kspace_imag"),
        _finite_check(mask, "mask"),
        (
            lambda: tf.reduce_all(tf.logical_or(tf.equal(mask, 0.0), tf.equal(mask, 1.0))),
            "mask: expected values 0 or 1; got values in [{}, {}]",
            lambda: [tf.reduce_min(mask), tf.reduce_max(mask)],
        ),
    ]
    kr, ki, m = _checked((kspace_real, kspace_imag, mask), checks)
    kr, ki = _as_rank(kr, rank), _as_rank(ki, rank)
    shape = tf.shape(kr)
    return tf.stack([kr, ki], axis=-1), tf.broadcast_to(m, tf.stack([shape[0], shape[-2], shape[-1]]))


def validate_kspace_inputs(kspace_real, kspace_imag, mask):
    """In-graph validation of ``serving_default``'s inputs (see ``INPUT_CONTRACT``), run before any FFT.

    Args:
        kspace_real, kspace_imag: float32 tensors of any rank (expected ``[B, H, W]``).
        mask: float32 tensor of any rank (expected ``[H, W]`` or ``[B, H, W]``).

    Returns:
        ``(kspace float32 [B, H, W, 2], mask float32 [B, H, W])`` (k-space in channel form) with
        static rank 4 and 3.

    Raises:
        tf.errors.InvalidArgumentError: naming the input, what was expected and what was received.
    """
    return _validate_kspace(kspace_real, kspace_imag, mask, coils=False)


def validate_multicoil_inputs(kspace_real, kspace_imag, mask):
    """In-graph validation of ``multicoil``'s inputs: k-space float32 ``[B, C, H, W]`` (equal shapes,
    finite), mask ``[H, W]`` or ``[B, H, W]`` of 0/1. Returns ``(kspace float32 [B, C, H, W, 2], mask
    float32 [B, H, W])``; raises ``InvalidArgumentError`` naming the input."""
    return _validate_kspace(kspace_real, kspace_imag, mask, coils=True)


def validate_zero_filled(zero_filled):
    """In-graph validation of ``from_zero_filled``'s input: float32 ``[B, H, W, 2]``, finite.

    Returns the input with static shape ``[None, None, None, 2]``; raises ``InvalidArgumentError``.
    """
    checks = [
        _rank_check(zero_filled, "zero_filled", [4], "rank 4 [B, H, W, 2]"),
        (
            lambda: tf.equal(_padded(tf.shape(zero_filled))[3], 2),
            "zero_filled: expected 2 channels (real, imag) in the last axis; got shape {}",
            lambda: [tf.shape(zero_filled)],
        ),
        _size_check(zero_filled, "zero_filled"),
        _finite_check(zero_filled, "zero_filled"),
    ]
    (zf,) = _checked((zero_filled,), checks)
    return tf.reshape(zf, tf.concat([_padded(tf.shape(zf), 3), [2]], axis=0))


def _outputs(recon, zero_filled):
    """The signatures' outputs of a reconstruction float32 ``[B, H, W, 2]`` at the input's scale:
    ``{"image": [B, H, W] magnitude, "complex_image": recon}``; a non-finite result raises naming
    ``image``."""
    image = abs_ch(recon)
    image, channels = _checked(
        (image, recon),
        [
            (
                lambda: tf.reduce_all(tf.math.is_finite(image)),
                "image: the reconstruction is not finite; k-space magnitudes this large overflow float32 in "
                "the FFT; got max |zero-filled| = {}",
                lambda: [tf.reduce_max(abs_ch(zero_filled))],
            )
        ],
    )
    return {"image": image, "complex_image": channels}


def _grad(x):
    """Periodic forward differences of complex ``x`` ``[H, W]``: ``[2, H, W]`` (the graph twin of
    ``baselines._grad``)."""
    return tf.stack([x - tf.roll(x, 1, axis=0), x - tf.roll(x, 1, axis=1)])


def _grad_adjoint(v):
    """Adjoint of :func:`_grad`: ``[2, H, W]`` -> ``[H, W]``."""
    return (v[0] - tf.roll(v[0], -1, axis=0)) + (v[1] - tf.roll(v[1], -1, axis=1))


def _norm(x):
    """The Frobenius norm of complex ``x``: a float32 scalar."""
    return tf.sqrt(tf.reduce_sum(tf.math.real(x * tf.math.conj(x))))


def tv_admm_graph(masked_kspace, mask, lam: float, tol: float, max_iter: int):
    """``baselines.tv_admm`` in a TensorFlow graph, slice by slice (``tf.map_fn``): ``argmin_x ½‖M F x
    − y‖² + λ Σ|∇x|`` by ADMM with the exact x-update, residual balancing of ρ and the same stopping
    rule (relative change of x over ``CHECK_EVERY`` iterations below ``tol``, at most ``max_iter``).

    The loop runs in ``ifftshift``ed coordinates, where the centred transform is a plain FFT: the
    periodic differences commute with the shift and the norms do not see it, so every iterate is
    the NumPy solver's shifted (one ``fftshift`` at the end), with no shifts inside the loop.

    Args:
        masked_kspace: float32 ``[B, H, W, 2]`` measured samples (zeros elsewhere), centred orthonormal.
        mask: float32 ``[B, H, W]`` of 0/1.
        lam, tol, max_iter: as ``baselines.tv_admm``'s (Python numbers, fixed in the graph).

    Returns:
        float32 ``[B, H, W, 2]``: the TV image.
    """
    from kerasrecon.baselines import CHECK_EVERY

    shape = tf.shape(masked_kspace)
    h, w = shape[1], shape[2]
    root = tf.cast(tf.sqrt(tf.cast(h * w, tf.float32)), tf.complex64)

    def eigen(n):  # the periodic second difference's eigenvalues (uncentred layout)
        return 2 - 2 * tf.cos(2 * math.pi * tf.cast(tf.range(n), tf.float32) / tf.cast(n, tf.float32))

    lap = tf.cast(eigen(h)[:, None] + eigen(w)[None, :], tf.complex64)

    def one(args):
        y, m = args  # uncentred k-space complex64 [H, W], mask complex64 [H, W]
        x = tf.signal.ifft2d(y) * root

        def step(it, x, z, u, rho, previous, done):
            r = tf.cast(rho, tf.complex64)
            k = tf.signal.fft2d(_grad_adjoint(z - u)) / root
            x_new = tf.signal.ifft2d((y + r * k) / (m + r * lap + 1e-12)) * root
            gx = _grad(x_new)
            v = gx + u
            z_new = v * tf.cast(tf.maximum(0.0, 1 - (lam / rho) / tf.maximum(tf.abs(v), 1e-30)), tf.complex64)
            u_new = v - z_new
            primal, dual = _norm(gx - z_new), rho * _norm(_grad_adjoint(z_new - z))
            up, down = primal > 10 * dual, dual > 10 * primal  # residual balancing, as tv_admm
            rho_new = tf.where(up, rho * 2, tf.where(down, rho / 2, rho))
            u_new = u_new * tf.cast(tf.where(up, 0.5, tf.where(down, 2.0, 1.0)), tf.complex64)
            it = it + 1
            check = tf.equal(it % CHECK_EVERY, 0)
            stop = tf.logical_and(check, _norm(x_new - previous) / tf.maximum(_norm(x_new), 1e-30) < tol)
            previous = tf.cond(check, lambda: x_new, lambda: previous)
            return it, x_new, z_new, u_new, rho_new, previous, stop

        state = (tf.constant(0), x, _grad(x), tf.zeros_like(_grad(x)), tf.constant(1.0), x, tf.constant(False))
        return tf.while_loop(lambda it, *rest: tf.logical_and(it < max_iter, tf.logical_not(rest[-1])), step, state)[1]

    y = tf.signal.ifftshift(tf.complex(masked_kspace[..., 0], masked_kspace[..., 1]), axes=(1, 2))
    m = tf.cast(tf.signal.ifftshift(mask, axes=(1, 2)), tf.complex64)
    x = tf.signal.fftshift(tf.map_fn(one, (y, m), fn_output_signature=tf.complex64), axes=(1, 2))
    return tf.stack([tf.math.real(x), tf.math.imag(x)], axis=-1)


class PnPModule(tf.Module):
    """A plug-and-play model's ``serving_default`` (:mod:`kerasrecon.pnp`) in one graph: masking,
    normalisation to the zero-filled peak, converged TV (:func:`tv_admm_graph`, λ ``pnp.tv_lambda``,
    the baselines' default stopping rule) or the zero-filled start, then ``pnp.iters`` denoiser and
    exact data-consistency steps, the self-ensemble averaged inside each denoiser step as
    ``Reconstructor``'s; the scale undone. Single-coil only: there is no ``multicoil`` signature."""

    def __init__(self, denoiser, cfg: TrainConfig, metadata: dict, ensemble: int = 1):
        from kerasrecon.baselines import DEFAULT_ITERS, default_tol
        from kerasrecon.pnp import sigmas

        super().__init__(name="kerasrecon")
        self.denoiser = denoiser
        self.multiple = 2**cfg.model.levels
        self.sigmas = tuple(float(v) for v in sigmas(cfg))
        self.tv = (
            (float(cfg.pnp.tv_lambda), float(default_tol("tv")), int(DEFAULT_ITERS)) if cfg.pnp.init == "tv" else None
        )
        self.ensemble = int(ensemble)
        self.metadata_json = tf.Variable(json.dumps(metadata, sort_keys=True), trainable=False, name="metadata_json")

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def denoise(self, x):
        """The denoiser, traced once for every step and ensemble member: float32 ``[B, H, W, 3]``
        (image channels and the noise level's map, H and W multiples of 2**levels) -> ``[B, H, W, 2]``."""
        return self.denoiser(x, training=False)

    def _denoise_once(self, x, sigma: float):
        shape = tf.shape(x)
        h, w = shape[1], shape[2]
        padded = tf.pad(x, [[0, 0], [0, -h % self.multiple], [0, -w % self.multiple], [0, 0]])
        noise_map = tf.fill(tf.concat([tf.shape(padded)[:3], [1]], 0), sigma)
        return self.denoise(tf.concat([padded, noise_map], -1))[:, :h, :w]

    def _denoise(self, x, sigma: float):
        if self.ensemble == 1:
            return self._denoise_once(x, sigma)
        total = 0.0
        for t in range(self.ensemble):
            total = total + dihedral_ch(self._denoise_once(dihedral_ch(x, t), sigma), t, inverse=True)
        return total / float(self.ensemble)

    @tf.function(autograph=False, input_signature=KSPACE_SIGNATURE)
    def serve(self, kspace_real, kspace_imag, mask):
        kspace, mask = validate_kspace_inputs(kspace_real, kspace_imag, mask)
        masked = kspace * mask[..., None]
        zero_filled = ifft2c_ch(masked)
        x, scale = normalise_ch(zero_filled)
        y = masked * scale
        if self.tv is not None:
            x = tv_admm_graph(y, mask, *self.tv)
        for sigma in self.sigmas:
            x = ifft2c_ch(y + (1 - mask[..., None]) * fft2c_ch(self._denoise(x, sigma)))
        return _outputs(x / scale, zero_filled)


class ReconModule(tf.Module):
    """k-space → image reconstruction with the generator, DC and normalisation inside the graph.

    Inputs are validated in the graph (``INPUT_CONTRACT``); the signatures accept any rank so that a
    wrongly shaped input reaches the checks instead of a kernel that assumes rank 3.
    """

    def __init__(
        self,
        generator,
        metadata: dict,
        multicoil_generator=None,
        center_fraction: float = CENTER_FRACTION,
        ensemble: int = 1,
    ):
        super().__init__(name="kerasrecon")
        self.generator = generator
        self.ensemble = int(ensemble)
        self.multicoil_generator = multicoil_generator
        self.center_fraction = float(center_fraction)
        # A string Variable is saved with the module (a constant would not be), so bare TensorFlow
        # reads it as ``tf.saved_model.load(path).metadata_json.numpy()``.
        self.metadata_json = tf.Variable(json.dumps(metadata, sort_keys=True), trainable=False, name="metadata_json")

    # The generators are called through these functions, traced once each: every signature and every
    # member of the self-ensemble calls the same graph, which the SavedModel stores once (instead of
    # tracing, and saving, the generator again at each call site).
    @tf.function(autograph=False, input_signature=[_CHANNELS, _CHANNELS, _MASK])
    def generate(self, zero_filled, masked_kspace, mask):
        """The single-coil generator: float32 ``[B, H, W, 2]`` (normalised zero-filled image and
        masked k-space), mask ``[B, H, W]`` -> float32 ``[B, H, W, 2]``."""
        inputs = {"zero_filled": zero_filled, "masked_kspace": masked_kspace, "mask": mask}
        return self.generator(inputs, training=False)

    @tf.function(autograph=False, input_signature=[_CHANNELS, _COIL_CHANNELS, _MASK, _COIL_CHANNELS])
    def generate_multicoil(self, zero_filled, masked_kspace, mask, maps):
        """The multi-coil generator: SENSE-combined ``[B, H, W, 2]``, coil k-space and maps
        ``[B, C, H, W, 2]``, mask ``[B, H, W]`` (float32) -> float32 ``[B, H, W, 2]``."""
        inputs = {"zero_filled": zero_filled, "masked_kspace": masked_kspace, "mask": mask, "maps": maps}
        return self.multicoil_generator(inputs, training=False)

    def _run(self, zero_filled, masked_kspace, mask, maps=None):
        """The generator on ``kspace.normalise_ch``-scaled inputs (channel form ``[B, ..., 2]``), with
        the scale undone on its output; a non-finite result raises naming ``image``."""
        zf, scale = normalise_ch(zero_filled)
        if maps is None:
            out = self.generate(zf, masked_kspace * scale, mask)
        else:
            out = self.generate_multicoil(zf, masked_kspace * scale[:, None], mask, maps)
        return _outputs(out / scale, zero_filled)

    def _ensembled(self, zero_filled, masked_kspace, mask, maps=None):
        """``_run`` on the input and its first ``ensemble - 1`` grid transforms, complex outputs turned
        back and averaged (``kspace.dihedral_ch``); ``_run`` itself when ``ensemble`` is 1."""
        if self.ensemble == 1:
            return self._run(zero_filled, masked_kspace, mask, maps)
        total = 0.0
        for t in range(self.ensemble):
            out = self._run(
                dihedral_ch(zero_filled, t),
                dihedral_ch(masked_kspace, t),
                dihedral_ch(mask, t, channels=False),
                None if maps is None else dihedral_ch(maps, t),
            )
            total = total + dihedral_ch(out["complex_image"], t, inverse=True)
        recon = total / float(self.ensemble)
        return {"image": abs_ch(recon), "complex_image": recon}

    @tf.function(autograph=False, input_signature=KSPACE_SIGNATURE)
    def serve(self, kspace_real, kspace_imag, mask):
        kspace, mask = validate_kspace_inputs(kspace_real, kspace_imag, mask)
        masked = kspace * mask[..., None]
        return self._ensembled(ifft2c_ch(masked), masked, mask)

    @tf.function(autograph=False, input_signature=KSPACE_SIGNATURE)
    def multicoil(self, kspace_real, kspace_imag, mask):
        from kerasrecon.coils import acs_lines_ch, acs_maps_ch

        kspace, mask = validate_multicoil_inputs(kspace_real, kspace_imag, mask)
        masked = kspace * mask[:, None, ..., None]
        maps = acs_maps_ch(masked, acs_lines_ch(tf.shape(kspace)[3], self.center_fraction))
        return self._ensembled(sense_adjoint_ch(masked, maps, mask), masked, mask, maps)

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.float32, name="zero_filled")])
    def from_zero_filled(self, zero_filled):
        zero_filled = validate_zero_filled(zero_filled)
        zeros = tf.zeros(tf.shape(zero_filled)[:3], tf.float32)
        return self._ensembled(zero_filled, tf.zeros_like(zero_filled), zeros)  # an empty mask: DC is the identity


def export_run(run_dir, out, force: bool = False, ensemble: int = 1) -> Path:
    """Export a run's newest intact generator to a SavedModel at ``out``.

    The run directory is read under a shared lock (a training process writing it makes this a
    one-line error); ``out`` is written under a temporary name and renamed when complete.

    Args:
        run_dir: a ``kerasrecon fit`` output directory, or ``pretrained:NAME`` (a shipped model).
        out: export directory; must not exist or be empty, must not overlap ``run_dir``.
        force: replace an existing export at ``out`` (never a directory that is not one).
        ensemble: self-ensemble size baked into every signature (1, 2, 4 or 8; see the module doc).

    Returns:
        ``out`` as a Path.
    """
    from kerasrecon.io import RunLock, atomic_dir, check_output
    from kerasrecon.pretrained import load_pretrained, pretrained_name
    from kerasrecon.training.checkpoint import load_generator

    ensemble = check_ensemble(ensemble, arg("ensemble"))

    out = check_output(
        out,
        arg("out"),
        inputs=[("RUN_DIR", run_dir)],
        force=force,
        kind="dir",
        replaceable=is_export,
        what="a kerasrecon export",
    )
    if pretrained_name(run_dir) is not None:
        cfg, generator, step, _ = load_pretrained(pretrained_name(run_dir), "RUN_DIR")
    else:
        with RunLock(run_dir, exclusive=False, option="RUN_DIR"):
            cfg, generator, step = load_generator(run_dir)
    metadata = {
        "kerasrecon_version": __version__,
        "tensorflow_version": tf.__version__,
        "run": str(run_dir),
        "step": step,
        "ensemble": int(ensemble),
        "train_config": cfg.to_dict(),
        "normalisation": NORMALISATION,
        "kspace_convention": CONVENTION,
        "signatures": SIGNATURES,
        "input_contract": INPUT_CONTRACT,
    }
    if cfg.pnp is not None:
        from kerasrecon.baselines import DEFAULT_ITERS, default_tol

        metadata["signatures"] = {"serving_default": SIGNATURES["serving_default"]}
        tv = f"converged TV (λ {cfg.pnp.tv_lambda:g}, tol {default_tol('tv'):g}, at most {DEFAULT_ITERS} iterations)"
        metadata["plug_and_play"] = PNP_SOLVER.format(
            start=tv if cfg.pnp.init == "tv" else "the zero-filled image",
            iters=cfg.pnp.iters,
            first=cfg.pnp.sigma_first,
            last=cfg.pnp.sigma_last,
        )
        module = PnPModule(generator, cfg, metadata, ensemble)
        signatures = {"serving_default": module.serve}
    else:
        from kerasrecon.masks import resolved_center_fraction
        from kerasrecon.models.generator import multicoil_twin

        multicoil = multicoil_twin(generator, cfg.model)
        fraction = resolved_center_fraction(cfg.mask.kind, cfg.mask.center_fraction)
        metadata["multicoil_acs"] = f"centre columns: max(4, round({fraction} * W))"
        module = ReconModule(generator, metadata, multicoil, fraction, ensemble)
        signatures = {
            "serving_default": module.serve,
            "from_zero_filled": module.from_zero_filled,
            "multicoil": module.multicoil,
        }
    with atomic_dir(out, "export", replace=force, option=arg("out")) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        (tmp / "assets").mkdir(exist_ok=True)
        (tmp / "assets" / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    return out


SERVING_INPUTS = {"kspace_real", "kspace_imag", "mask"}


def is_export(path) -> bool:
    """True when directory ``path`` holds a kerasrecon export (``saved_model.pb`` and its metadata file),
    the only kind of directory ``export --force`` replaces."""
    path = Path(path)
    return (path / "saved_model.pb").is_file() and (path / "assets" / METADATA_FILE).is_file()


def load_export(path):
    """Load an exported SavedModel; returns ``(loaded object, metadata dict)``.

    Raises:
        ConfigError: naming ``--model`` when ``path`` is not a SavedModel or not a kerasrecon export
            (other signatures, no metadata).
    """
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise ConfigError(f"{arg('model')} {path}: not a SavedModel directory (no saved_model.pb)")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # a damaged or foreign SavedModel: TF raises many kinds
        raise ConfigError(
            f"{arg('model')} {path}: cannot load the SavedModel ({exc.__class__.__name__}: "
            f"{str(exc).strip().splitlines()[0][:100] if str(exc).strip() else ''})"
        ) from None
    sig = loaded.signatures.get("serving_default") if hasattr(loaded, "signatures") else None
    inputs = set(sig.structured_input_signature[1]) if sig is not None else set()
    if inputs != SERVING_INPUTS or not hasattr(loaded, "metadata_json"):
        raise ConfigError(
            f"{arg('model')} {path}: not a kerasrecon export; expected "
            f"serving_default({', '.join(sorted(SERVING_INPUTS))}) "
            f"and metadata_json, got serving_default({', '.join(sorted(inputs)) or 'missing'})"
        )
    from kerasrecon.schema import from_dict, parse_json

    where = f"{arg('model')} {path}: metadata_json"
    try:
        raw = loaded.metadata_json.numpy()
    except AttributeError:
        raise ConfigError(f"{where} is not a string variable") from None
    meta = parse_json(raw, where, "kerasrecon export metadata")
    from_dict(ExportMetadata, meta, where, extra="ignore")  # structure and types; the dict is what callers use
    return loaded, meta


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
    """The export metadata fields a reader relies on (``metadata_json`` and ``assets/kerasrecon.json``
    carry more: versions, signatures, the input contract)."""

    train_config: TrainConfig
    step: int | None = None
    kerasrecon_version: str | None = None
