"""Precision and XLA choices: ``--precision auto|float32|mixed_float16|mixed_bfloat16`` and ``--jit``.

``auto`` picks what is fastest on the detected device: on a GPU with compute capability >= 8.0
(Ampere, Hopper) ``mixed_bfloat16`` (tensor cores, no loss scaling needed), on older GPUs
``mixed_float16`` (with dynamic loss scaling of both optimizers), on CPU ``float32``. ``--jit`` (XLA
compilation of the train step) defaults to on for GPUs and off for CPUs, where XLA's convolutions
are slower than oneDNN's. Under mixed precision the FFTs, data consistency, the generator's output
convolution and residual, the discriminator's output and all losses stay float32.
"""

from __future__ import annotations

import tensorflow as tf

from kerasrecon.config import PRECISIONS
from kerasrecon.errors import ConfigError


def _gpus():
    return tf.config.list_physical_devices("GPU")


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy name for ``precision`` on this machine."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}. Received: {precision!r}")
    if precision != "auto":
        return precision
    gpus = _gpus()
    if not gpus:
        return "float32"
    caps = [tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) for g in gpus]
    return "mixed_bfloat16" if min(caps) >= (8, 0) else "mixed_float16"


def resolve_jit(jit: bool | None) -> bool:
    """``jit`` if given, else True on GPU machines and False on CPU-only ones."""
    return bool(_gpus()) if jit is None else bool(jit)
