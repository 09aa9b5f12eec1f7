"""The embedded real-MR demo set: 60 axial slices of the MRIcron ``ch2better`` T1 brain template.

Shipped in the wheel (``kerasrecon/data/demo_data/ch2better_axial.npz``, ~2 MB, BSD-3-clause, see
``LICENSE.mricron`` beside it), so nothing is downloaded. Magnitude images uint8 ``[60, 370, 301]``
are scaled to [0, 1] and turned into simulated k-space ``s0 = F(y)`` (zero phase).
"""

from __future__ import annotations

import functools
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

    The k-space is computed once per process (~0.1-0.3 s on 2 cores) and kept (53 MB); each call
    returns a copy of its own.

    Args:
        num_slices: keep only the first ``num_slices`` slices (all 60 by default).
    """
    return Volume("ch2better", _demo_kspace()[:num_slices].copy(), "demo:" + DEMO_FILE)


@functools.lru_cache(maxsize=1)
def _demo_kspace() -> np.ndarray:
    """Every demo slice's k-space, complex64 ``[60, 370, 301]``, read-only (callers get copies)."""
    kspace = fft2c_np(demo_images().astype(np.complex64))
    kspace.flags.writeable = False
    return kspace
