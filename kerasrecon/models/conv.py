"""The models' 2-D convolution: ``keras.layers.Conv2D`` whose kernel gradient is computed in batch
chunks on JAX's CPU backend.

XLA:CPU computes a convolution's kernel gradient (the backward-filter convolution, a contraction over
the batch and both spatial axes) on one thread and at a fifth of the forward convolution's rate: for a
3×3 64→64 convolution on ``[16, 96, 96, 64]`` on 2 cores, 0.32 s against 0.055 s for the forward and
0.055 s for the input gradient (``benchmarks/backend_profile.py``). The same gradient written as the
sum of per-chunk gradients (each a backward-filter convolution over ``B / chunks`` images) runs the
chunks concurrently and takes 0.11 s. The sum is the same gradient up to float32 round-off (the order
of a sum); tested against NumPy. Forward and input gradient are XLA's own.

Small maps (VGG19's deep layers on small patches) are convolved as one matrix product of their
patches instead: XLA:CPU's convolution is slowest there (see ``SMALL_MAP_PIXELS``).

Both apply on JAX when the default device is a CPU and the program runs on one device; on GPUs
(cuDNN's kernels), on TensorFlow (oneDNN's) and over several devices (where slicing the sharded batch
axis would move data between devices) the layer is exactly ``keras.layers.Conv2D``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

# Chunks of the batch axis for the kernel gradient: 16 was the fastest of 2, 4, 8, 16 for batch 16 on
# 2 cores (0.20, 0.14, 0.12, 0.11 s against 0.32 s unchunked).
KERNEL_GRAD_CHUNKS = 16


def chunked_kernel_grad() -> bool:
    """Whether convolutions traced now compute their kernel gradient in batch chunks: the JAX backend
    on one CPU device."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu" and jax.device_count() == 1


def conv_with_chunked_kernel_grad(conv, inputs, kernel, chunks: int = KERNEL_GRAD_CHUNKS):
    """``conv(inputs, kernel)`` (JAX) whose kernel gradient is the sum of the gradients of ``chunks``
    slices of the batch axis, accumulated in float32.

    Args:
        conv: ``(inputs, kernel) -> outputs``, a JAX-traceable convolution (any strides, padding).
        inputs: ``[B, H, W, C_in]`` (the layer's compute dtype); ``B`` must be static.
        kernel: ``[kh, kw, C_in, C_out]``, the same dtype.
        chunks: number of batch slices (at most ``B``).

    Returns:
        ``conv(inputs, kernel)``, ``[B, H', W', C_out]``; its VJP gives XLA's input gradient and the
        chunked kernel gradient (``kernel``'s dtype).
    """
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def f(x, k):
        return conv(x, k)

    def forward(x, k):
        return conv(x, k), (x, k)

    def backward(saved, dy):
        x, k = saved
        dx = jax.vjp(lambda a: conv(a, k), x)[1](dy)[0]
        bounds = np.linspace(0, x.shape[0], min(chunks, x.shape[0]) + 1).round().astype(int)
        dk = jnp.zeros(k.shape, jnp.float32)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            part = jax.vjp(lambda w, lo=lo, hi=hi: conv(x[lo:hi], w), k)[1](dy[lo:hi])[0]
            dk = dk + part.astype(jnp.float32)
        return dx, dk.astype(k.dtype)

    f.defvjp(forward, backward)
    return f(inputs, kernel)


# Input maps of at most this many pixels are convolved as one matrix product of the 3×3 patches
# (im2col): XLA:CPU's convolution runs a 3×3 512→512 convolution of a [4, 2, 2, 512] map at 3 GFLOP/s
# (29 ms; its input gradient 36 ms), the matrix product at 237 GFLOP/s (0.3 ms; 0.7 ms); at 4×4 and
# 6×6 the product is still faster (1.5 vs 2.6 ms, 13 vs 19 ms), at 12×12 the convolution (14 vs 23 ms).
# These are VGG19's deep layers: its block5 maps are 2×2 for 32×32 patches and 6×6 for 96×96.
SMALL_MAP_PIXELS = 64


def conv_as_matmul(inputs, kernel, strides: int = 1):
    """A 'same' convolution as one matrix product of the input's patches (im2col).

    Args:
        inputs: ``[B, H, W, C_in]`` (any float dtype).
        kernel: ``[kh, kw, C_in, C_out]``, the same dtype.
        strides: the stride of both spatial axes.

    Returns:
        ``[B, ⌈H/s⌉, ⌈W/s⌉, C_out]``: ``Σ_ij pad(inputs)[:, s·h+i, s·w+j, :] @ kernel[i, j]``, padded
        as TensorFlow and XLA pad 'same' (the odd pixel after); its gradients are the products'
        transposes (matrix products too).
    """
    from keras import ops

    kh, kw, c_in, c_out = kernel.shape
    b, h, w = inputs.shape[0], inputs.shape[1], inputs.shape[2]
    oh, ow = -(-h // strides), -(-w // strides)
    ph, pw = max((oh - 1) * strides + kh - h, 0), max((ow - 1) * strides + kw - w, 0)
    padded = ops.pad(inputs, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)])
    rows, cols = (oh - 1) * strides + 1, (ow - 1) * strides + 1
    taps = [padded[:, i : i + rows : strides, j : j + cols : strides, :] for i in range(kh) for j in range(kw)]
    patches = ops.reshape(ops.concatenate(taps, axis=-1), (-1, kh * kw * c_in))
    return ops.reshape(ops.matmul(patches, ops.reshape(kernel, (kh * kw * c_in, c_out))), (b, oh, ow, c_out))


@keras.saving.register_keras_serializable(package="kerasrecon")
class Conv2D(layers.Conv2D):
    """``keras.layers.Conv2D`` (same arguments, weights and outputs). Where :func:`chunked_kernel_grad`
    holds (JAX on one CPU device): 'same' convolutions of input maps of at most
    ``SMALL_MAP_PIXELS`` pixels run as :func:`conv_as_matmul`, the others with the kernel gradient of
    :func:`conv_with_chunked_kernel_grad`."""

    def convolution_op(self, inputs, kernel):
        plain = super().convolution_op
        if not chunked_kernel_grad() or inputs.shape[0] is None:
            return plain(inputs, kernel)
        # a Keras variable's value (the stateless call's, when one is running): custom_vjp takes arrays
        inputs, kernel = keras.ops.convert_to_tensor(inputs), keras.ops.convert_to_tensor(kernel)
        if self._as_matmul(inputs):
            return conv_as_matmul(keras.ops.cast(inputs, kernel.dtype), kernel, self.strides[0])
        return conv_with_chunked_kernel_grad(plain, inputs, kernel)

    @classmethod
    def replacing(cls, model: keras.Model) -> keras.Model:
        """A copy of the functional ``model`` (same layers, names and weights) in which every
        ``keras.layers.Conv2D`` is this class (e.g. ``keras.applications``' VGG19)."""

        def clone(layer):
            if type(layer) is layers.Conv2D:
                return cls.from_config(layer.get_config())
            return layer.__class__.from_config(layer.get_config())

        twin = keras.models.clone_model(model, clone_function=clone)
        twin.set_weights(model.get_weights())
        return twin

    def _as_matmul(self, inputs) -> bool:
        return (
            self.data_format == "channels_last"
            and self.padding == "same"
            and self.strides[0] == self.strides[1]
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and inputs.shape[1] * inputs.shape[2] <= SMALL_MAP_PIXELS
        )
