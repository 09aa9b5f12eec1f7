"""Residual PReLU generator with a data-consistency layer (the thesis' generator, SRResNet-style).

Layout (every layer named): Conv3×3·F + PReLU → B × [Conv3×3·F, BN, PReLU, Conv3×3·F, BN, + skip]
→ Conv3×3·F + BN + long skip → Conv3×3·2 (zero-initialised) added to the zero-filled input (residual
learning)
→ ``DataConsistency`` (measured k-space samples put back). Fully convolutional: any H, W.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from kerasrecon import kspace
from kerasrecon.coils import MAP_THRESHOLD
from kerasrecon.config import DENOISER, ModelConfig
from kerasrecon.models.batchnorm import BatchNormalization
from kerasrecon.models.conv import Conv2D

KERNEL = 3
# BN moving statistics (used at evaluation) follow the weights within ~10 updates; with Keras' default
# 0.99 they lag ~100 steps behind a generator that is still changing, which cost the 300-step demo
# run 9.1 dB PSNR on held-out slices (MSE run: 29.84 dB with 0.99, 38.95 dB with 0.9).
BN_MOMENTUM = 0.9
# μ of a data-consistency layer with cg_iters at initialisation (MoDL starts its λ at 0.05): a step
# between the network's image (μ → ∞) and the least-squares SENSE solution (μ → 0).
CG_MU_INIT = 0.1


def sync_batchnorm() -> bool:
    """BatchNorm ``synchronized`` for a model built now: on TensorFlow inside an explicit
    ``tf.distribute`` strategy (MirroredStrategy, MultiWorkerMirroredStrategy), batch statistics are
    all-reduced over its replicas, so N replicas equal the same strategy on one device (tested). Not
    under the default strategy (one device, ``--strategy auto|none`` without several GPUs): Keras'
    synchronised statistics use the one-pass variance E[x²] − E[x]², whose round-off made a GAN
    step's generator update differ by 0.7 % from the two-pass formula (measured on the output conv,
    tests/test_backends.py). On JAX the flag is not accepted and not needed: the step is one
    jit-compiled program over the sharded global batch, so the statistics are global anyway."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy()


def wide_dtype(dtype=None) -> str:
    """The dtype of the parts that stay wide under mixed precision (FFTs, data consistency, the
    generator's output conv and residual, the discriminator's output, the losses): ``"float64"``
    when ``dtype`` — a dtype policy or its name (default: the global policy), or a tensor's dtype —
    computes in float64, the reference precision for numerical checks, else ``"float32"`` (also for
    the bfloat16/float16 tensors of mixed precision)."""
    if dtype is None:
        dtype = keras.config.dtype_policy()
    elif not isinstance(dtype, (str, keras.DTypePolicy)):
        dtype = keras.backend.standardize_dtype(dtype)  # a tensor's dtype (tf.float64, jnp.float32): its name
    return "float64" if keras.dtype_policies.get(dtype).compute_dtype == "float64" else "float32"


