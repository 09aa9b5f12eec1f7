"""Distribution strategy selection: ``auto`` | ``none`` | ``mirrored``."""

from __future__ import annotations

import logging

import tensorflow as tf

from kerasrecon.errors import ConfigError

log = logging.getLogger(__name__)


def make_strategy(name: str = "auto", devices: list[str] | None = None) -> tf.distribute.Strategy:
    """Pick a strategy.

    Args:
        name: ``auto`` (MirroredStrategy over all visible GPUs when there are >= 2, else the default
            strategy), ``none`` (default strategy: one device), ``mirrored`` (MirroredStrategy over
            ``devices``, default all visible GPUs, or the CPU when there are none).
        devices: explicit device names for ``mirrored`` (e.g. ``["/cpu:0", "/cpu:1"]`` in tests).

    Returns:
        a ``tf.distribute.Strategy``.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "auto":
        if len(gpus) >= 2:
            log.info("strategy auto: MirroredStrategy over %d GPUs", len(gpus))
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    raise ConfigError(f"--strategy must be one of auto, none, mirrored. Received: {name!r}")
