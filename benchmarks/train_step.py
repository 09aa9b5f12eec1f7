"""Full-size GAN training step (batch 16, 96×96, B = 16, hybrid loss) on the active Keras backend
(TensorFlow or JAX): steps/s, images/s, FLOPs per step, achieved FLOP/s as a ratio to a 3×3 64→64
convolution measured in the same run on the same device, and the projected time of 1e5 iterations.

FLOPs per step: forward FLOPs G_f, D_f, V_f per image (TensorFlow: counted by its graph profiler; JAX:
counted by XLA's cost analysis of the compiled forward), backward counted as 2× forward: one G forward
shared by both updates (G_f); D update = D fwd/bwd on real and fake (6·D_f); G update = G backward
(2·G_f) + D fwd + input-grad through D (2·D_f) + VGG fwd on target and recon + input-grad through VGG
(3·V_f). Total per image: 3·G_f + 8·D_f + 3·V_f. The step is timed on 4 pre-built batches cycled
(the input pipeline is measured by pipeline.py), after one warm-up (compilation) step.

    [KERAS_BACKEND=jax] python benchmarks/train_step.py [--steps 3] [--batch 16] [--patch 96] [--blocks 16]
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT.parent))  # the package from this checkout when it is not installed (GPU hosts)
import keras  # noqa: E402
from common import conv_flops_per_second, forward_flops, machine  # noqa: E402

from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig  # noqa: E402
from kerasrecon.data.demo import load_demo  # noqa: E402
from kerasrecon.data.pipeline import numpy_batches  # noqa: E402
from kerasrecon.training.precision import resolve_jit, resolve_precision  # noqa: E402
from kerasrecon.training.trainer import build_gan  # noqa: E402


def step_function(gan, cfg):
    """``run(batch) -> g_loss float`` for this backend, and its batches converted for it."""
    if keras.backend.backend() == "jax":
        from kerasrecon.training.step_jax import JaxStep

        step = JaxStep(gan)
        box = {"state": step.init_state()}

        def run(batch):
            box["state"], logs = step(box["state"], batch)
            return float(logs["g_loss"])

        return run
    import tensorflow as tf

    from kerasrecon.training.step_tf import make_distributed_step

    step = make_distributed_step(gan, tf.distribute.get_strategy(), jit=resolve_jit(cfg.jit))
    return lambda batch: float(step(batch)["g_loss"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--loss", default="hybrid")
    ap.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"])
    ap.add_argument("--jit", default="auto", choices=["auto", "on", "off"], help="TensorFlow only (JAX always jits)")
    a = ap.parse_args()
    jit = None if a.jit == "auto" else a.jit == "on"
    cfg = TrainConfig(
        data=DataConfig(patch_size=a.patch, batch_size=a.batch),
        model=ModelConfig(blocks=a.blocks),
        loss=LossConfig(content=a.loss, vgg_weights="none"),  # weights do not change the FLOPs
        precision=a.precision,
        jit=jit,
    )
    keras.utils.set_random_seed(0)
    gan = build_gan(cfg)
    stream = numpy_batches([load_demo()], cfg, workers=2)
    batches = [next(stream) for _ in range(4)]
    stream.close()
    run = step_function(gan, cfg)
    run(batches[0])  # trace/compile + warm-up
    t0 = time.perf_counter()
    for i in range(a.steps):
        loss = run(batches[i % 4])
    sec = (time.perf_counter() - t0) / a.steps

    p = a.patch
    g_f = forward_flops(gan.generator, {"zero_filled": (1, p, p, 2), "masked_kspace": (1, p, p, 2), "mask": (1, p, p)})
    d_f = forward_flops(gan.discriminator, (1, p, p, 1))
    v_f = forward_flops(gan.content_loss.vgg, (1, p, p, 3)) if gan.content_loss.vgg else 0
    step_flops = a.batch * (3 * g_f + 8 * d_f + 3 * v_f)
    conv_rate = conv_flops_per_second(batch=a.batch, size=p)
    achieved = step_flops / sec
    print(
        json.dumps(
            {
                "benchmark": "train_step",
                "machine": machine(),
                "settings": {
                    "backend": keras.backend.backend(),
                    "batch": a.batch,
                    "patch": p,
                    "blocks": a.blocks,
                    "loss": a.loss,
                    "timed_steps": a.steps,
                    "precision": resolve_precision(cfg.precision),
                    "jit": True if keras.backend.backend() == "jax" else resolve_jit(cfg.jit),
                },
                "last_g_loss": round(loss, 6),
                "seconds_per_step": round(sec, 4),
                "steps_per_s": round(1 / sec, 4),
                "images_per_s": round(a.batch / sec, 2),
                "forward_gflop_per_image": {"generator": g_f / 1e9, "discriminator": d_f / 1e9, "vgg54": v_f / 1e9},
                "tflop_per_step": round(step_flops / 1e12, 4),
                "achieved_gflop_per_s": round(achieved / 1e9, 2),
                "conv2d_3x3_64_gflop_per_s": round(conv_rate / 1e9, 2),
                "ratio_achieved_to_conv2d": round(achieved / conv_rate, 3),
                "projected_hours_for_1e5_steps": round(sec * 1e5 / 3600, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