@keras.saving.register_keras_serializable(package="kerasrecon")
class DataConsistency(layers.Layer):
    """Replace (hard) or blend (soft, noise λ) measured k-space samples into an image.

    Call args:
        inputs: list ``[image, masked_kspace, mask]``: image float32 ``[B, H, W, 2]``, masked_kspace
            float32 ``[B, H, W, 2]`` (measured samples, zeros elsewhere), mask float32 ``[B, H, W]``;
            multi-coil: ``[image, masked_kspace, mask, maps]`` with masked_kspace and maps float32
            ``[B, C, H, W, 2]`` (``kspace.sense_data_consistency_ch``).

    Returns:
        float32 ``[B, H, W, 2]``: ``ifft2c((1 - M) F(image) + M s0)`` (hard) or the soft blend; multi-coil
        the SENSE combination of the coils' consistent k-space.

    Args:
        noise_lambda: ``None`` (hard, default) or a positive float (soft).
        learned: learn the step η of ``k − η M ⊙ (k − s0)`` (a scalar weight ``eta``, initialised to 1:
            hard replacement); ``noise_lambda`` is then unused.
        cg_iters: 0 (default), or MoDL's data consistency: ``x = argmin ‖A x − s0‖² + μ ‖x − image‖²``
            with a learned μ > 0 (weight ``log_mu``, μ = exp(log_mu), initialised to ``CG_MU_INIT``).
            Multi-coil it is ``cg_iters`` conjugate-gradient iterations on ``(AᴴA + μI) x = Aᴴs0 + μ·image``
            from ``image`` (``kspace.sense_cg_solve_ch``): the coils' redundancy resolves aliasing,
            which replacing each coil's samples does not. Single-coil it is the exact solution,
            ``η = 1 / (1 + μ)`` above, so the same weights load into both graphs.
    """

    def __init__(self, noise_lambda: float | None = None, learned: bool = False, cg_iters: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.noise_lambda, self.learned, self.cg_iters = noise_lambda, learned, int(cg_iters)
        self.eta = self.log_mu = None
        if learned:
            self.eta = self.add_weight(shape=(), initializer=keras.initializers.Constant(1.0), name="eta")
        if self.cg_iters:
            self.log_mu = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(float(np.log(CG_MU_INIT))), name="log_mu"
            )

    def call(self, inputs):
        eta = None if self.eta is None else keras.ops.cast(self.eta, self.compute_dtype)
        mu = None if self.log_mu is None else keras.ops.exp(keras.ops.cast(self.log_mu, self.compute_dtype))
        if len(inputs) == 4:
            image, masked_kspace, mask, maps = (keras.ops.cast(t, self.compute_dtype) for t in inputs)
            if mu is not None:
                rhs = kspace.sense_adjoint_ch(masked_kspace, maps, mask) + mu * image
                return kspace.sense_cg_solve_ch(rhs, maps, mask, mu, self.cg_iters, x0=image)
            return kspace.sense_data_consistency_ch(image, masked_kspace, maps, mask, self.noise_lambda, eta)
        image, masked_kspace, mask = (keras.ops.cast(t, self.compute_dtype) for t in inputs)
        if mu is not None:
            eta = 1.0 / (1.0 + mu)
        return kspace.data_consistency_ch(image, masked_kspace, mask, self.noise_lambda, eta)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "noise_lambda": self.noise_lambda,
            "learned": self.learned,
            "cg_iters": self.cg_iters,
        }


@keras.saving.register_keras_serializable(package="kerasrecon")
class MapPhase(layers.Layer):
    """The multi-coil graph's map convention (no weights): turn the maps a caller brings into the
    convention of ACS maps, which the networks see in training, and turn the result back.

    Maps are defined up to a phase and off the object: ``S_c e^{iθ}`` fits the same data for any θ,
    and true or ESPIRiT maps are non-zero where ACS maps are 0. Given the same data, the shipped
    multi-coil model returned the zero-filled image for ACS maps times a constant phase, and 4 dB less
    with the true maps than with ACS maps (aliasing off the object, which ACS maps cut away, was never
    in its training inputs). Here ``u = kspace.map_phase_ch(masked_kspace, maps, support=MAP_THRESHOLD)``:
    the unit phase of the low-resolution SENSE image, 0 where the low-resolution RSS is below
    ``MAP_THRESHOLD`` of its peak (the support rule of ``coils.acs_maps_np``).

    Call args:
        inputs: ``[zero_filled, masked_kspace, maps]`` float32 ``[B, H, W, 2]``, ``[B, C, H, W, 2]``,
            ``[B, C, H, W, 2]``.

    Returns:
        ``[zero_filled · conj(u), maps · u, u]`` (float32 ``[B, H, W, 2]``, ``[B, C, H, W, 2]``,
        ``[B, H, W, 2]``): the data in the convention where the low-resolution SENSE image is real,
        non-negative and 0 off the support. The graph's output times ``u`` is back in the caller's
        convention; for maps that differ by a constant phase it is the same image turned by it.
    """

    def call(self, inputs):
        zero_filled, masked_kspace, maps = (keras.ops.cast(t, self.compute_dtype) for t in inputs)
        u = kspace.map_phase_ch(masked_kspace, maps, support=MAP_THRESHOLD)
        turned_maps = kspace.complex_mul_ch(maps, keras.ops.expand_dims(u, 1))
        return [kspace.complex_mul_ch(u, zero_filled, conjugate_a=True), turned_maps, u]

    def compute_output_shape(self, input_shape):
        return [input_shape[0], input_shape[2], input_shape[0]]


