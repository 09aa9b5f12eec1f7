"""Shared helpers of the benchmark scripts (each script prints one JSON object on stdout)."""

from __future__ import annotations

import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def machine() -> dict:
    """What the numbers were measured on."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus]
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__, "gpus": names}


def seconds_per_call(fn, repeats: int, warmup: int = 1) -> float:
    """Mean wall seconds per call of ``fn`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def forward_flops(model, spec) -> int:
    """Floating-point operations of one inference call, counted by TensorFlow's graph profiler.

    Args:
        model: a Keras model.
        spec: ``tf.TensorSpec`` (or dict of them) with a static batch and size.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=frozen.graph, options=opts).total_float_ops)


def conv_flops_per_second(batch=16, size=96, channels=64, repeats=5) -> float:
    """Measured rate of a 3×3 ``channels``→``channels`` Conv2D forward on ``[batch, size, size, channels]``."""
    import tensorflow as tf

    x = tf.random.normal([batch, size, size, channels])
    k = tf.random.normal([3, 3, channels, channels])
    conv = tf.function(lambda: tf.nn.conv2d(x, k, 1, "SAME"))
    sec = seconds_per_call(lambda: conv().numpy(), repeats, warmup=2)
    return 2 * batch * size * size * 9 * channels * channels / sec
