"""Keras backends: the core runs on JAX without TensorFlow, and the JAX GAN step equals the
TensorFlow one (one step: the same update; three steps: as close to a float64 run as TF's own)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "helpers" / "backend_steps.py"


def backend_env(name):
    return dict(os.environ, KERAS_BACKEND=name, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")


@pytest.mark.slow
def test_jax_imports_do_not_load_tensorflow():
    code = (
        "import sys, keras, kerasrecon, kerasrecon.models.generator, kerasrecon.models.discriminator, "
        "kerasrecon.losses, kerasrecon.training, kerasrecon.training.gan, kerasrecon.training.step_jax, "
        "kerasrecon.kspace, kerasrecon.coils, kerasrecon.metrics_ops, kerasrecon.config, kerasrecon.data.volume\n"
        "assert keras.backend.backend() == 'jax', keras.backend.backend()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow')\n"
        "print(bad[:5]); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], env=backend_env("jax"), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]


@pytest.mark.slow
def test_unit_tier_passes_on_jax():
    """The whole unit tier (FFT, DC, losses, PSNR, builders, masks, data, files, the output policy...),
    again on the JAX backend: only tests marked ``tensorflow`` are left out."""
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow and not tensorflow", "tests"],
        env=backend_env("jax"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    passed = int(res.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed > 200, res.stdout[-500:]


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """Initial weights (seeded) and three training batches, written by this (TensorFlow) process."""
    import keras

    from kerasrecon.data.demo import load_demo
    from kerasrecon.data.pipeline import training_dataset
    from kerasrecon.training.trainer import build_gan
    from tests.helpers.backend_steps import LOSSES, cfg

    arrays = {}
    for loss in LOSSES:
        keras.utils.set_random_seed(5)
        gan = build_gan(cfg(loss))
        parts = {
            "g": gan.generator.get_weights(),
            "d": gan.discriminator.get_weights(),
            "vgg": gan.content_loss.vgg.get_weights() if gan.content_loss.vgg is not None else [],
        }
        for name, ws in parts.items():
            arrays.update({f"{loss}/{name}_{i}": w for i, w in enumerate(ws)})
    ds = iter(training_dataset([load_demo(num_slices=12)], cfg("mse")))
    for j in range(3):
        inputs, target = next(ds)
        arrays.update({f"batch{j}/{k}": v.numpy() for k, v in inputs.items()})
        arrays[f"batch{j}/target"] = target.numpy()
    path = tmp_path_factory.mktemp("backends") / "init.npz"
    np.savez(path, **arrays)
    # The same start with the batches' float inputs moved by one float32 rounding (relative 2**-24,
    # random sign): how far TensorFlow's own float32 result moves for input round-off alone.
    rng = np.random.default_rng(0)
    for k in [k for k in arrays if k.startswith("batch") and not k.endswith("/mask")]:
        arrays[k] = (arrays[k] * (1 + rng.choice([-1.0, 1.0], arrays[k].shape) * 2.0**-24)).astype(np.float32)
    np.savez(path.with_name("init_rounded.npz"), **arrays)
    return path


def run_steps(backend, init, out, precision="float32"):
    """The helper's three steps; TensorFlow's in this (TensorFlow) process, JAX's in a subprocess."""
    if backend == "tensorflow":
        from tests.helpers.backend_steps import main

        main(init, out, precision)
        return np.load(out)
    res = subprocess.run(
        [sys.executable, str(HELPER), str(init), str(out), precision],
        env=backend_env(backend),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, f"{backend}: {res.stderr[-3000:]}"
    return np.load(out)


@pytest.fixture(scope="module")
def stepped(start, tmp_path_factory):
    root = tmp_path_factory.mktemp("stepped")
    tf_out, jax_out = run_steps("tensorflow", start, root / "tf.npz"), run_steps("jax", start, root / "jax.npz")
    rounded = run_steps("tensorflow", start.with_name("init_rounded.npz"), root / "tf_rounded.npz")
    return tf_out, jax_out, np.load(start), rounded


@pytest.fixture(scope="module")
def reference(start, tmp_path_factory):
    """The same three steps in float64 on TensorFlow (every layer and loss in float64)."""
    return run_steps("tensorflow", start, tmp_path_factory.mktemp("ref") / "tf64.npz", "float64")


def _keys(out, loss):
    return [k for k in out.files if k.startswith(f"{loss}/") and "/step1/" not in k and not k.endswith("logs")]


@pytest.mark.parametrize("loss", ["mse", "hybrid"])
def test_one_jax_step_equals_one_tensorflow_step(stepped, loss):
    """Same initial weights and batch, SGD: every variable's *update* (after − before) agrees to 1e-3
    of its norm, for mse and hybrid (random VGG), beyond what input round-off alone moves it.

    A method difference (stale D in the G loss, a missing BN statistic, another reduction) moves an
    update by far more. Some variables of this tiny D (batch 4, BN over 4-16 values per channel in
    its deep layers) are so ill-conditioned that TensorFlow's own update moves by ~1% when the batch
    is rounded differently (relative 2**-24: the same batch written by another FFT); there the bound
    is 3× that spread (about a third of the variables here), and most variables must meet 1e-3 alone."""
    tf_out, jax_out, init, rounded = stepped
    logs_tf, logs_jax, logs_rounded = (out[f"{loss}/logs"][0] for out in (tf_out, jax_out, rounded))
    assert np.all(np.abs(logs_jax - logs_tf) <= 1e-4 * np.abs(logs_tf) + 3 * np.abs(logs_rounded - logs_tf) + 1e-7)
    moved = strict = 0
    keys = _keys(tf_out, loss)
    for k in keys:
        one = k.replace(f"{loss}/", f"{loss}/step1/")
        a, b = tf_out[one], jax_out[one]
        diff, update, spread = np.linalg.norm(a - b), np.linalg.norm(a - init[k]), np.linalg.norm(a - rounded[one])
        assert diff <= 1e-3 * update + 3 * spread + 1e-7, (k, diff, update, spread)
        strict += diff <= 1e-3 * update + 1e-7
        moved += update > 1e-7
    assert moved > len(keys) // 2  # the step really changed the weights
    assert strict > len(keys) // 2, (strict, len(keys))  # most variables meet 1e-3 without the spread


@pytest.mark.parametrize("loss", ["mse", "hybrid"])
def test_three_jax_steps_as_close_to_float64_as_tensorflow(stepped, reference, loss):
    """Three steps from the same start: JAX's float32 weights are as close to the float64 result
    (TensorFlow, same code) as TensorFlow's own float32 weights are, per variable.

    A stricter criterion, JAX == TF within 1e-4 of each weight after 3 steps, cannot be held in
    float32 here: this D (batch 4, 32x32, BN over 4-16 values per channel from d_bn5 on) turns 1e-7
    round-off at step 1 into 1e-3..1e-2 relative changes of the zero-initialised biases/betas at
    step 3, so TensorFlow's float32 run is itself up to ~80x that tolerance away from its float64 run
    (oneDNN, and ~1000x with Eigen's kernels). What a method difference would move, the one-step test
    above bounds at 1e-3 of the update; this test bounds where the two float32 paths end after three,
    allowing for how far TensorFlow's own result moves when the inputs are rounded differently.
    """
    tf_out, jax_out, _, rounded = stepped
    worst = []
    for k in _keys(tf_out, loss):
        ref, floor = reference[k], 1e-4 * np.linalg.norm(reference[k]) + 1e-7
        d_jax, d_tf = np.linalg.norm(jax_out[k] - ref), np.linalg.norm(tf_out[k] - ref)
        spread = np.linalg.norm(tf_out[k] - rounded[k])  # TF's own move for rounded inputs
        assert d_jax <= 3 * (d_tf + spread) + floor, (k, d_jax / floor, d_tf / floor, spread / floor)
        worst.append(d_jax / floor)
    assert np.median(worst) < 1.0  # and most variables are within 1e-4 of the float64 result
