"""`kerasrecon fit --strategy multiworker` on JAX: two processes on this machine (one CPU device each,
Gloo collectives, TensorFlow unimportable) join through TF_CONFIG, as TensorFlow's workers do; they
must equal one process on the same global batch, and a dead process must stop the other with one line."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.test_jax_training import NO_TF, ROOT, TINY, checkpoint_weights
from tests.test_multiworker import free_ports, worker_env

ARGS = ["--pretrain-steps", "1", *TINY, "--lr", "1e-3", "--loss", "mse"]


def start(args, env):
    return subprocess.Popen(
        [sys.executable, "-c", NO_TF, "fit", *map(str, args)],
        env={**env, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs, timeout=500):
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_two_jax_processes_equal_one(tmp_path):
    ports = free_ports(2)
    run = tmp_path / "run"
    procs = [
        start(["--steps", 3, "--out", run, "--strategy", "multiworker", *ARGS], worker_env(ports, i)) for i in range(2)
    ]
    outs = finish(procs)
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-3000:] for _, e in outs)
    single = start(["--steps", 3, "--out", tmp_path / "single", "--strategy", "none", *ARGS], dict(os.environ))
    (out, err), *_ = finish([single])
    assert single.returncode == 0, err[-3000:]
    assert "trained steps 0..4" in outs[0][0]  # the chief reports; both ran every step
    one, two = (
        checkpoint_weights(tmp_path / "single" / "checkpoints" / "ckpt-00000004"),
        checkpoint_weights(run / "checkpoints" / "ckpt-00000004"),
    )
    assert one.keys() == two.keys() and len(one) > 20
    for k in one:  # Adam turns round-off in near-zero gradients into ~lr steps: compare to lr scale
        np.testing.assert_allclose(two[k], one[k], atol=2e-4, rtol=1e-3, err_msg=k)
    # The global batch really was split: 3 samples cannot be shared by 2 processes.
    ports = free_ports(2)
    odd = [start(["--steps", 1, "--out", tmp_path / "odd", "--strategy", "multiworker", *TINY, "--batch-size", 3],
                 worker_env(ports, i)) for i in range(2)]  # fmt: skip
    for p, (_, err) in zip(odd, finish(odd)):
        assert p.returncode == 2 and "not divisible by the 2 replicas" in err, err[-2000:]


@pytest.mark.slow
def test_a_dead_jax_process_stops_the_other_with_one_line(tmp_path):
    ports = free_ports(2)
    args = ["--steps", 500, "--out", tmp_path / "run", "--strategy", "multiworker", "--collective-timeout", 20, *ARGS]
    procs = [start(args, worker_env(ports, i)) for i in range(2)]
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "run" / "checkpoints" / "ckpt-00000002").exists():  # both are training
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no checkpoint 2"
            time.sleep(0.5)
        procs[1].send_signal(signal.SIGKILL)
        _, err = procs[0].communicate(timeout=120)
    finally:
        finish(procs, timeout=10)
    errors = [line for line in err.splitlines() if line.startswith("kerasrecon: error:")]
    assert procs[0].returncode == 2 and len(errors) == 1, err[-3000:]
    assert "a collective failed" in errors[0] and "last good checkpoint is step" in errors[0], errors[0]
    assert "Traceback" not in err and "Check failure" not in err
