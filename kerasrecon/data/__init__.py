"""Data: volumes of k-space, readers for fastMRI and image stacks, the embedded demo set, tf.data.

A :class:`Volume` holds fully sampled k-space ``[S, H, W]`` complex64 on the kerasrecon grid (see
``kerasrecon.kspace``); the training/evaluation target of slice ``i`` is ``ifft2c(kspace[i])``.
"""

from kerasrecon.data.volume import Volume, load_volumes, split_volumes

__all__ = ["Volume", "load_volumes", "split_volumes"]
