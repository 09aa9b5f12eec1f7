"""Shared helpers of the benchmark scripts (each script prints one JSON object on stdout). They work
on the active Keras backend: TensorFlow (profiler FLOP counts) or JAX (XLA cost analysis)."""

from __future__ import annotations

import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _backend() -> str:
    import keras

    return keras.backend.backend()


def cpu_bf16_flags() -> list[str]:
    """The CPU's bfloat16 instruction sets (``avx512_bf16``, ``amx_bf16``) from /proc/cpuinfo: the
    instructions oneDNN's bfloat16 convolutions use (empty on other CPUs or off Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted({"avx512_bf16", "amx_bf16"} & set(flags))


def machine() -> dict:
    """What the numbers were measured on."""
    info = {
        "cpu_count": os.cpu_count(),
        "cpu_bf16": cpu_bf16_flags(),
        "platform": platform.platform(),
        "backend": _backend(),
    }
    if _backend() == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return {**info, "jax": jax.__version__, "gpus": [getattr(d, "device_kind", "GPU") for d in gpus]}
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus]
    return {**info, "tensorflow": tf.__version__, "gpus": names}


def seconds_per_call(fn, repeats: int, warmup: int = 1) -> float:
    """Mean wall seconds per call of ``fn`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def forward_flops(model, shapes) -> int:
    """Floating-point operations of one inference call of ``model``.

    Args:
        model: a Keras model.
        shapes: an input shape tuple with a static batch and size, or a dict of them.

    TensorFlow: counted by its graph profiler on the frozen graph; JAX: XLA's cost analysis of the
    compiled forward (``flops``).
    """
    import numpy as np

    if isinstance(shapes, dict):
        x = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    else:
        x = np.zeros(shapes, np.float32)
    if _backend() == "jax":
        import jax

        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        fn = jax.jit(lambda t, n, inp: model.stateless_call(t, n, inp, training=False)[0])
        cost = fn.lower(tv, ntv, x).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return int(cost["flops"])
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = {k: tf.TensorSpec(v.shape) for k, v in x.items()} if isinstance(x, dict) else tf.TensorSpec(x.shape)
    concrete = tf.function(lambda inp: model(inp, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=frozen.graph, options=opts).total_float_ops)


def conv_flops_per_second(batch=16, size=96, channels=64, repeats=5) -> float:
    """Measured rate of a 3×3 ``channels``→``channels`` convolution forward on
    ``[batch, size, size, channels]`` (float32) on the backend's default device."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, channels)).astype(np.float32)
    k = rng.standard_normal((3, 3, channels, channels)).astype(np.float32)
    if _backend() == "jax":
        import jax
        from keras import ops

        xj, kj = jax.device_put(x), jax.device_put(k)
        conv = jax.jit(lambda a, b: ops.conv(a, b, strides=1, padding="same"))
        sec = seconds_per_call(lambda: conv(xj, kj).block_until_ready(), repeats, warmup=2)
    else:
        import tensorflow as tf

        xt, kt = tf.constant(x), tf.constant(k)
        conv = tf.function(lambda: tf.nn.conv2d(xt, kt, 1, "SAME"))
        sec = seconds_per_call(lambda: conv().numpy(), repeats, warmup=2)
    return 2 * batch * size * size * 9 * channels * channels / sec


def small_config(steps: int, log_every: int, **data):
    """The small model of the training-loop benchmarks (where per-step overhead shows most): 2 blocks × 16
    filters, 32×32 patches, batch 4, MSE, float32; ``steps`` MSE steps, one checkpoint at the end;
    ``data``: other ``DataConfig`` fields."""
    from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig

    return TrainConfig(
        data=DataConfig(patch_size=32, batch_size=4, **data),
        model=ModelConfig(blocks=2, filters=16),
        loss=LossConfig(content="mse", vgg_weights="none"),
        pretrain_steps=steps,
        steps=0,
        log_every=log_every,
        checkpoint_every=steps,
        precision="float32",
    )
