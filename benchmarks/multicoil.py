"""Multi-coil cost in one run: the training input per batch (SENSE-combined zero-filled windows) for
C = 1, 8, 15 coils, and SavedModel latency for one 640×368 slice, single-coil vs the ``multicoil``
signature with 8 and 15 coils (coil maps, SENSE combination and coil-wise DC in the graph).

The training step itself does not change with C: the generator sees the 2-channel SENSE-combined
image and DC is the identity on training windows (it runs coil-wise at evaluation and serving), so
only the input pipeline and serving are measured. The generator is full size (B = 16, random weights).

    python benchmarks/multicoil.py [--blocks 16] [--repeats 3] [--coils 1 8 15]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import machine, seconds_per_call  # noqa: E402

from kerasrecon.coils import birdcage_maps  # noqa: E402
from kerasrecon.config import DataConfig, MaskConfig, TrainConfig  # noqa: E402
from kerasrecon.data.pipeline import numpy_batches  # noqa: E402
from kerasrecon.data.volume import Volume  # noqa: E402
from kerasrecon.export import ReconModule  # noqa: E402
from kerasrecon.kspace import fft2c_np  # noqa: E402
from kerasrecon.masks import make_mask  # noqa: E402
from kerasrecon.models.generator import build_generator  # noqa: E402

SERVE_SHAPE = (640, 368)  # a fastMRI knee file's raw grid
TRAIN_SHAPE = (320, 320)  # the training grid


def volume(coils: int, slices: int, shape, rng) -> Volume:
    """Random smooth-ish complex slices seen through ``coils`` birdcage coils (maps: the true ones)."""
    img = (rng.standard_normal((slices, *shape)) + 1j * rng.standard_normal((slices, *shape))).astype(np.complex64)
    if coils == 1:
        return Volume("single", fft2c_np(img))
    maps = np.broadcast_to(birdcage_maps(coils, *shape), (slices, coils, *shape)).astype(np.complex64)
    coil_kspace = fft2c_np(maps * img[:, None]).astype(np.complex64)
    return Volume(f"c{coils}", fft2c_np(img), coil_kspace=coil_kspace, maps=maps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--coils", type=int, nargs="+", default=[1, 8, 15])
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    cfg = TrainConfig(
        data=DataConfig(patch_size=96, batch_size=16, sampling="slice"), mask=MaskConfig(kind="random", acceleration=4)
    )
    inputs = {}
    for c in a.coils:
        batches = numpy_batches([volume(c, 8, TRAIN_SHAPE, rng)], cfg, workers=2, prefetch=1)
        next(batches)
        inputs[f"C{c}"] = round(seconds_per_call(lambda: next(batches), a.repeats, warmup=0), 4)
        batches.close()
    generator = build_generator(a.blocks)
    multicoil = build_generator(a.blocks, multicoil=True)
    multicoil.set_weights(generator.get_weights())
    module = ReconModule(generator, {"benchmark": True}, multicoil, 0.08)
    serving = {}
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve, "multicoil": module.multicoil})
        loaded = tf.saved_model.load(tmp).signatures
        mask = tf.constant(make_mask("random", 4, SERVE_SHAPE, 0).array)
        for c in a.coils:
            shape = (1, *SERVE_SHAPE) if c == 1 else (1, c, *SERVE_SHAPE)
            re = tf.constant(rng.standard_normal(shape).astype(np.float32))
            im = tf.constant(rng.standard_normal(shape).astype(np.float32))
            fn = loaded["serving_default"] if c == 1 else loaded["multicoil"]
            serving[f"C{c}"] = round(
                seconds_per_call(lambda: fn(kspace_real=re, kspace_imag=im, mask=mask)["image"].numpy(), a.repeats), 4
            )
    base_in, base_serve = inputs.get("C1"), serving.get("C1")
    print(
        json.dumps(
            {
                "benchmark": "multicoil",
                "machine": machine(),
                "blocks": a.blocks,
                "repeats": a.repeats,
                "input_batch_s": inputs,
                "input_batch": "16 windows of 96x96 from 320x320 slices, sampling slice, NumPy path",
                "serving_slice_s": serving,
                "serving_slice": f"one {SERVE_SHAPE[0]}x{SERVE_SHAPE[1]} slice, SavedModel",
                "ratios_to_single_coil": {
                    "input": {k: round(v / base_in, 3) for k, v in inputs.items()} if base_in else None,
                    "serving": {k: round(v / base_serve, 3) for k, v in serving.items()} if base_serve else None,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
