"""benchmarks/gpu_train.sh, the one GPU script, runs on a host without TensorFlow: run here with
TensorFlow made unimportable (``tests/helpers/block_modules``) on JAX at tiny settings, so a
TensorFlow import creeping into the JAX path fails CI; a missing module is one line naming it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = ROOT / "tests" / "helpers" / "block_modules"


def run_script(blocked, **env):
    env = dict(os.environ, PYTHONPATH=str(BLOCK), BLOCK_MODULES=blocked, PYTHON=sys.executable, **env)
    env.pop("KERAS_BACKEND", None)
    return subprocess.run(
        ["bash", "benchmarks/gpu_train.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_gpu_script_runs_on_jax_without_tensorflow():
    res = run_script("tensorflow", STEPS="1", PRECISIONS="float32", ARGS="--batch 2 --patch 32 --blocks 1")
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(d["backend"], d["precision"]) for d in lines] == [("jax", "float32")]  # the TF part skipped
    assert lines[0]["s_per_step"] > 0 and lines[0]["tflop_per_step"] > 0


def test_gpu_script_names_a_missing_module_in_one_line():
    res = run_script("tensorflow,optree")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "missing Python module(s): optree" in res.stderr
