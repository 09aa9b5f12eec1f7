"""BatchNormalization on TensorFlow: Keras' layer (separate operations) against the models' layer
(``kerasrecon.models.batchnorm``: TensorFlow's fused kernel), forward + backward in training mode.

Measured in one run, the two variants alternating (``--rounds`` rounds, the best round of each kept):
- one layer on a ``[4, 64, 64, 32]`` map (``pretrained:singlecoil-r4``'s) and on ``[16, 96, 96, 64]``
  (the thesis generator's);
- a generator training step (forward, MSE, gradients, Adam) of 0.16's ``pretrained:singlecoil-r4``
  network: 5 cascades of 4 residual blocks × 32 filters, batch 4, 64×64 patches, hard data consistency;
- the thesis generator's forward + backward (16 blocks × 64 filters, batch 16, 96×96) with ``--full``;
- precision: the ``singlecoil-r4`` step under ``mixed_bfloat16`` (fused and Keras' layer) against
  float32 (fused). oneDNN runs bfloat16 convolutions fast on CPUs with AVX512_BF16 or AMX; other CPUs
  are not measured here.

    python benchmarks/batchnorm.py [--rounds 3] [--full]
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT.parent))
import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import machine, seconds_per_call  # noqa: E402

import kerasrecon.models.generator as generator_module  # noqa: E402
from kerasrecon.models.batchnorm import BatchNormalization  # noqa: E402

VARIANTS = {"keras": keras.layers.BatchNormalization, "fused": BatchNormalization}


def layer_step(cls, shape):
    """A tf.function: the layer's training forward and the gradient of Σ y² by its input and weights."""
    import tensorflow as tf

    layer = cls(momentum=0.9)
    layer.build(shape)
    x = tf.random.stateless_normal(shape, (0, 1))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, *layer.trainable_variables])

    return step


def generator_step(cls, batch, size, blocks, filters, cascades, optimise=True, dtype=None):
    """A tf.function: one MSE training step (or forward + backward) of a generator built with ``cls``
    as its BatchNormalization, under the dtype policy ``dtype`` (default: float32)."""
    import tensorflow as tf

    generator_module.BatchNormalization = cls
    try:
        keras.utils.set_random_seed(0)
        g = generator_module.build_generator(blocks=blocks, filters=filters, cascades=cascades, dtype=dtype)
    finally:
        generator_module.BatchNormalization = BatchNormalization
    rng = np.random.default_rng(0)
    mask = (rng.random((batch, size, size)) < 0.25).astype("float32")
    inputs = {
        "zero_filled": rng.standard_normal((batch, size, size, 2)).astype("float32"),
        "masked_kspace": rng.standard_normal((batch, size, size, 2)).astype("float32") * mask[..., None],
        "mask": mask,
    }
    target = rng.standard_normal((batch, size, size, 2)).astype("float32")
    opt = keras.optimizers.Adam(1e-4)
    opt.build(g.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(g(inputs, training=True) - target))
        grads = tape.gradient(loss, g.trainable_variables)
        if optimise:
            opt.apply(grads, g.trainable_variables)
        return loss

    return step


def best_seconds(steps: dict, rounds: int, repeats: int) -> dict:
    """Best seconds per call of each of ``steps`` (name -> callable), alternating them ``rounds`` times."""
    best = {name: float("inf") for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            best[name] = min(best[name], seconds_per_call(step, repeats))
    return best


def compare(make, rounds, repeats):
    """Best seconds per call of each variant, alternating them ``rounds`` times."""
    best = best_seconds({name: make(cls) for name, cls in VARIANTS.items()}, rounds, repeats)
    return {
        "seconds_keras": round(best["keras"], 5),
        "seconds_fused": round(best["fused"], 5),
        "fused_over_keras": round(best["fused"] / best["keras"], 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="also the thesis generator at full size (slow on CPUs)")
    a = ap.parse_args()
    if keras.backend.backend() != "tensorflow":
        sys.exit("benchmarks/batchnorm.py: the fused kernel is TensorFlow's; run with KERAS_BACKEND=tensorflow")
    results = {
        "layer_4x64x64x32": compare(lambda cls: layer_step(cls, (4, 64, 64, 32)), a.rounds, 30),
        "layer_16x96x96x64": compare(lambda cls: layer_step(cls, (16, 96, 96, 64)), a.rounds, 5),
        "singlecoil_r4_train_step": compare(lambda cls: generator_step(cls, 4, 64, 4, 32, 5), a.rounds, 10),
    }
    step = lambda cls, dtype=None: generator_step(cls, 4, 64, 4, 32, 5, dtype=dtype)  # noqa: E731
    best = best_seconds(
        {
            "float32_fused": step(BatchNormalization),
            "mixed_bfloat16_fused": step(BatchNormalization, "mixed_bfloat16"),
            "mixed_bfloat16_keras": step(keras.layers.BatchNormalization, "mixed_bfloat16"),
        },
        a.rounds,
        10,
    )
    results["singlecoil_r4_train_step_precision"] = {
        **{f"seconds_{k}": round(v, 5) for k, v in best.items()},
        "mixed_bfloat16_fused_over_float32_fused": round(best["mixed_bfloat16_fused"] / best["float32_fused"], 3),
        "mixed_bfloat16_fused_over_keras": round(best["mixed_bfloat16_fused"] / best["mixed_bfloat16_keras"], 3),
    }
    if a.full:
        results["thesis_generator_fwd_bwd"] = compare(
            lambda cls: generator_step(cls, 16, 96, 16, 64, 1, optimise=False), a.rounds, 2
        )
    print(json.dumps({"benchmark": "batchnorm", "machine": machine(), "rounds": a.rounds, **results}, indent=2))


if __name__ == "__main__":
    main()
