"""SRGAN discriminator: 8 Conv3×3 (64, 64, 128, 128, 256, 256, 512, 512; strides 1, 2, 1, 2, …),
LeakyReLU 0.2, BN after every conv but the first, no max-pool, Dense 1024 + LeakyReLU, Dense 1 + sigmoid.

The model returns the logit z of the last Dense layer; the sigmoid, D = sigmoid(z), is applied where
a probability is needed (``losses.bce`` takes the logit, ``ReconGAN.loss_terms`` reports sigmoid(z)),
so the cross-entropy never sees a saturated probability (see ``kerasrecon.losses``). The layer is
``d_logit`` (``d_prob`` in earlier checkpoints, whose optimizer state loads under the new name).
"""

from __future__ import annotations

import keras
from keras import layers

from kerasrecon.config import DataConfig
from kerasrecon.models.batchnorm import BatchNormalization
from kerasrecon.models.conv import Conv2D
from kerasrecon.models.generator import sync_batchnorm, wide_dtype

D_FILTERS = (64, 64, 128, 128, 256, 256, 512, 512)
D_STRIDES = (1, 2, 1, 2, 1, 2, 1, 2)
D_DENSE = 1024
LEAKY_SLOPE = 0.2


@keras.saving.register_keras_serializable(package="kerasrecon")
class LeakyReLU(layers.LeakyReLU):
    """``x if x > 0 else slope · x``, written with ``keras.ops`` so that every backend computes the
    same: TensorFlow's fused ``leaky_relu`` keeps the slope as a float32 attribute (0.2 becomes
    0.2000000030 in a float64 model) and JAX's takes the gradient 1 at ``x == 0`` where TensorFlow
    takes ``slope``. Same shape and dtype in as out."""

    def call(self, inputs):
        x = keras.ops.convert_to_tensor(inputs)
        return keras.ops.where(keras.ops.greater(x, 0), x, x * self.negative_slope)  # a Python float: exact in float64


def build_discriminator(patch_size: int = DataConfig.patch_size, channels: int = 1, dtype=None) -> keras.Model:
    """Build the discriminator.

    Args:
        patch_size: int, side of the square input (the Dense layer fixes it). Default 96.
        channels: int, input channels (1 = magnitude). Default 1.
        dtype: Keras dtype policy of the hidden layers (default: the global policy); the output
            probability is float32 (float64 under a float64 policy). Nothing global is changed.

    Returns:
        ``keras.Model`` named ``discriminator``: float32 ``[B, patch, patch, channels]`` ->
        float32 ``[B, 1]`` logit z of the probability ``D = sigmoid(z)`` that the input is a fully sampled
        image (both float64 under a float64 policy).
    """
    inp = keras.Input((patch_size, patch_size, channels), name="image", dtype=wide_dtype(dtype))
    x = inp
    for i, (f, s) in enumerate(zip(D_FILTERS, D_STRIDES), start=1):
        # Convs followed by BN carry no bias (BN's β replaces it); the first conv keeps its bias.
        x = Conv2D(f, 3, strides=s, padding="same", use_bias=(i == 1), name=f"d_conv{i}", dtype=dtype)(x)
        if i > 1:
            x = BatchNormalization(synchronized=sync_batchnorm(), name=f"d_bn{i}", dtype=dtype)(x)
        x = LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"d_lrelu{i}", dtype=dtype)(x)
    x = layers.Flatten(name="d_flatten", dtype=dtype)(x)
    x = layers.Dense(D_DENSE, name="d_dense1", dtype=dtype)(x)
    x = LeakyReLU(negative_slope=LEAKY_SLOPE, name="d_lrelu_dense", dtype=dtype)(x)
    out = layers.Dense(1, dtype=wide_dtype(dtype), name="d_logit")(x)  # the logit; float32 under mixed
    return keras.Model(inp, out, name="discriminator")
