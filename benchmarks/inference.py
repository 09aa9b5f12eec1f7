"""Inference latency on 444×448 slices: in-process ``ReconModule`` vs the reloaded SavedModel, same run.

Reports seconds per call and slices/s at batch 1 and 8, and the ratio SavedModel / in-process (goal
≤ 1.1×). The generator is full size (B = 16) with random weights (weights do not change the time).
At batch 1 it also times the in-process module with the self-ensemble (``--ensemble``, default 8):
its ratio to the plain call (expected ≈ N: N generator calls).

    python benchmarks/inference.py [--blocks 16] [--repeats 2] [--ensemble 8]
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

from kerasrecon.config import ModelConfig  # noqa: E402
from kerasrecon.export import ReconModule  # noqa: E402
from kerasrecon.masks import make_mask  # noqa: E402
from kerasrecon.models.generator import from_config, multicoil_twin  # noqa: E402

SHAPE = (444, 448)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--ensemble", type=int, default=8, choices=[2, 4, 8])
    a = ap.parse_args()
    cfg = ModelConfig(blocks=a.blocks)
    generator = from_config(cfg)
    twin = multicoil_twin(generator, cfg)  # saving traces every signature, the multi-coil one too
    module = ReconModule(generator, {"benchmark": True}, twin)
    ensembled = ReconModule(generator, {"benchmark": True}, twin, ensemble=a.ensemble)
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
        loaded = tf.saved_model.load(tmp).signatures["serving_default"]
        rng = np.random.default_rng(0)
        mask = tf.constant(make_mask("poisson", 4, SHAPE, 0).array)
        results = {}
        for b in a.batches:
            re = tf.constant(rng.standard_normal((b, *SHAPE)).astype(np.float32))
            im = tf.constant(rng.standard_normal((b, *SHAPE)).astype(np.float32))
            t_mod = seconds_per_call(lambda: module.serve(re, im, mask)["image"].numpy(), a.repeats)
            t_saved = seconds_per_call(
                lambda: loaded(kspace_real=re, kspace_imag=im, mask=mask)["image"].numpy(), a.repeats
            )
            results[f"batch{b}"] = {
                "in_process_s": round(t_mod, 4),
                "savedmodel_s": round(t_saved, 4),
                "in_process_slices_per_s": round(b / t_mod, 3),
                "savedmodel_slices_per_s": round(b / t_saved, 3),
                "ratio_savedmodel_over_in_process": round(t_saved / t_mod, 3),
            }
            if b == 1:
                t_ens = seconds_per_call(lambda: ensembled.serve(re, im, mask)["image"].numpy(), a.repeats)
                results[f"batch{b}"][f"in_process_ensemble{a.ensemble}_s"] = round(t_ens, 4)
                results[f"batch{b}"][f"ratio_ensemble{a.ensemble}_over_plain"] = round(t_ens / t_mod, 3)
    print(
        json.dumps(
            {
                "benchmark": "inference",
                "machine": machine(),
                "shape": SHAPE,
                "blocks": a.blocks,
                "repeats": a.repeats,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
