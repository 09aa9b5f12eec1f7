"""`kerasrecon fit` on the JAX backend, on a host without TensorFlow (imports of it are blocked in the
training processes): train, resume, then export the run to a SavedModel under TensorFlow; data parallel
over 2 devices and over 2 processes (``--strategy multiworker``), each equal to one device; a dead
process stops the other with one line."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_multiworker import free_ports, worker_env

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--batch-size",
    "2",
    "--patch-size",
    "32",
    "--blocks",
    "1",
    "--filters",
    "8",
    "--loss",
    "hybrid",
    "--vgg-weights",
    "none",
    "--checkpoint-every",
    "2",
    "--log-every",
    "1",
]
# Runs the CLI with `import tensorflow` made to fail, as on a JAX-only GPU host.
NO_TF = (
    "import sys; sys.modules['tensorflow'] = None\n"
    "from kerasrecon_cli.main import main\n"
    "sys.argv = ['kerasrecon'] + sys.argv[1:]; main()"
)
RECON = (
    "import sys, numpy as np; sys.modules['tensorflow'] = None\n"
    "from kerasrecon import Reconstructor\n"
    "k, m = np.load(sys.argv[2]), np.load(sys.argv[3])\n"
    "np.save(sys.argv[4], Reconstructor.from_run(sys.argv[1])(k, m))"
)


def checkpoint_weights(path) -> dict:
    """Every array of a checkpoint's generator and discriminator weight files, by file and HDF5 path."""
    import h5py

    found = {}
    for name in ("generator.weights.h5", "discriminator.weights.h5"):
        with h5py.File(path / name, "r") as f:
            f.visititems(lambda k, v: found.__setitem__(name + k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return found


def jax_cli(*args):
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, "-c", NO_TF, *map(str, args)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_fit_on_jax_without_tensorflow_resumes_and_exports(tmp_path):
    out = tmp_path / "run"
    res = jax_cli("fit", "--steps", 2, "--pretrain-steps", 2, "--out", out, *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "trained steps 0..4" in res.stdout and "tensorboard --logdir" in res.stdout
    from kerasrecon.training.logs import read_scalars  # TensorBoard event files, written without TensorFlow

    assert set(read_scalars(out)) >= {"pretrain/g_loss", "train/d_loss", "train/adversarial", "val/psnr"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["steps"] == 2 and cfg["loss"]["content"] == "hybrid"
    # Resume on JAX: two more GAN steps from the step-4 checkpoint.
    res = jax_cli("fit", "--steps", 4, "--pretrain-steps", 2, "--out", out, *TINY, "--force")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "trained steps 4..6" in res.stdout and f"resuming {out} at step 4" in res.stderr
    # The JAX-trained run exports to a SavedModel under TensorFlow (this process) and serves the same
    # images as the JAX generator itself.
    from kerasrecon import Reconstructor
    from kerasrecon.data.demo import demo_images
    from kerasrecon.export import export_run
    from kerasrecon.masks import make_mask
    from tests.conftest import ref_fft2c

    export_run(out, tmp_path / "export")
    images = demo_images()[40:42]
    kspace = ref_fft2c(images.astype(np.complex64))
    mask = make_mask("poisson", 4, images.shape[1:], 0).array
    np.save(tmp_path / "k.npy", kspace)
    np.save(tmp_path / "m.npy", mask)
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            RECON,
            str(out),
            str(tmp_path / "k.npy"),
            str(tmp_path / "m.npy"),
            str(tmp_path / "jax.npy"),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    served = Reconstructor.from_export(tmp_path / "export")(kspace, mask)
    on_jax = np.load(tmp_path / "jax.npy")
    np.testing.assert_allclose(served, on_jax, atol=1e-4 * on_jax.max())
    assert json.loads((tmp_path / "export" / "assets" / "kerasrecon.json").read_text())["step"] == 6


# One process, one device: the reference the data-parallel runs below must equal.
LR = 1e-3
EQUAL_ARGS = ["--steps", "3", "--pretrain-steps", "1", *TINY, "--lr", str(LR), "--loss", "mse"]


def jax_env(**extra):
    return dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="", **extra)


@pytest.fixture(scope="module")
def one_device_weights(tmp_path_factory):
    """Weights after 1 pretraining + 3 GAN steps on one device (``--strategy none``)."""
    out = tmp_path_factory.mktemp("one_device") / "run"
    res = subprocess.run(
        [sys.executable, "-c", NO_TF, "fit", "--out", str(out), "--strategy", "none", *EQUAL_ARGS],
        env=jax_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "on 1 replicas" not in res.stdout and "trained steps 0..4;" in res.stdout
    return checkpoint_weights(out / "checkpoints" / "ckpt-00000004")


def assert_same_weights(one, two):
    """Every weight of ``two`` equals ``one``'s to 2e-4 (rtol 1e-3), but for at most 0.1 % of a
    variable's elements, which may differ by up to 4 Adam steps (4·lr).

    Adam divides each gradient by its own running RMS, so a gradient that is ~0 in exact arithmetic
    takes a step of ~lr in the direction of its round-off, which another summation order (a sharded
    batch, other machine code) can flip: a few isolated elements, e.g. 174 of the 2 097 152 of the
    dense layer of D. A method difference (per-device BatchNorm statistics or loss means) moves
    most elements of most variables."""
    assert one.keys() == two.keys() and len(one) > 20
    for k in one:
        a, b = np.asarray(one[k], np.float64), np.asarray(two[k], np.float64)
        off = np.abs(b - a) > 2e-4 + 1e-3 * np.abs(a)
        assert off.mean() <= 1e-3, (k, int(off.sum()), a.size)
        np.testing.assert_allclose(b, a, atol=4 * LR, rtol=1e-3, err_msg=k)


@pytest.mark.slow
def test_two_jax_devices_equal_one(tmp_path, one_device_weights):
    """--strategy auto on 2 (host) devices shards each batch (DataParallel) and equals --strategy none on
    one device with the same global batch: BatchNorm statistics and gradients are global."""
    out = tmp_path / "auto"
    res = subprocess.run(
        [sys.executable, "-c", NO_TF, "fit", "--out", str(out), "--strategy", "auto", *EQUAL_ARGS],
        env=jax_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "trained steps 0..4 on 2 replicas" in res.stdout  # auto really split each batch over 2 devices
    assert_same_weights(one_device_weights, checkpoint_weights(out / "checkpoints" / "ckpt-00000004"))


def start_worker(args, env):
    """One ``kerasrecon fit`` process of a JAX cluster (TensorFlow unimportable)."""
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
def test_two_jax_processes_equal_one(tmp_path, one_device_weights):
    """``--strategy multiworker`` on JAX: two processes on this machine (one CPU device each, Gloo
    collectives) join through TF_CONFIG, as TensorFlow's workers do, and equal one process on the same
    global batch."""
    ports = free_ports(2)
    run = tmp_path / "run"
    args = ["--out", run, "--strategy", "multiworker", *EQUAL_ARGS]
    procs = [start_worker(args, worker_env(ports, i)) for i in range(2)]
    outs = finish(procs)
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-3000:] for _, e in outs)
    assert "trained steps 0..4 on 2 replicas" in outs[0][0]  # the chief reports; the batch was split
    assert_same_weights(one_device_weights, checkpoint_weights(run / "checkpoints" / "ckpt-00000004"))


@pytest.mark.slow
def test_a_dead_jax_process_stops_the_other_with_one_line(tmp_path):
    ports = free_ports(2)
    args = ["--steps", 500, "--out", tmp_path / "run", "--strategy", "multiworker", "--collective-timeout", 20]
    args += ["--pretrain-steps", "1", *TINY, "--lr", str(LR), "--loss", "mse"]
    procs = [start_worker(args, worker_env(ports, i)) for i in range(2)]
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


@pytest.mark.slow
def test_seeding_on_jax_imports_no_tensorflow():
    """trainer.set_seed seeds Python, NumPy and Keras as keras.utils.set_random_seed does, without the
    TensorFlow import Keras would do whenever TensorFlow is installed."""
    code = (
        "import sys, random, numpy as np, keras\n"
        "from kerasrecon.training.trainer import set_seed\n"
        "set_seed(3); a = (random.random(), np.random.rand())\n"
        "random.seed(3); np.random.seed(3); b = (random.random(), np.random.rand())\n"
        "assert a == b and keras.config.backend() == 'jax'\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
