"""Distribution strategy selection: ``auto`` | ``none`` | ``mirrored`` | ``multiworker``.

Multi-worker training reads the cluster from ``TF_CONFIG`` (or, inside a Slurm allocation without
``TF_CONFIG``, from Slurm through ``tf.distribute.cluster_resolver.SlurmClusterResolver``). Example
for two machines, the first of which is the chief (worker 0)::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'

Collectives time out after ``collective_timeout_s`` (default 300 s), so a dead worker makes the
others fail with a clear error instead of hanging.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from kerasrecon.config import STRATEGIES, TrainConfig
from kerasrecon.errors import ConfigError, arg
from kerasrecon.training.cluster import EXAMPLE, tf_config

log = logging.getLogger(__name__)

COLLECTIVE_TIMEOUT_S = TrainConfig.collective_timeout_s


def make_strategy(
    name: str = "auto", devices: list[str] | None = None, collective_timeout_s: float = COLLECTIVE_TIMEOUT_S
) -> tf.distribute.Strategy:
    """Pick a strategy.

    Args:
        name: ``auto`` (MirroredStrategy over all visible GPUs when there are >= 2, else the default
            strategy), ``none`` (default strategy: one device), ``mirrored`` (MirroredStrategy over
            ``devices``, default all visible GPUs, or the CPU when there are none), ``multiworker``
            (MultiWorkerMirroredStrategy from ``TF_CONFIG`` or Slurm).
        devices: explicit device names for ``mirrored`` (e.g. ``["/cpu:0", "/cpu:1"]`` in tests).
        collective_timeout_s: multi-worker collective timeout in seconds.

    Returns:
        a ``tf.distribute.Strategy``.
    """
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) >= 2:
            log.info("strategy auto: MirroredStrategy over %d GPUs", len(gpus))
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "multiworker":
        resolver = cluster_resolver()
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout_s)
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)
    raise ConfigError(f"{arg('strategy')} must be one of {', '.join(STRATEGIES)}. Received: {name!r}")


def cluster_resolver():
    """A cluster resolver from ``TF_CONFIG`` (validated: :func:`kerasrecon.training.cluster.tf_config`)
    or Slurm; ``ConfigError`` if neither is usable."""
    if tf_config() is None:
        if os.environ.get("SLURM_JOB_ID"):
            return tf.distribute.cluster_resolver.SlurmClusterResolver()
        raise ConfigError(f"--strategy multiworker needs TF_CONFIG, e.g. {EXAMPLE} (or run inside Slurm)")
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def is_chief(strategy) -> bool:
    """True on the process that writes checkpoints and TensorBoard (single process: always)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
