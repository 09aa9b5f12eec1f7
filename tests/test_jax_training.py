"""`kerasrecon fit` on the JAX backend, on a host without TensorFlow (imports of it are blocked in the
training process): train, resume, then export the run to a SavedModel under TensorFlow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
    # TensorFlow-only options are refused with the JAX alternative named.
    res = jax_cli("fit", "--steps", 1, "--strategy", "mirrored", "--out", tmp_path / "x", *TINY)
    assert res.returncode == 2 and "on JAX use --strategy auto" in res.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists()
    res = jax_cli("fit", "--steps", 1, "--precision", "mixed_float16", "--out", tmp_path / "y", *TINY)
    assert res.returncode == 2 and "--precision mixed_bfloat16" in res.stderr and not (tmp_path / "y").exists()

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


@pytest.mark.slow
def test_two_jax_devices_equal_one(tmp_path):
    """--strategy auto on 2 (host) devices shards each batch (DataParallel) and equals --strategy none on
    one device with the same global batch: BatchNorm statistics and gradients are global."""
    env = dict(
        os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="", XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    outs = {}
    for strategy in ("none", "auto"):
        out = tmp_path / strategy
        res = subprocess.run(
            [
                sys.executable,
                "-c",
                NO_TF,
                "fit",
                "--steps",
                "3",
                "--pretrain-steps",
                "1",
                "--out",
                str(out),
                "--strategy",
                strategy,
                *TINY,
                "--lr",
                "1e-3",
                "--loss",
                "mse",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        outs[strategy] = out / "checkpoints" / "ckpt-00000004"
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_TF,
            "fit",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "odd"),
            *TINY,
            "--batch-size",
            "3",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 2 and "not divisible by the 2 replicas" in res.stderr  # auto really used 2 devices
    one, two = checkpoint_weights(outs["none"]), checkpoint_weights(outs["auto"])
    assert one.keys() == two.keys() and len(one) > 20
    for k in one:  # Adam turns round-off in near-zero gradients into ~lr steps: compare to lr scale
        np.testing.assert_allclose(two[k], one[k], atol=2e-4, rtol=1e-3, err_msg=k)


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
