"""The embedded real-MR demo set: 60 axial slices of the MRIcron ``ch2better`` T1 brain template.

Shipped in the wheel (``kerasrecon/data/demo_data/ch2better_axial.npz``, ~2 MB, BSD-3-clause, see
``LICENSE.mricron`` beside it), so nothing is downloaded. Magnitude images uint8 ``[60, 370, 301]``
are scaled to [0, 1] and turned into simulated k-space ``s0 = F(y)`` (zero phase).
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from kerasrecon.data.volume import Volume
from kerasrecon.kspace import fft2c_np

DEMO_FILE = "ch2better_axial.npz"


def demo_images() -> np.ndarray:
    """The demo magnitude images, float32 ``[60, 370, 301]`` in [0, 1]."""
    with resources.files("kerasrecon.data").joinpath("demo_data", DEMO_FILE).open("rb") as f:
        images = np.load(f)["images"]
    return images.astype(np.float32) / 255.0


def load_demo(num_slices: int | None = None) -> Volume:
    """The demo set as a :class:`Volume` (k-space complex64 ``[S, 370, 301]``).

    Args:
        num_slices: keep only the first ``num_slices`` slices (all 60 by default).
    """
    images = demo_images()[:num_slices]
    return Volume("ch2better", fft2c_np(images.astype(np.complex64)), "demo:" + DEMO_FILE)
