import csv
import json
import subprocess

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from kerasrecon_cli.main import cli

TINY = ["--batch-size", "2", "--patch-size", "32", "--blocks", "1", "--filters", "8", "--loss", "mse"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_export")
    assert run("fit", "--steps", 1, "--checkpoint-every", 1, "--out", root / "run", *TINY).exit_code == 0
    res = run("export", root / "run", "--out", root / "export")
    assert res.exit_code == 0, res.output
    return root


def test_export_cli_metadata_and_no_overwrite(exported):
    meta = json.loads((exported / "export" / "assets" / "kerasrecon.json").read_text())
    assert meta["train_config"]["loss"]["content"] == "mse"
    res = run("export", exported / "run", "--out", exported / "export")
    assert res.exit_code == 2 and "--force" in res.output


def test_saved_model_cli_lists_signatures(exported):
    import sys
    from pathlib import Path
    from shutil import which

    tool = Path(sys.executable).parent / "saved_model_cli"
    if not tool.exists() and which("saved_model_cli") is None:
        pytest.skip("saved_model_cli not installed")
    out = subprocess.run(
        [str(tool if tool.exists() else "saved_model_cli"), "show", "--dir", str(exported / "export"), "--all"],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    assert "serving_default" in out and "from_zero_filled" in out
    # Inputs have unknown rank on purpose: the graph checks ranks and shapes itself (README contract).
    assert "kspace_real" in out and "shape: unknown_rank" in out and "complex_image" in out


def test_reconstruct_fastmri_file_with_own_mask(exported, tmp_path, rng):
    kspace = (rng.standard_normal((3, 340, 330)) + 1j * rng.standard_normal((3, 340, 330))).astype(np.complex64)
    cols = np.zeros(330, np.float32)
    cols[::4] = 1
    with h5py.File(tmp_path / "file1.h5", "w") as f:
        f.create_dataset("kspace", data=kspace * cols)
        f.create_dataset("mask", data=cols)
    res = run(
        "reconstruct",
        "--model",
        exported / "export",
        "--input",
        tmp_path / "file1.h5",
        "--output",
        tmp_path / "out.h5",
        "--batch-size",
        2,
    )
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["reconstruction"].shape == (3, 320, 320)
        assert f.attrs["mask_kind"] == "file" and f.attrs["achieved_acceleration"] == pytest.approx(330 / 83, 1e-3)
    res = run(
        "reconstruct", "--model", exported / "export", "--input", tmp_path / "file1.h5", "--output", tmp_path / "out.h5"
    )
    assert res.exit_code == 2 and "--force" in res.output


def test_reconstruct_bad_inputs(exported, tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    res = run(
        "reconstruct", "--model", exported / "export", "--input", tmp_path / "bad.h5", "--output", tmp_path / "o.h5"
    )
    assert res.exit_code == 2 and "bad.h5" in res.output and not (tmp_path / "o.h5").exists()
    res = run("reconstruct", "--model", exported / "run", "--input", tmp_path / "bad.h5", "--output", tmp_path / "o.h5")
    assert res.exit_code == 2 and "bad.h5" in res.output  # a run is a model too; the input is still checked
    (tmp_path / "empty").mkdir()
    res = run(
        "reconstruct", "--model", tmp_path / "empty", "--input", tmp_path / "bad.h5", "--output", tmp_path / "o.h5"
    )
    assert res.exit_code == 2 and "empty" in res.output and len(res.output.splitlines()) == 1, res.output
    with h5py.File(tmp_path / "real.h5", "w") as f:  # magnitude where complex k-space is expected
        f.create_dataset("kspace", data=np.ones((1, 32, 32), np.float32))
    res = run(
        "reconstruct", "--model", exported / "export", "--input", tmp_path / "real.h5", "--output", tmp_path / "o.h5"
    )
    assert res.exit_code == 2 and "complex" in res.output and not (tmp_path / "o.h5").exists()
    with h5py.File(tmp_path / "m.h5", "w") as f:  # own mask of the wrong length
        f.create_dataset("kspace", data=np.ones((1, 32, 32), np.complex64))
        f.create_dataset("mask", data=np.ones(30, np.float32))
    res = run(
        "reconstruct", "--model", exported / "export", "--input", tmp_path / "m.h5", "--output", tmp_path / "o.h5"
    )
    assert res.exit_code == 2 and "'mask' has 30 entries" in res.output


def test_evaluate_run_and_its_export_agree(exported, tmp_path):
    res = run("evaluate", "--model", exported / "run", "--out", tmp_path / "a")
    assert res.exit_code == 0, res.output
    # stdout is not a terminal: plain progress lines, no carriage returns or colour codes
    assert "\r" not in res.output and "\x1b" not in res.output and "slices (" in res.output
    assert ": mse, " in res.output and " slices in " in res.output  # each method reported as it finishes
    res = run("evaluate", "--model", exported / "export", "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    a = list(csv.DictReader(open(tmp_path / "a" / "slices.csv")))
    b = list(csv.DictReader(open(tmp_path / "b" / "slices.csv")))
    assert [r["method"] for r in a] == [r["method"] for r in b]
    for ra, rb in zip(a, b):
        assert float(ra["psnr"]) == pytest.approx(float(rb["psnr"]), abs=1e-3)
        assert ra["mask_sha256"] == rb["mask_sha256"]
    res = run("evaluate", "--model", exported / "run", "--out", tmp_path / "a")
    assert res.exit_code == 2 and "--force" in res.output


def test_reconstruct_from_run_equals_from_export(exported, tmp_path, rng):
    """The run path (``Reconstructor``, coil maps by ``acs_maps_np``) and the export's graph (maps by
    ``acs_maps_ch``) give the same images, single- and multi-coil."""
    from tests.conftest import random_complex

    np.save(tmp_path / "single.npy", random_complex(rng, (2, 32, 24)))
    with h5py.File(tmp_path / "multi.h5", "w") as f:
        f.create_dataset("kspace", data=random_complex(rng, (2, 4, 32, 24)))
    for name in ("single.npy", "multi.h5"):
        got = {}
        for model in ("run", "export"):
            out = tmp_path / f"{model}_{name}.h5"
            res = run("reconstruct", "--model", exported / model, "--input", tmp_path / name, "--output", out)
            assert res.exit_code == 0, res.output
            with h5py.File(out) as f:
                got[model] = f["reconstruction"][()]
        assert got["run"].shape == (2, 32, 24)
        np.testing.assert_allclose(got["run"], got["export"], rtol=1e-4, atol=1e-4 * got["export"].max())


@pytest.mark.slow
def test_reconstruct_defaults_to_the_models_training_mask(tmp_path, rng):
    """Files without their own mask get the mask the model was trained with (kind, R, seed from the
    export metadata); an explicit option overrides one field."""
    root = tmp_path
    assert (
        run(
            "fit",
            "--steps",
            1,
            "--checkpoint-every",
            1,
            "--out",
            root / "run",
            *TINY,
            "--mask",
            "random",
            "-R",
            6,
            "--mask-seed",
            3,
        ).exit_code
        == 0
    )
    assert run("export", root / "run", "--out", root / "export").exit_code == 0
    kspace = (rng.standard_normal((2, 48, 40)) + 1j * rng.standard_normal((2, 48, 40))).astype(np.complex64)
    np.save(root / "k.npy", kspace)
    res = run("reconstruct", "--model", root / "export", "--input", root / "k.npy", "--output", root / "a.h5")
    assert res.exit_code == 0, res.output
    with h5py.File(root / "a.h5", "r") as f:
        assert (f.attrs["mask_kind"], f.attrs["acceleration"], f.attrs["mask_seed"]) == ("random", 6.0, 3)
    res = run("reconstruct", "--model", root / "export", "--input", root / "k.npy", "--output", root / "b.h5", "-R", 4)
    assert res.exit_code == 0, res.output
    with h5py.File(root / "b.h5", "r") as f:
        assert (f.attrs["mask_kind"], f.attrs["acceleration"], f.attrs["mask_seed"]) == ("random", 4.0, 3)


def test_reconstruct_fully_sampled_fastmri_on_the_trained_grid(exported, tmp_path, rng):
    """A fully sampled fastMRI file is reconstructed on the 320×320 training grid by default (crop the image,
    re-transform, mask drawn there) — checked against that pipeline written with NumPy and the export;
    --grid file keeps the raw grid (mask at the file's shape, output cropped)."""
    from kerasrecon import Reconstructor
    from kerasrecon.masks import make_mask
    from tests.conftest import ref_fft2c, ref_ifft2c

    kspace = (rng.standard_normal((2, 340, 330)) + 1j * rng.standard_normal((2, 340, 330))).astype(np.complex64)
    with h5py.File(tmp_path / "full.h5", "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_esc", data=np.zeros((2, 320, 320), np.float32))
    res = run(
        "reconstruct", "--model", exported / "export", "--input", tmp_path / "full.h5", "--output", tmp_path / "t.h5"
    )
    assert res.exit_code == 0, res.output
    img = ref_ifft2c(kspace)[:, 10:330, 5:325]  # centre 320×320 of 340×330
    meta = json.loads((exported / "export" / "assets" / "kerasrecon.json").read_text())["train_config"]["mask"]
    mask = make_mask(meta["kind"], meta["acceleration"], (320, 320), meta["seed"]).array
    expected = Reconstructor.from_export(exported / "export")(ref_fft2c(img).astype(np.complex64), mask)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        np.testing.assert_allclose(f["reconstruction"][()], expected, atol=1e-4 * expected.max())
        assert list(f.attrs["mask_shape"]) == [320, 320]
    res = run(
        "reconstruct",
        "--model",
        exported / "export",
        "--input",
        tmp_path / "full.h5",
        "--output",
        tmp_path / "f.h5",
        "--grid",
        "file",
    )
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert f["reconstruction"].shape == (2, 320, 320) and list(f.attrs["mask_shape"]) == [340, 330]
