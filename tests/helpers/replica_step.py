"""Run in a fresh process: one GAN step on 1 replica vs 2 replicas (2 logical CPUs), same global batch.

Prints JSON with the largest weight difference between the two after the step. SGD (lr 0.01) is used
so that weight differences measure gradient differences: Adam's first step moves every weight by about
±lr whatever the gradient's size, which turns float round-off in near-zero gradients into 2·lr jumps.

The step runs in float64 (``--precision float64``): what this checks is the arithmetic of the
distributed step (global-batch loss reduction, synchronised BatchNorm), not float32 kernels. In
float32, each replica convolves half the batch and oneDNN may pick another kernel for another batch
size and CPU, so the two runs differ by CPU-dependent round-off (1e-7 on one machine, 1.2e-4 on CI's),
which no fixed float32 tolerance separates from a real bug. In float64 that round-off is ~1e-13.
"""

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig  # noqa: E402
from kerasrecon.data.demo import load_demo  # noqa: E402
from kerasrecon.data.pipeline import training_dataset  # noqa: E402
from kerasrecon.training.step_tf import make_distributed_step  # noqa: E402
from kerasrecon.training.trainer import build_gan  # noqa: E402

loss = sys.argv[1] if len(sys.argv) > 1 else "hybrid"
cfg = TrainConfig(
    data=DataConfig(patch_size=32, batch_size=4),
    model=ModelConfig(blocks=2, filters=16),
    loss=LossConfig(content=loss, vgg_weights="none"),
    precision="float64",
    seed=5,
)
batch = next(iter(training_dataset([load_demo(num_slices=6)], cfg)))


# One replica and two of the same strategy (both with synchronised BatchNorm, the same arithmetic).
# Each strategy is created once: a second MirroredStrategy over the same devices in one process
# reuses collective instance keys, and its all-reduces then meet the first one's.
STRATEGIES = {
    "one": tf.distribute.MirroredStrategy(["/cpu:0"]),
    "two": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
}


def one_and_two(cfg, batch):
    """The same step on one replica and on two: ``{"one": ..., "two": ...}``."""
    results = {}
    for name, strategy in STRATEGIES.items():
        with strategy.scope():
            gan = build_gan(cfg)
            gan.set_optimizers(g_optimizer=keras.optimizers.SGD(0.01), d_optimizer=keras.optimizers.SGD(0.01))
            gan.build_optimizers()
        if name == "two":  # identical starting point, the random VGG19 of the feature term included
            gan.generator.set_weights(results["one"]["g0"])
            gan.discriminator.set_weights(results["one"]["d0"])
            if gan.content_loss.vgg is not None:
                gan.content_loss.vgg.set_weights(results["one"]["vgg"])
        g0, d0 = gan.generator.get_weights(), gan.discriminator.get_weights()
        vgg = gan.content_loss.vgg.get_weights() if gan.content_loss.vgg is not None else []
        step = make_distributed_step(gan, strategy)
        dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
        values = step(next(iter(dist)))
        results[name] = {
            "g0": g0,
            "d0": d0,
            "vgg": vgg,
            "g": gan.generator.get_weights(),
            "d": gan.discriminator.get_weights(),
            "values": {k: float(v) for k, v in values.items()},
            "replicas": strategy.num_replicas_in_sync,
        }
    return results


results = one_and_two(cfg, batch)
# The bias-free generator's ScaleNorm averages its batch statistic over the replicas itself.
bias_free_cfg = dataclasses.replace(
    cfg, model=ModelConfig(blocks=2, filters=16, bias_free=True), loss=LossConfig(content="mse", vgg_weights="none")
)
bias_free = one_and_two(bias_free_cfg, batch)


# Bad input on 2 replicas: a global batch that does not split evenly.
import tempfile  # noqa: E402

from kerasrecon.errors import ConfigError  # noqa: E402
from kerasrecon.training.trainer import train  # noqa: E402

with tempfile.TemporaryDirectory() as scratch:
    try:
        train(
            dataclasses.replace(cfg, data=DataConfig(patch_size=32, batch_size=3)),
            scratch + "/run",
            strategy=STRATEGIES["two"],
        )
        divisible_error = ""
    except ConfigError as exc:
        divisible_error = str(exc)


def maxdiff(a, b):
    return float(max(np.max(np.abs(x - y)) for x, y in zip(a, b)))


print(
    json.dumps(
        {
            "replicas": [results["one"]["replicas"], results["two"]["replicas"]],
            "max_abs_diff_g": maxdiff(results["one"]["g"], results["two"]["g"]),
            "max_abs_diff_d": maxdiff(results["one"]["d"], results["two"]["d"]),
            "g_moved": maxdiff(results["one"]["g"], results["one"]["g0"]),
            "d_moved": maxdiff(results["one"]["d"], results["one"]["d0"]),
            "values_one": results["one"]["values"],
            "values_two": results["two"]["values"],
            "divisible_error": divisible_error,
            "bias_free_max_abs_diff_g": maxdiff(bias_free["one"]["g"], bias_free["two"]["g"]),
            "bias_free_g_moved": maxdiff(bias_free["one"]["g"], bias_free["one"]["g0"]),
        }
    )
)
