"""Full-size GAN training step (batch 16, 96×96, B = 16, hybrid loss): steps/s, images/s, achieved
FLOP/s as a ratio to this machine's measured 3×3 64→64 Conv2D FLOP/s (same run), and the projected
wall time of 1e5 iterations.

FLOPs per step (forward FLOPs G_f, D_f, V_f per image counted by TensorFlow's profiler, backward
counted as 2× forward): one G forward shared by both updates (G_f); D update = D fwd/bwd on real and
fake (6·D_f); G update = G backward (2·G_f) + D fwd + input-grad through D (2·D_f) + VGG fwd on
target and recon + input-grad through VGG (3·V_f). Total per image: 3·G_f + 8·D_f + 3·V_f.

    python benchmarks/train_step.py [--steps 3] [--batch 16] [--patch 96] [--blocks 16]
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import conv_flops_per_second, forward_flops, machine  # noqa: E402

import tensorflow as tf  # noqa: E402

from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig  # noqa: E402
from kerasrecon.data.demo import load_demo  # noqa: E402
from kerasrecon.data.pipeline import training_dataset  # noqa: E402
from kerasrecon.training.precision import resolve_jit, resolve_precision  # noqa: E402
from kerasrecon.training.step_tf import make_distributed_step  # noqa: E402
from kerasrecon.training.trainer import build_gan  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--loss", default="hybrid")
    ap.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"])
    ap.add_argument("--jit", default="auto", choices=["auto", "on", "off"])
    a = ap.parse_args()
    jit = None if a.jit == "auto" else a.jit == "on"
    cfg = TrainConfig(data=DataConfig(patch_size=a.patch, batch_size=a.batch), model=ModelConfig(blocks=a.blocks),
                      loss=LossConfig(content=a.loss, vgg_weights="none"),  # weights do not change the FLOPs
                      precision=a.precision, jit=jit)
    strategy = tf.distribute.get_strategy()
    gan = build_gan(cfg)
    step = make_distributed_step(gan, strategy, jit=resolve_jit(cfg.jit))
    batches = iter(training_dataset([load_demo()], cfg))
    step(next(batches))  # trace + warm-up
    t0 = time.perf_counter()
    for _ in range(a.steps):
        out = step(next(batches))
    float(out["g_loss"])
    sec = (time.perf_counter() - t0) / a.steps

    p = a.patch
    g_f = forward_flops(gan.generator, {"zero_filled": tf.TensorSpec([1, p, p, 2]),
                                        "masked_kspace": tf.TensorSpec([1, p, p, 2]), "mask": tf.TensorSpec([1, p, p])})
    d_f = forward_flops(gan.discriminator, tf.TensorSpec([1, p, p, 1]))
    v_f = forward_flops(gan.content_loss.vgg, tf.TensorSpec([1, p, p, 3])) if gan.content_loss.vgg else 0
    step_flops = a.batch * (3 * g_f + 8 * d_f + 3 * v_f)
    conv_rate = conv_flops_per_second(batch=a.batch, size=p)
    achieved = step_flops / sec
    print(json.dumps({
        "benchmark": "train_step", "machine": machine(),
        "settings": {"batch": a.batch, "patch": p, "blocks": a.blocks, "loss": a.loss, "timed_steps": a.steps,
                     "precision": resolve_precision(cfg.precision), "jit": resolve_jit(cfg.jit)},
        "seconds_per_step": round(sec, 4), "steps_per_s": round(1 / sec, 4), "images_per_s": round(a.batch / sec, 2),
        "forward_gflop_per_image": {"generator": g_f / 1e9, "discriminator": d_f / 1e9, "vgg54": v_f / 1e9},
        "tflop_per_step": round(step_flops / 1e12, 4),
        "achieved_gflop_per_s": round(achieved / 1e9, 2),
        "conv2d_3x3_64_gflop_per_s": round(conv_rate / 1e9, 2),
        "ratio_achieved_to_conv2d": round(achieved / conv_rate, 3),
        "projected_hours_for_1e5_steps": round(sec * 1e5 / 3600, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
