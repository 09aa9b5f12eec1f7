"""Steps/s of a small model's training loop when the step's values are read from the device after
every step (what every version before this one did: each value converted to a Python float, which
waits for the step) and only every ``log_every`` steps (now), on the active Keras backend, in
one run. Both use log_every = steps / 2 for the scalar writes; the per-step read is the old runner's
``float()`` of every value, put back by wrapping the runner. The small model (2 blocks × 16 filters,
32×32 patches, batch 4, MSE) is where a per-step round trip costs most; the steady-state rate is
timed between the reads at ``--steps`` / 2 and ``--steps`` (compilation excluded).

    [KERAS_BACKEND=jax] python benchmarks/host_sync.py [--steps 200]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT.parent))
import keras  # noqa: E402
from common import machine, small_config  # noqa: E402

from kerasrecon.training.trainer import train  # noqa: E402


def steady_rate(read_every_step: bool, steps: int) -> float:
    """Steps/s between the reads at steps / 2 and steps."""
    from kerasrecon.training import runners, trainer

    def make_runner(cfg, strategy=None):
        runner = runners.make_runner(cfg, strategy)
        if read_every_step:
            step = runner.step
            runner.step = lambda pretrain, batch: {k: float(v) for k, v in step(pretrain, batch).items()}
        return runner

    trainer.make_runner = make_runner
    cfg = small_config(steps, log_every=steps // 2)
    marks = {}
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "run", progress=lambda s, t, _: marks.setdefault(s, time.perf_counter()))
    return (steps // 2) / (marks[steps] - marks[steps // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args()
    every_step = steady_rate(True, a.steps)
    every_log = steady_rate(False, a.steps)
    print(
        json.dumps(
            {
                "benchmark": "host_sync",
                "backend": keras.backend.backend(),
                "machine": machine(),
                "steps": a.steps,
                "steps_per_s_read_every_step": round(every_step, 2),
                "steps_per_s_read_every_log_step": round(every_log, 2),
                "speedup": round(every_log / every_step, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
