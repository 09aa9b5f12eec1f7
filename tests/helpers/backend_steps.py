"""Three GAN steps on the backend named by KERAS_BACKEND, from given weights and batches (SGD).

Usage: KERAS_BACKEND=jax|tensorflow python backend_steps.py INIT.npz OUT.npz [PRECISION]
PRECISION: float32 (default) or float64 (the reference arithmetic, TensorFlow only).
INIT holds, per loss in LOSSES: ``{loss}/g_i``, ``{loss}/d_i``, ``{loss}/vgg_i`` initial weights, and
``batch{j}/{key}`` for j = 0, 1, 2 (keys zero_filled, masked_kspace, mask, target). OUT holds the
weights after the first step (``{loss}/step1/g_i``...) and after the three steps (``{loss}/g_i``,
``{loss}/d_i``), and the step logs.
"""

import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import keras  # noqa: E402

from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig  # noqa: E402
from kerasrecon.training.trainer import build_gan  # noqa: E402

LOSSES = ("mse", "hybrid")
LR = 1e-3  # D stays in a tame regime (at 1e-2 its loss climbs 1.4 -> 7 in 3 steps and amplifies round-off)


def cfg(loss, precision="float32"):
    return TrainConfig(
        data=DataConfig(patch_size=32, batch_size=4),
        model=ModelConfig(blocks=2, filters=16),
        loss=LossConfig(content=loss, vgg_weights="none"),
        precision=precision,
        seed=5,
    )


def weights(arrays, prefix):
    return [arrays[f"{prefix}_{i}"] for i in range(sum(k.startswith(prefix + "_") for k in arrays.files))]


def save(out, prefix, gan):
    out.update({f"{prefix}/g_{i}": w for i, w in enumerate(gan.generator.get_weights())})
    out.update({f"{prefix}/d_{i}": w for i, w in enumerate(gan.discriminator.get_weights())})


def main(init_path, out_path, precision="float32"):
    init = np.load(init_path)
    batches = [
        ({k: init[f"batch{j}/{k}"] for k in ("zero_filled", "masked_kspace", "mask")}, init[f"batch{j}/target"])
        for j in range(3)
    ]
    out = {}
    for loss in LOSSES:
        gan = build_gan(cfg(loss, precision))
        gan.generator.set_weights(weights(init, f"{loss}/g"))
        gan.discriminator.set_weights(weights(init, f"{loss}/d"))
        if gan.content_loss.vgg is not None:
            gan.content_loss.vgg.set_weights(weights(init, f"{loss}/vgg"))
        gan.set_optimizers(g_optimizer=keras.optimizers.SGD(LR), d_optimizer=keras.optimizers.SGD(LR))
        gan.build_optimizers()
        logs = []
        if keras.backend.backend() == "jax":
            from kerasrecon.training.step_jax import JaxStep

            step = JaxStep(gan)
            state = step.init_state()
            for j, b in enumerate(batches):
                state, values = step(state, b)
                logs.append([float(values[k]) for k in ("d_loss", "g_loss", "content", "adversarial")])
                if j == 0:
                    step.write_back(state)
                    save(out, f"{loss}/step1", gan)
            step.write_back(state)
        else:
            import tensorflow as tf

            from kerasrecon.training.step_tf import step_values

            fn = tf.function(lambda b: step_values(gan, b), autograph=False)  # as step_tf traces it
            for j, b in enumerate(batches):
                values = fn(b)
                logs.append([float(values[k]) for k in ("d_loss", "g_loss", "content", "adversarial")])
                if j == 0:
                    save(out, f"{loss}/step1", gan)
        save(out, loss, gan)
        out[f"{loss}/logs"] = np.array(logs)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
