"""`kerasrecon fit` on the JAX backend, on a host without TensorFlow (imports of it are blocked in the
training process): train, resume, then export the run to a SavedModel under TensorFlow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--batch-size", "2", "--patch-size", "32", "--blocks", "1", "--filters", "8", "--loss", "hybrid",
        "--vgg-weights", "none", "--checkpoint-every", "2", "--log-every", "1"]
# Runs the CLI with `import tensorflow` made to fail, as on a JAX-only GPU host.
NO_TF = ("import sys; sys.modules['tensorflow'] = None\n"
         "from kerasrecon_cli.main import main\n"
         "sys.argv = ['kerasrecon'] + sys.argv[1:]; main()")
RECON = ("import sys, numpy as np; sys.modules['tensorflow'] = None\n"
         "from kerasrecon import Reconstructor\n"
         "k, m = np.load(sys.argv[2]), np.load(sys.argv[3])\n"
         "np.save(sys.argv[4], Reconstructor.from_run(sys.argv[1])(k, m))")


def jax_cli(*args):
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-c", NO_TF, *map(str, args)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_fit_on_jax_without_tensorflow_resumes_and_exports(tmp_path):
    out = tmp_path / "run"
    res = jax_cli("fit", "--steps", 2, "--pretrain-steps", 2, "--out", out, *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "trained steps 0..4" in res.stdout and "scalars.jsonl" in res.stdout
    lines = [json.loads(x) for x in (out / "tensorboard" / "scalars.jsonl").read_text().splitlines()]
    assert {r["tag"] for r in lines} >= {"pretrain/g_loss", "train/d_loss", "train/adversarial", "val/psnr"}
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
    res = subprocess.run([sys.executable, "-c", RECON, str(out), str(tmp_path / "k.npy"), str(tmp_path / "m.npy"),
                          str(tmp_path / "jax.npy")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    served = Reconstructor.from_export(tmp_path / "export")(kspace, mask)
    on_jax = np.load(tmp_path / "jax.npy")
    np.testing.assert_allclose(served, on_jax, atol=1e-4 * on_jax.max())
    assert json.loads((tmp_path / "export" / "assets" / "kerasrecon.json").read_text())["step"] == 6
