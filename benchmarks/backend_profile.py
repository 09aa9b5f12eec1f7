"""Where the full-size training step's time goes, per backend: each part of the GAN step timed alone on
the same shapes (batch 16, 96×96, 64 filters), forward and forward + backward, on TensorFlow and on JAX
(with XLA:CPU's default convolution and with each alternative kernel library its flags select).

Parts: one 3×3 64→64 convolution (the models' ``kerasrecon.models.conv.Conv2D``, and Keras' own
``Conv2D``, whose kernel gradient on JAX's CPU backend is XLA's unchunked one), BatchNorm (training),
PReLU, the data-consistency layer (two FFTs), the generator (B blocks + DC), the discriminator, VGG19 to
block5_conv4, and the whole GAN step (hybrid loss, both Adam updates; the step ``train_step.py``
times). "fwd+bwd" is the gradient of mean(y²) with respect to the input and the trainable weights.
Each configuration runs in its own process (XLA flags are read at start-up), one after the other on
the same machine; ratios are JAX ÷ TensorFlow; times are the best of ``--repeats`` calls.

    python benchmarks/backend_profile.py [--repeats 3] [--blocks 16] [--configs tf,jax,jax-onednn]
    python benchmarks/backend_profile.py --blocks 2 --filters 16 --batch 4 --patch 32 --repeats 10  # tiny
    python benchmarks/backend_profile.py --only <config>    # one configuration (what the parent runs)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# configuration name -> (KERAS_BACKEND, XLA_FLAGS)
CONFIGS = {
    "tf": ("tensorflow", ""),
    "jax": ("jax", ""),
    "jax-onednn": ("jax", "--xla_cpu_use_onednn=true"),
    "jax-xnnpack": ("jax", "--xla_cpu_use_xnnpack=true"),
    "jax-onednn-custom-call": ("jax", "--xla_cpu_experimental_onednn_custom_call=true"),
}


def _parts(gan, batch: int, p: int, filters: int):
    """``{name: (model, input arrays)}`` for every part timed, float32 inputs drawn from a seeded RNG."""
    import keras
    import numpy as np
    from keras import layers

    from kerasrecon.models.conv import Conv2D
    from kerasrecon.models.generator import DataConsistency

    rng = np.random.default_rng(0)

    def arr(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def single(layer, shape):
        x = keras.Input(shape[1:])
        return keras.Model(x, layer(x)), arr(*shape)

    feat = (batch, p, p, filters)
    mask = (rng.random((batch, p, p)) < 0.25).astype(np.float32)
    gen_in = {"zero_filled": arr(batch, p, p, 2), "masked_kspace": arr(batch, p, p, 2), "mask": mask}
    img, ksp, m = keras.Input((p, p, 2)), keras.Input((p, p, 2)), keras.Input((p, p))
    dc = keras.Model([img, ksp, m], DataConsistency()([img, ksp, m]))
    parts = {
        "conv3x3": single(Conv2D(filters, 3, padding="same"), feat),
        "conv3x3_keras": single(layers.Conv2D(filters, 3, padding="same"), feat),
        "batchnorm": single(layers.BatchNormalization(), feat),
        "prelu": single(layers.PReLU(shared_axes=[1, 2]), feat),
        "data_consistency": (dc, [gen_in["zero_filled"], gen_in["masked_kspace"], mask]),
        "generator": (gan.generator, gen_in),
        "discriminator": (gan.discriminator, arr(batch, p, p, 1)),
    }
    if gan.content_loss.vgg is not None:
        parts["vgg54"] = (gan.content_loss.vgg, arr(batch, p, p, 3))
    return parts


def _timer_tf(model, x, repeats):
    import tensorflow as tf

    xs = tf.nest.map_structure(tf.constant, x)
    fwd = tf.function(lambda a: model(a, training=True))

    @tf.function
    def grad(a):
        with tf.GradientTape() as tape:
            tape.watch(a)
            y = model(a, training=True)
            loss = tf.reduce_mean(tf.square(tf.cast(y, tf.float32)))
        return tape.gradient(loss, [a, model.trainable_variables])

    def run(fn):
        return lambda: tf.nest.map_structure(lambda t: t.numpy() if t is not None else None, fn(xs))

    return _seconds(run(fwd), repeats), _seconds(run(grad), repeats)


def _timer_jax(model, x, repeats):
    import jax
    import jax.numpy as jnp

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    xs = jax.device_put(x)

    def forward(t, a):
        return model.stateless_call(t, ntv, a, training=True)[0]

    def loss(t, a):
        return jnp.mean(jnp.square(forward(t, a).astype(jnp.float32)))

    fwd = jax.jit(forward)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))

    def run(fn):
        return lambda: jax.block_until_ready(fn(tv, xs))

    return _seconds(run(fwd), repeats), _seconds(run(grad), repeats)


def _seconds(fn, repeats: int) -> float:
    """Best wall seconds of ``repeats`` calls after one warm-up (compilation) call; the best is the
    least disturbed by other work on a shared machine."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def profile_one(repeats: int, blocks: int, filters: int, batch: int, patch: int) -> dict:
    """Seconds per call of every part (forward, forward + backward) and of the GAN step, on the active
    backend."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(1, str(ROOT.parent))
    import keras
    from common import machine
    from train_step import step_function

    from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig
    from kerasrecon.data.demo import load_demo
    from kerasrecon.data.pipeline import numpy_batches
    from kerasrecon.training.trainer import build_gan

    cfg = TrainConfig(
        data=DataConfig(patch_size=patch, batch_size=batch),
        model=ModelConfig(blocks=blocks, filters=filters),
        loss=LossConfig(content="hybrid", vgg_weights="none"),
        precision="float32",
        jit=False,
    )
    keras.utils.set_random_seed(0)
    gan = build_gan(cfg)
    timer = _timer_jax if keras.backend.backend() == "jax" else _timer_tf
    rows = {}
    for name, (model, x) in _parts(gan, batch, patch, cfg.model.filters).items():
        fwd, both = timer(model, x, repeats)
        rows[name] = {"forward_s": round(fwd, 4), "forward_backward_s": round(both, 4)}
    stream = numpy_batches([load_demo()], cfg, workers=2)
    batches = [next(stream) for _ in range(2)]
    stream.close()
    run = step_function(gan, cfg)
    cycle = itertools.cycle(batches)
    rows["gan_step"] = {"step_s": round(_seconds(lambda: run(next(cycle)), repeats), 4)}
    return {"machine": machine(), "xla_flags": os.environ.get("XLA_FLAGS", ""), "parts": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per part (the best is kept)")
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--filters", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--configs", default="tf,jax", help=f"comma-separated, of {', '.join(CONFIGS)}")
    ap.add_argument("--only", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.only:
        print(json.dumps(profile_one(a.repeats, a.blocks, a.filters, a.batch, a.patch)))
        return
    names = [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        sys.exit(f"backend_profile.py: --configs: unknown {', '.join(unknown)}; expected some of {', '.join(CONFIGS)}")
    results = {}
    for name in names:
        backend, flags = CONFIGS[name]
        env = {**os.environ, "KERAS_BACKEND": backend, "XLA_FLAGS": flags, "TF_CPP_MIN_LOG_LEVEL": "2"}
        args = [sys.executable, __file__, "--only", name, "--repeats", str(a.repeats), "--blocks", str(a.blocks)]
        args += ["--filters", str(a.filters), "--batch", str(a.batch), "--patch", str(a.patch)]
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
            results[name] = {"error": tail[0]}
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    ratios = {}
    if "tf" in results and "parts" in results["tf"]:
        base = results["tf"]["parts"]
        for name, res in results.items():
            if name == "tf" or "parts" not in res:
                continue
            ratios[name] = {
                part: {k: round(v / base[part][k], 2) for k, v in vals.items() if base[part].get(k)}
                for part, vals in res["parts"].items()
            }
    settings = {"batch": a.batch, "patch": a.patch, "blocks": a.blocks, "filters": a.filters, "repeats": a.repeats}
    settings["precision"] = "float32"
    report = {"benchmark": "backend_profile", "settings": settings, "results": results, "ratio_to_tf": ratios}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
