"""How a step runs on each Keras backend: the part of the training loop that differs.

* :class:`TFRunner`: tf.data input distributed by a ``tf.distribute`` strategy (one device,
  MirroredStrategy, MultiWorkerMirroredStrategy), the step of ``step_tf`` in one ``tf.function``.
* :class:`JaxRunner`: the NumPy input path (``data.pipeline.numpy_batches``) and the jitted step of
  ``step_jax``; the weights live in a ``TrainState`` between steps and are written back into the Keras
  variables before every checkpoint. ``--strategy auto`` with several local devices sets
  ``keras.distribution.DataParallel`` over all of them (the JAX counterpart of MirroredStrategy): the
  variables are replicated, each batch is sharded over its batch axis and XLA's SPMD partitioner
  inserts the all-reduces, so BatchNorm statistics and gradients are those of the global batch.
  ``--strategy none`` uses one device; ``mirrored|multiworker`` are TensorFlow's and are refused with
  the JAX alternative named.

``--strategy multiworker`` on JAX is multi-process training on JAX's own engine: the cluster comes
from ``TF_CONFIG`` as on TensorFlow (:mod:`kerasrecon.training.cluster`; the first worker's address is
the coordinator's), ``jax.distributed.initialize`` joins it (CPU hosts exchange through Gloo), one
device mesh spans every process's devices, each process computes its shard of the global batch
(elements ``i ≡ process index mod process count``, as TensorFlow's workers do) and the step is jitted
over the mesh with the weights replicated; the Keras variables stay on this process (checkpoints and
previews are written from the chief's copy).

Both expose ``replicas``, ``chief``, ``scope()``, ``batches(volumes, cfg, start_step)``,
``prepare(gan, cfg)``, ``step(pretrain, batch) -> {name: scalar}``, ``read(values) -> {name: float}``
and ``sync()``; a collective that fails (a dead or unreachable worker) is ``CollectiveFailed``. The step's values
stay on the device (a TF tensor, a JAX array): reading one waits for the step to finish, so the
training loop reads them only every ``log_every`` steps and at checkpoints.
"""

from __future__ import annotations

import contextlib

import numpy as np

from kerasrecon.config import TrainConfig
from kerasrecon.errors import ConfigError, arg


class CollectiveFailed(Exception):
    """A multi-worker collective failed (TF); the loop turns it into ``WorkerFailed`` with the step."""


class TFRunner:
    """The TensorFlow backend: ``strategy`` (default: from ``cfg.strategy``)."""

    def __init__(self, cfg: TrainConfig, strategy=None):
        from kerasrecon.training.strategy import is_chief, make_strategy

        self.strategy = strategy or make_strategy(cfg.strategy, collective_timeout_s=cfg.collective_timeout_s)
        self.replicas = self.strategy.num_replicas_in_sync
        self.chief = is_chief(self.strategy)

    def scope(self):
        return self.strategy.scope()

    def batches(self, volumes, cfg: TrainConfig, start_step: int):
        import tensorflow as tf

        from kerasrecon.data.pipeline import training_dataset

        gbs = cfg.data.batch_size
        failures = []  # what the input pipeline raised (a DataError from a read), re-raised as itself

        def per_worker_dataset(ctx: tf.distribute.InputContext):
            # Each input pipeline (worker) takes every n-th element of the seeded stream, so workers see
            # different patches and the union of one step's batches is the single-process global batch.
            return training_dataset(
                volumes,
                cfg,
                batch_size=ctx.get_per_replica_batch_size(gbs),
                num_shards=ctx.num_input_pipelines,
                shard_index=ctx.input_pipeline_id,
                start=start_step * gbs,
                failures=failures,
            )

        batches = iter(self.strategy.distribute_datasets_from_function(per_worker_dataset))
        while True:
            try:
                batch = next(batches)
            except tf.errors.OpError:
                if failures:  # tf.data wrapped it in an OpError with a traceback: raise the error itself
                    raise failures[0] from None
                raise
            yield batch

    def prepare(self, gan, cfg: TrainConfig):
        from kerasrecon.training.precision import resolve_jit
        from kerasrecon.training.step_tf import make_distributed_step

        jit = resolve_jit(cfg.jit)
        self._steps = {
            False: make_distributed_step(gan, self.strategy, jit=jit),
            True: make_distributed_step(gan, self.strategy, pretrain=True, jit=jit),
        }

    def step(self, pretrain: bool, batch) -> dict:
        import tensorflow as tf

        try:
            values = self._steps[pretrain](batch)
        except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.CancelledError) as exc:
            raise CollectiveFailed(exc.__class__.__name__) from None
        return values

    def read(self, values: dict) -> dict:
        """The step's values as floats."""
        return {k: float(v) for k, v in values.items()}

    def sync(self):
        """Nothing to do: the TF step updates the Keras variables in place."""


