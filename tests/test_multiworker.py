"""Two worker processes on 127.0.0.1 train a tiny GAN with MultiWorkerMirroredStrategy."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kerasrecon.errors import ConfigError
from kerasrecon.training.strategy import cluster_resolver

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "helpers" / "multiworker_worker.py"
STEPS = 2


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def worker_env(ports, index):
    env = dict(os.environ)
    env["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


@pytest.mark.slow
def test_two_workers_match_single_process(tmp_path):
    ports = free_ports(2)
    run_dir = tmp_path / "run"
    procs = [
        subprocess.Popen(
            [sys.executable, str(HELPER), str(run_dir), str(tmp_path / f"w{i}.npz"), str(STEPS)],
            env=worker_env(ports, i),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    # The reference runs on the same devices as the workers (CPU only, also on a GPU host).
    env = dict(os.environ, KERASRECON_TEST_STRATEGY="none", CUDA_VISIBLE_DEVICES="")
    single = subprocess.run(
        [sys.executable, str(HELPER), str(tmp_path / "single"), str(tmp_path / "s.npz"), str(STEPS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    w0, w1, s = (np.load(tmp_path / n) for n in ("w0.npz", "w1.npz", "s.npz"))
    keys = [k for k in w0.files if k.startswith("arr_")]
    assert int(w0["step"]) == int(w1["step"]) == STEPS
    for k in keys:
        np.testing.assert_allclose(w0[k], w1[k], atol=1e-6)  # the workers stay in sync
    # Equal to one process on the same global batch. Adam divides by sqrt(v), so a gradient that is
    # zero up to round-off still moves its weight by ~lr: compare the share of weights that differ by
    # more than a tenth of one step (lr 1e-3), which must be tiny, and the typical difference.
    diffs = np.concatenate([np.abs(w0[k] - s[k]).ravel() for k in keys])
    assert np.mean(diffs > 1e-4) < 1e-3, np.mean(diffs > 1e-4)
    assert np.median(diffs) < 1e-6
    # Only the chief (worker 0) wrote checkpoints: exactly the run's own files.
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == STEPS
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "checkpoints", "config.json", "tensorboard"]


@pytest.mark.parametrize(
    "value, match",
    [
        (None, "needs TF_CONFIG"),
        ("{not json", "malformed"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "outside"),
        ('{"cluster": {"worker": ["a:1"]}}', "malformed"),
    ],
)
def test_bad_tf_config(monkeypatch, value, match):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ConfigError, match=match):
        cluster_resolver()


@pytest.mark.slow
def test_dead_worker_fails_the_other_within_bounded_time(tmp_path):
    import signal
    import time

    ports = free_ports(2)
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "kerasrecon_cli.main",
        "fit",
        "--strategy",
        "multiworker",
        "--collective-timeout",
        "20",
        "--loss",
        "mse",
        "--batch-size",
        "2",
        "--patch-size",
        "32",
        "--blocks",
        "1",
        "--filters",
        "8",
        "--steps",
        "100000",
        "--checkpoint-every",
        "2",
        "--out",
        str(run_dir),
    ]
    procs = [
        subprocess.Popen(cmd, env=worker_env(ports, i), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    latest = run_dir / "checkpoints" / "latest.json"
    try:
        deadline = time.time() + 300
        while not (latest.exists() and json.loads(latest.read_text())["step"] >= 2):
            assert time.time() < deadline, "no checkpoint within 300 s"
            assert procs[0].poll() is None, procs[0].communicate()[1][-2000:]
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGKILL)
        _, err = procs[0].communicate(timeout=240)  # the dead worker is noticed within the collective timeout
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[0].returncode == 2, err[-2000:]
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("kerasrecon: error:") and "worker" in last_line, last_line
    step = json.loads(latest.read_text())["step"]
    assert (run_dir / "checkpoints" / f"ckpt-{step:08d}" / "generator.weights.h5").is_file()