@keras.saving.register_keras_serializable(package="kerasrecon")
class ComplexMultiply(layers.Layer):
    """``x · u`` of channel-form tensors: inputs ``[x, u]`` float32 ``[B, H, W, 2]`` -> ``[B, H, W, 2]``."""

    def call(self, inputs):
        x, u = (keras.ops.cast(t, self.compute_dtype) for t in inputs)
        return kspace.complex_mul_ch(x, u)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="kerasrecon")
class CropTo(layers.Layer):
    """The U-Net's crop after upsampling: inputs ``[x, ref]``, ``x`` ``[B, H', W', C]`` with ``H' >= H``,
    ``W' >= W``, ``ref`` ``[B, H, W, C_ref]`` -> ``x[:, :H, :W]`` (an odd size pooled to ⌈H/2⌉ and
    upsampled is one row longer than its skip connection)."""

    def call(self, inputs):
        x, ref = inputs
        shape = keras.ops.shape(ref)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shape):
        x, ref = input_shape
        return (x[0], ref[1], ref[2], x[3])


def _conv(filters, name, use_bias=True, dtype=None):
    # Convs followed by BatchNorm have no bias: BN's β makes it redundant, and its gradient is zero up
    # to round-off, which Adam would turn into full-size random steps.
    return Conv2D(filters, KERNEL, padding="same", use_bias=use_bias, name=name, dtype=dtype)


def _zero_output_conv(name, dtype, bias_free=False):
    """The regulariser's last conv: 2 channels (re, im), zero-initialised, so the untrained network
    adds nothing to its input image."""
    return Conv2D(2, KERNEL, padding="same", kernel_initializer="zeros", use_bias=not bias_free, dtype=dtype, name=name)


def _prelu(name, dtype=None):
    # Shared over H, W so the generator stays fully convolutional (one slope per channel).
    return layers.PReLU(shared_axes=[1, 2], name=name, dtype=dtype)


def _bn(name, dtype=None, bias_free=False):
    if bias_free:
        return ScaleNorm(momentum=BN_MOMENTUM, name=name, dtype=dtype)
    return BatchNormalization(momentum=BN_MOMENTUM, synchronized=sync_batchnorm(), name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="kerasrecon")
