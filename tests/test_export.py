import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig
from kerasrecon.data.demo import load_demo
from kerasrecon.errors import ConfigError
from kerasrecon.export import export_run, load_export
from kerasrecon.masks import make_mask
from kerasrecon.training.checkpoint import load_generator
from kerasrecon.training.trainer import train
from tests.conftest import ref_fft2c, ref_ifft2c

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "run"
    cfg = TrainConfig(
        data=DataConfig(patch_size=32, batch_size=2),
        model=ModelConfig(blocks=1, filters=8),
        loss=LossConfig(content="mse"),
        steps=2,
        checkpoint_every=2,
    )
    train(cfg, out)
    return out


@pytest.mark.slow
def test_export_reload_in_bare_tensorflow(run_dir, tmp_path):
    export = export_run(run_dir, tmp_path / "export")
    meta = json.loads((export / "assets" / "kerasrecon.json").read_text())
    assert meta["train_config"]["loss"]["content"] == "mse" and meta["step"] == 2
    assert "centred orthonormal" in meta["kspace_convention"]

    # Two slices of the demo at its own size (not the training patch size): dynamic H, W.
    kspace = load_demo(num_slices=2).kspace[:, :64, :48]
    mask = make_mask("poisson", 4, (64, 48), 0).array
    masked = kspace * mask
    zf = ref_ifft2c(masked)
    np.savez(
        tmp_path / "in.npz",
        kspace_real=kspace.real.astype(np.float32),
        kspace_imag=kspace.imag.astype(np.float32),
        mask=mask,
        zero_filled=np.stack([zf.real, zf.imag], -1).astype(np.float32),
    )
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "helpers" / "load_export.py"),
            str(export),
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = np.load(tmp_path / "out.npz")
    assert int(got["kerasrecon_modules"]) == 0  # the serving process never imported kerasrecon

    # In-process Keras reference, normalisation done here by hand.
    _, g, _ = load_generator(run_dir)
    scale = 1 / np.abs(zf).reshape(2, -1).max(1)[:, None, None]
    ch = lambda x: np.stack([x.real, x.imag], -1).astype(np.float32)  # noqa: E731
    ref = g(
        {
            "zero_filled": ch(zf * scale),
            "masked_kspace": ch(masked * scale),
            "mask": np.broadcast_to(mask, (2, 64, 48)).astype(np.float32),
        }
    ).numpy()
    ref_c = (ref[..., 0] + 1j * ref[..., 1]) / scale
    np.testing.assert_allclose(got["image"], np.abs(ref_c), atol=1e-5 * np.abs(ref_c).max())
    out_c = got["complex_image"][..., 0] + 1j * got["complex_image"][..., 1]
    k_out = ref_fft2c(out_c)
    m = mask.astype(bool)
    np.testing.assert_allclose(k_out[:, m], kspace[:, m], atol=1e-5 * np.abs(kspace).max())
    assert got["zf_image"].shape == (2, 64, 48)


def test_export_refuses_non_empty_out(run_dir, tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="force=True"):
        export_run(run_dir, tmp_path / "export")
    assert (tmp_path / "export" / "keep.txt").read_text() == "mine"


def test_load_export_rejects_foreign_dirs(tmp_path):
    with pytest.raises(ConfigError, match="not a SavedModel"):
        load_export(tmp_path)
