"""The models' BatchNormalization: ``keras.layers.BatchNormalization`` computed by TensorFlow's fused
kernel where it can be.

Keras 3 computes BatchNormalization from separate operations on every backend (the moments, then
``(x − mean) · γ / √(var + ε) + β``), several element-wise passes over the map forward and more
backward. On TensorFlow, ``FusedBatchNormV3`` does the same in one pass forward and one backward (oneDNN
on CPUs, cuDNN on GPUs). On 2 CPU cores, for a ``[4, 64, 64, 32]`` map, forward + backward take 1.3 ms
against 3.1 ms, and a training step of 0.16's ``pretrained:singlecoil-r4`` network (5 cascades of 4 residual
blocks, 45 BatchNormalizations) 0.82× the time; inside ``kerasrecon fit``, beside its input pipeline,
0.71× (``benchmarks/batchnorm.py``, benchmarks/README.md).

Same arguments, weights (names, shapes) and semantics as the Keras layer: in training the batch's
mean and biased variance normalise the map and update the moving statistics
(``moving = momentum · moving + (1 − momentum) · batch``); otherwise the moving statistics are used.
The result is the same up to float32 round-off (tested against NumPy). Under mixed precision
(``mixed_bfloat16``, ``mixed_float16``) the kernel takes the bfloat16/float16 map and computes the
statistics in float32, as Keras' layer does; γ, β and the moving statistics stay float32. Elsewhere —
the JAX backend, synchronised (cross-replica) statistics, masks, float64 inputs (no kernel), an axis
other than the last of a 4-D map — the layer is exactly ``keras.layers.BatchNormalization``.
"""

from __future__ import annotations

import keras
from keras import layers

# The input types FusedBatchNormV3 is registered for (its statistics, γ and β are float32 for each).
FUSED_DTYPES = ("float32", "bfloat16", "float16")


@keras.saving.register_keras_serializable(package="kerasrecon")
class BatchNormalization(layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` (same arguments, weights and outputs) through TensorFlow's
    fused kernel where :meth:`fused` holds.

    Call args:
        inputs: ``[B, H, W, C]`` (or any shape the Keras layer takes); ``training``; ``mask``.

    Returns:
        the normalised map, the shape and compute dtype of ``inputs``.
    """

    def fused(self, inputs, mask=None) -> bool:
        """Whether this call runs ``FusedBatchNormV3``: TensorFlow backend, not synchronised, no mask,
        float32, bfloat16 or float16 ``[B, H, W, C]`` inputs (the kernel's types; TensorFlow registers
        each on CPUs and GPUs) normalised over their last axis."""
        return (
            keras.backend.backend() == "tensorflow"
            and not self.synchronized
            and mask is None
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) in FUSED_DTYPES  # the layer's compute dtype
        )

    def call(self, inputs, training=None, mask=None):
        if not self.fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels], tf.float32)
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels], tf.float32)
        if not (training and self.trainable):
            return tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=gamma,
                offset=beta,
                mean=tf.convert_to_tensor(self.moving_mean),
                variance=tf.convert_to_tensor(self.moving_variance),
                epsilon=self.epsilon,
                is_training=False,
            )[0]
        empty = tf.zeros([0], tf.float32)
        outputs, mean, variance = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon, is_training=True
        )[:3]
        # The kernel returns the unbiased (n − 1) variance for running averages; Keras' moving variance
        # averages the biased one, the variance that normalised the batch.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
        variance = variance * (count - 1.0) / count
        momentum = tf.cast(self.momentum, tf.float32)
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return outputs
