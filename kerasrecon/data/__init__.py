"""Data: volumes of k-space, readers for fastMRI and image stacks, the embedded demo set, tf.data.

A :class:`Volume` holds fully sampled k-space ``[S, H, W]`` complex64 on the kerasrecon grid (see
``kerasrecon.kspace``); the training/evaluation target of slice ``i`` is ``ifft2c(kspace[i])``.
"""

from kerasrecon.data.demo import load_demo
from kerasrecon.data.volume import Volume, filter_acquisition, load_prepared, split_volumes

__all__ = ["Volume", "filter_acquisition", "load_volumes", "split_volumes"]


def load_volumes(data: str) -> list[Volume]:
    """``--data``: ``demo`` (the embedded set, one volume) or a prepared dataset directory.

    The dispatch lives here, above both modules, so ``data/demo.py`` and ``data/volume.py`` do not
    import each other.

    Returns:
        list of :class:`Volume` (``kspace`` ``[S, H, W]`` complex64), in manifest order.
    """
    if data == "demo":
        return [load_demo()]
    return load_prepared(data)