class JaxRunner:
    """The JAX backend: NumPy input, ``jax.jit`` step; data parallel over all local devices with
    ``--strategy auto`` (one device with ``none``), over every process's devices with ``multiworker``.
    Construct it before the models are built (and, for ``multiworker``, before anything runs on JAX)."""

    def __init__(self, cfg: TrainConfig):
        if cfg.strategy == "mirrored":
            raise ConfigError(
                f"{arg('strategy')} mirrored is TensorFlow's (KERAS_BACKEND=tensorflow); on JAX use "
                f"{arg('strategy')} auto (data parallel over all local devices) or none (one device)"
            )
        import jax
        import keras

        self._state = None
        self._distribution = self._mesh = None
        self.processes = 1
        if cfg.strategy == "multiworker":
            from jax.sharding import Mesh

            self.processes = join_jax_cluster(cfg.collective_timeout_s)
            devices = jax.devices()
            self._mesh = Mesh(np.array(devices), ("batch",))
            self.replicas = len(devices)
        else:
            devices = jax.local_devices()
            self.replicas = len(devices) if cfg.strategy == "auto" else 1
            if self.replicas > 1:
                self._distribution = keras.distribution.DataParallel(devices=devices)
                keras.distribution.set_distribution(self._distribution)
        self.chief = jax.process_index() == 0

    def scope(self):
        return contextlib.nullcontext()

    def batches(self, volumes, cfg: TrainConfig, start_step: int):
        import jax

        from kerasrecon.data.pipeline import numpy_batches

        if self._mesh is not None:  # this process's shard of every global batch
            from jax.sharding import NamedSharding, PartitionSpec

            sharding = NamedSharding(self._mesh, PartitionSpec("batch"))
            stream = numpy_batches(
                volumes,
                cfg,
                batch_size=cfg.data.batch_size // self.processes,
                num_shards=self.processes,
                shard_index=jax.process_index(),
                start=start_step * cfg.data.batch_size,
            )
            return (
                jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
                for batch in stream
            )
        stream = numpy_batches(volumes, cfg, start=start_step * cfg.data.batch_size)
        if self._distribution is None:
            return stream
        return (self._shard(batch) for batch in stream)

    def _shard(self, batch):
        """Place a global batch on the devices, split along its batch axis."""
        import jax

        def put(x):
            return jax.device_put(x, self._distribution.get_data_layout(x.shape).backend_layout)

        return jax.tree_util.tree_map(put, batch)

    def prepare(self, gan, cfg: TrainConfig):
        from kerasrecon.training.step_jax import JaxStep

        self._steps = {False: JaxStep(gan, mesh=self._mesh), True: JaxStep(gan, pretrain=True, mesh=self._mesh)}

    def step(self, pretrain: bool, batch) -> dict:
        step = self._steps[pretrain]
        try:
            if self._state is None:
                self._state = step.init_state()
            self._state, values = step(self._state, batch)
        except Exception as exc:
            self._raise_collective(exc)
            raise
        return values

    def read(self, values: dict) -> dict:
        """The step's values as floats (waits for the step)."""
        try:
            return {k: float(v) for k, v in values.items()}
        except Exception as exc:
            self._raise_collective(exc)
            raise

    def _raise_collective(self, exc):
        """``CollectiveFailed`` when ``exc`` is a failed cross-process collective (Gloo, or the
        coordination service); nothing otherwise."""
        text = str(exc)
        if self._mesh is not None and any(w in text for w in ("Gloo", "coordination", "heartbeat", "peer")):
            raise CollectiveFailed((text.strip().splitlines() or [exc.__class__.__name__])[0][:200]) from None

    def sync(self):
        """Write the state's arrays back into the Keras variables (checkpoints, previews, results)."""
        if self._state is not None:
            self._steps[False].write_back(self._state)


def join_jax_cluster(timeout_s: float) -> int:
    """``jax.distributed.initialize`` from ``TF_CONFIG`` (the first worker's address is the coordinator's;
    CPU collectives through Gloo). A process that stops sending heartbeats for ``timeout_s`` seconds
    is declared dead. Returns the number of processes. ``ConfigError`` (one line) without a cluster."""
    import jax

    from kerasrecon.training.cluster import EXAMPLE, tf_config

    cluster = tf_config()
    if cluster is None:
        raise ConfigError(f"{arg('strategy')} multiworker on JAX needs TF_CONFIG, e.g. {EXAMPLE}")
    if not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        timeout = max(int(timeout_s), 1)
        try:
            jax.distributed.initialize(
                cluster.coordinator,
                len(cluster.members),
                cluster.index,
                initialization_timeout=timeout,
                heartbeat_timeout_seconds=timeout,
            )
        except Exception as exc:  # the coordinator cannot be reached within the timeout, a port in use...
            reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
            raise ConfigError(
                f"{arg('strategy')} multiworker: cannot join the JAX cluster at {cluster.coordinator} as process "
                f"{cluster.index} of {len(cluster.members)} ({reason})"
            ) from None
    return jax.process_count()


def make_runner(cfg: TrainConfig, strategy=None):
    """The runner of the active Keras backend (``KERAS_BACKEND``)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        if strategy is not None:
            raise ConfigError("a tf.distribute strategy was given, but the Keras backend is JAX")
        return JaxRunner(cfg)
    if backend == "tensorflow":
        return TFRunner(cfg, strategy)
    raise ConfigError(f"KERAS_BACKEND={backend}: kerasrecon trains on 'tensorflow' or 'jax'")