class ScaleNorm(layers.Layer):
    """BatchNorm without its additive parts (the bias-free networks' normalisation): ``γ · x / √(v + ε)``
    per channel, ``v`` the mean of ``x²`` over batch, height and width in training (no mean subtracted,
    no shift β) and its moving average at inference, so the layer is linear at inference.

    Under a ``tf.distribute`` strategy the batch statistic is averaged over the replicas (the global
    batch's, as for the synchronised BatchNorm); a jit-compiled JAX step sees the global batch anyway.

    Call args:
        x: ``[B, H, W, C]`` (the layer's dtype policy); ``training``: batch or moving statistic.

    Returns:
        the same shape and dtype.
    """

    def __init__(self, momentum: float = BN_MOMENTUM, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.momentum, self.epsilon = momentum, epsilon

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.gamma = self.add_weight(shape=channels, initializer="ones", name="gamma")
        self.moving_mean_square = self.add_weight(
            shape=channels, initializer="ones", trainable=False, name="moving_mean_square"
        )

    def call(self, x, training=False):
        x32 = keras.ops.cast(x, "float32") if self.compute_dtype != "float64" else x
        if training:
            v = keras.ops.mean(keras.ops.square(x32), axis=(0, 1, 2))
            v = _replica_mean(v)
            m = keras.ops.cast(self.momentum, v.dtype)
            self.moving_mean_square.assign(
                m * keras.ops.cast(self.moving_mean_square, v.dtype) + (1 - m) * keras.ops.stop_gradient(v)
            )
        else:
            v = keras.ops.cast(self.moving_mean_square, x32.dtype)
        gain = keras.ops.cast(self.gamma, x32.dtype) * keras.ops.rsqrt(v + self.epsilon)
        return keras.ops.cast(x32 * gain, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


def _replica_mean(v):
    """``v`` averaged over the replicas of a TensorFlow ``tf.distribute`` replica context (replicas hold
    equal batches, so this is the global batch's statistic); ``v`` itself elsewhere."""
    if keras.backend.backend() != "tensorflow":
        return v
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return v
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, v)


def build_generator(
    blocks: int = ModelConfig.blocks,
    filters: int = ModelConfig.filters,
    noise_lambda: float | None = ModelConfig.noise_lambda,
    data_consistency: bool = True,
    cascades: int = 1,
    dtype=None,
    multicoil: bool = False,
    learned_dc: bool = ModelConfig.learned_dc,
    network: str = ModelConfig.network,
    levels: int = ModelConfig.levels,
    share_weights: bool = ModelConfig.share_weights,
    bias_free: bool = ModelConfig.bias_free,
    cg_iters: int = ModelConfig.cg_iters,
) -> keras.Model:
    """Build the generator.

    Args:
        blocks: int, residual blocks B per stage (default 16, the thesis).
        filters: int, conv filters (default 64).
        noise_lambda: ``None`` for hard DC, else soft DC with this λ.
        data_consistency: include the DC layers (default True).
        cascades: K stages ``[residual network → DC]`` in series, each refining the previous
            stage's image (cascaded DC networks; K = 1 is the thesis' generator). Layer names get
            the prefix ``g_`` for K = 1 and ``g{k}_`` (k = 1..K) otherwise.
        learned_dc: each DC layer learns its step η (``DataConsistency(learned=True)``).
        cg_iters: 0, or each DC layer is MoDL's regularised solve with a learned μ
            (``DataConsistency(cg_iters=...)``: conjugate gradients on multi-coil data).
        network: each stage's regulariser, ``resnet`` (the residual network above; ``blocks``) or
            ``unet`` (:func:`unet`; ``levels``, ``filters``), a nested model named ``{prefix}unet``.
        levels: the U-Net's 2× poolings.
        share_weights: one regulariser for all cascades (layer names ``g_...`` / ``g_unet``); each
            cascade keeps its own DC layer ``g{k}_data_consistency``.
        bias_free: no additive constant in the regulariser (convolutions without bias, :class:`ScaleNorm`
            for BatchNorm, same layer names), so the generator is scale-equivariant at inference:
            ``G(c·x) = c·G(x)`` for c > 0 (PReLU, pooling, upsampling, DC and the residuals are
            positively homogeneous).
        multicoil: inputs for multi-coil data consistency: ``masked_kspace`` ``[B, C, H, W, 2]`` and
            ``maps`` ``[B, C, H, W, 2]`` (same weights as the single-coil graph: a model trained on
            either loads into both). The maps' phase convention is fixed first (``MapPhase``), so
            the model takes maps from any estimator.
        dtype: Keras dtype policy of the hidden layers (``"float32"``, ``"mixed_bfloat16"``,
            ``"mixed_float16"``, ``"float64"`` or a ``keras.DTypePolicy``); default: the global policy. The
            output conv, the residual and DC are float32 (float64 under a float64 policy). Nothing
            global is changed.

    Returns:
        ``keras.Model`` named ``generator`` with inputs ``{"zero_filled": [B, H, W, 2],
        "masked_kspace": [B, H, W, 2], "mask": [B, H, W]}`` (float32; float64 under a float64 policy) and
        output the complex image as float32 ``[B, H, W, 2]`` (float64 under a float64 policy).

    Example:
        >>> g = build_generator(blocks=2)
        >>> g({"zero_filled": x, "masked_kspace": k, "mask": m}).shape  # [B, H, W, 2]
    """
    wide = wide_dtype(dtype)  # a float64 reference must not round its inputs to float32
    zero_filled = keras.Input((None, None, 2), name="zero_filled", dtype=wide)
    coil_shape = (None,) if multicoil else ()
    masked_kspace = keras.Input((*coil_shape, None, None, 2), name="masked_kspace", dtype=wide)
    mask = keras.Input((None, None), name="mask", dtype=wide)
    inputs = {"zero_filled": zero_filled, "masked_kspace": masked_kspace, "mask": mask}
    dc_extra, image = [], zero_filled
    if multicoil:
        inputs["maps"] = keras.Input((None, None, None, 2), name="maps", dtype=wide)
        image, maps, phase = MapPhase(dtype=wide, name="map_phase")([zero_filled, masked_kspace, inputs["maps"]])
        dc_extra = [maps]
    shared = None
    if share_weights:  # one regulariser, called once per cascade
        shared = _regulariser(network, blocks, filters, levels, "g_", dtype, bias_free)
    for k in range(cascades):
        prefix = "g_" if cascades == 1 else f"g{k + 1}_"
        dc = DataConsistency(noise_lambda, learned_dc, cg_iters, dtype=wide, name=f"{prefix}data_consistency")
        body = (
            shared if shared is not None else _regulariser(network, blocks, filters, levels, prefix, dtype, bias_free)
        )
        image = body(image)
        if data_consistency:
            image = dc([image, masked_kspace, mask, *dc_extra])
    if multicoil:
        image = ComplexMultiply(dtype=wide, name="map_phase_back")([image, phase])
    return keras.Model(inputs, image, name="generator")


def from_config(model_cfg, dtype=None, multicoil: bool = False) -> keras.Model:
    """``build_generator`` with the architecture of ``model_cfg`` (a ``ModelConfig``): the one place a
    run's, a checkpoint's or a pretrained model's generator is built from its config."""
    m = model_cfg
    if m.network == DENOISER:  # a plug-and-play model's prior (kerasrecon.pnp)
        from kerasrecon.models.denoiser import build_denoiser

        return build_denoiser(m.filters, m.levels)
    return build_generator(
        m.blocks,
        m.filters,
        m.noise_lambda,
        cascades=m.cascades,
        dtype=dtype,
        multicoil=multicoil,
        learned_dc=m.learned_dc,
        network=m.network,
        levels=m.levels,
        share_weights=m.share_weights,
        bias_free=m.bias_free,
        cg_iters=m.cg_iters,
    )


def multicoil_twin(generator, model_cfg) -> keras.Model:
    """The multi-coil graph (``build_generator(multicoil=True)``) of a trained single-coil generator:
    the same architecture from ``model_cfg`` (a ``ModelConfig``), the same weights."""
    twin = from_config(model_cfg, multicoil=True)
    twin.set_weights(generator.get_weights())
    return twin


def _regulariser(network, blocks, filters, levels, prefix, dtype=None, bias_free=False):
    """One stage's network without its DC: a callable float32 ``[B, H, W, 2]`` image -> refined image
    (same shape). ``resnet``: its layers are applied in the caller's graph (layer names as in 0.5.0, so
    saved weights load); ``unet``: a nested model ``{prefix}unet``. Called twice, it shares weights
    (``resnet`` rebuilds nothing: a closure over one set of layers)."""
    if network == "unet":
        return unet(filters, levels, f"{prefix}unet", dtype, bias_free)
    layer_list = _resnet_layers(blocks, filters, prefix, dtype, bias_free)
    return lambda image: _apply_resnet(layer_list, image)


def _resnet_layers(blocks, filters, prefix, dtype=None, bias_free=False):
    """The residual network's layers, in the order :func:`_apply_resnet` calls them. They are created
    in that order too: a Keras initializer draws its seed when it is created, so this order keeps the
    initial weights of a seeded run those of 0.5.0 (tested)."""
    wide = wide_dtype(dtype)
    head = _conv(filters, f"{prefix}conv_in", use_bias=not bias_free, dtype=dtype)
    net = {"head": (head, _prelu(f"{prefix}prelu_in", dtype))}
    net["blocks"] = [
        (
            _conv(filters, f"{prefix}block{i + 1:02d}_conv1", use_bias=False, dtype=dtype),
            _bn(f"{prefix}block{i + 1:02d}_bn1", dtype, bias_free),
            _prelu(f"{prefix}block{i + 1:02d}_prelu", dtype),
            _conv(filters, f"{prefix}block{i + 1:02d}_conv2", use_bias=False, dtype=dtype),
            _bn(f"{prefix}block{i + 1:02d}_bn2", dtype, bias_free),
            layers.Add(name=f"{prefix}block{i + 1:02d}_add", dtype=dtype),
        )
        for i in range(blocks)
    ]
    net["mid"] = (
        _conv(filters, f"{prefix}conv_mid", use_bias=False, dtype=dtype),
        _bn(f"{prefix}bn_mid", dtype, bias_free),
        layers.Add(name=f"{prefix}long_skip", dtype=dtype),
    )
    # Zero-initialised output conv: the untrained generator is the identity on its input image
    # (then DC), so training starts from the zero-filled baseline instead of from random noise.
    # Output conv, residual and DC stay float32 under mixed precision (the image and the FFTs need it).
    net["out"] = (
        _zero_output_conv(f"{prefix}conv_out", wide, bias_free),
        layers.Add(dtype=wide, name=f"{prefix}residual"),
    )
    return net


def _apply_resnet(net, image_in):
    """Conv-PReLU head, residual blocks (Conv-BN-PReLU-Conv-BN + skip), Conv-BN + long skip, zero-
    initialised output conv added to the input image: float32 ``[B, H, W, 2]`` -> same."""
    conv_in, prelu_in = net["head"]
    x = head = prelu_in(conv_in(image_in))
    for conv1, bn1, prelu, conv2, bn2, add in net["blocks"]:
        x = add([x, bn2(conv2(prelu(bn1(conv1(x)))))])
    conv_mid, bn_mid, long_skip = net["mid"]
    x = long_skip([head, bn_mid(conv_mid(x))])
    conv_out, residual = net["out"]
    return residual([image_in, conv_out(x)])


def unet(filters: int, levels: int, name: str = "unet", dtype=None, bias_free: bool = False) -> keras.Model:
    """A U-Net regulariser (fastMRI's layout with the thesis' layers): per level two [Conv3×3, BN,
    PReLU] with ``filters · 2^level`` channels, 2× average pooling down, 2× nearest upsampling up
    (cropped to the skip connection, so any H, W), concatenation with the skip, two [Conv3×3, BN,
    PReLU]; a zero-initialised Conv3×3·2 added to the input (the untrained stage is the identity).

    Args:
        filters: channels at full resolution; ``levels``: 2× poolings (the receptive field grows as
            ``2^levels``); ``name``: the model's name; ``dtype``: the hidden layers' dtype policy (the
            output conv and residual are float32; float64 under a float64 policy); ``bias_free``: no
            conv biases and :class:`ScaleNorm` for BatchNorm (scale-equivariant).

    Returns:
        ``keras.Model`` float32 ``[B, H, W, 2]`` -> ``[B, H, W, 2]`` (any H, W ≥ 1).
    """
    wide = wide_dtype(dtype)
    image = keras.Input((None, None, 2), dtype=wide, name=f"{name}_image")

    def double_conv(x, channels, tag):
        for j in (1, 2):
            x = _conv(channels, f"{name}_{tag}_conv{j}", use_bias=False, dtype=dtype)(x)
            x = _bn(f"{name}_{tag}_bn{j}", dtype, bias_free)(x)
            x = _prelu(f"{name}_{tag}_prelu{j}", dtype)(x)
        return x

    x, skips = image, []
    for level in range(levels):
        x = double_conv(x, filters * 2**level, f"down{level}")
        skips.append(x)
        x = layers.AveragePooling2D(2, padding="same", name=f"{name}_pool{level}", dtype=dtype)(x)
    x = double_conv(x, filters * 2**levels, "bottom")
    for level in reversed(range(levels)):
        x = layers.UpSampling2D(2, name=f"{name}_up{level}", dtype=dtype)(x)
        x = CropTo(name=f"{name}_crop{level}", dtype=dtype)([x, skips[level]])
        x = layers.Concatenate(name=f"{name}_concat{level}", dtype=dtype)([x, skips[level]])
        x = double_conv(x, filters * 2**level, f"up{level}")
    x = _zero_output_conv(f"{name}_conv_out", wide, bias_free)(x)
    out = layers.Add(dtype=wide, name=f"{name}_residual")([image, x])
    return keras.Model(image, out, name=name)
