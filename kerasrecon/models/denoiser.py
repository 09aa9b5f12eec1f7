"""The plug-and-play prior: a bias-free, noise-conditioned U-Net denoiser (:mod:`kerasrecon.pnp`).

No biases, no normalisation, ReLU (Mohan et al., ICLR 2020), with the noise level as a third input
channel: D(a·x, a·σ) = a·D(x, σ) for every a > 0, so a slice's intensity scale never decides what it
does. A U-Net of ``levels`` stride-2 convolutions (``filters`` channels at full resolution, doubling
per level) predicts the noise; the output is the input minus it.
"""

from __future__ import annotations

import keras
from keras import layers


def build_denoiser(filters: int = 32, levels: int = 2) -> keras.Model:
    """The denoiser: float32 ``[B, H, W, 3]`` (re, im, σ) -> float32 ``[B, H, W, 2]`` (re, im), H and W
    multiples of ``2**levels`` (:func:`kerasrecon.pnp.denoise` pads any size).

    Layers are created in a fixed order with fixed names (``dn_down0a``, ``dn_pool0``, ``dn_up0``,
    ``dn_noise``...): weights files address layers by order, the optimizer slots of a checkpoint by
    name, so a checkpoint of one build restores into any other, in this process or the next.
    """

    def conv(h, f, name, **kw):
        return layers.Conv2D(f, 3, padding="same", use_bias=False, activation="relu", name=f"dn_{name}", **kw)(h)

    inp = keras.Input((None, None, 3), name="noisy_and_sigma")
    h, skips = inp, []
    for level in range(levels):
        h = conv(conv(h, filters << level, f"down{level}a"), filters << level, f"down{level}b")
        skips.append(h)
        h = conv(h, filters << (level + 1), f"pool{level}", strides=2)
    h = conv(h, filters << levels, "bottom")
    for level in reversed(range(levels)):
        h = layers.Conv2DTranspose(
            filters << level, 2, strides=2, use_bias=False, activation="relu", name=f"dn_up{level}"
        )(h)
        h = layers.Concatenate(name=f"dn_skip{level}")([h, skips[level]])
        h = conv(conv(h, filters << level, f"up{level}a"), filters << level, f"up{level}b")
    noise = layers.Conv2D(2, 3, padding="same", use_bias=False, name="dn_noise")(h)
    return keras.Model(inp, layers.Subtract(name="dn_minus")([inp[..., :2], noise]), name="denoiser")
