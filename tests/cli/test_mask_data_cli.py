import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from kerasrecon_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


@pytest.mark.parametrize("acceleration", [4, 6, 8])
def test_mask_cli_poisson(tmp_path, acceleration):
    out = tmp_path / "m.npy"
    res = run(
        "mask", "--kind", "poisson", "--acceleration", acceleration, "--shape", 444, 448, "--seed", 0, "--out", out
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    m = np.load(out)
    assert m.shape == (444, 448)
    assert abs(m.size / m.sum() - acceleration) / acceleration < 0.01
    assert info["achieved_acceleration"] == pytest.approx(m.size / m.sum(), abs=1e-3)
    assert len(info["mask_sha256"]) == 64


def test_mask_cli_png_and_no_overwrite(tmp_path):
    from skimage import io

    out = tmp_path / "m.png"
    assert run("mask", "-R", 4, "--kind", "random", "--shape", 32, 40, "--out", out).exit_code == 0
    img = io.imread(out)
    assert img.shape == (32, 40) and set(np.unique(img)) == {0, 255}
    before = out.read_bytes()
    res = run("mask", "-R", 8, "--shape", 32, 40, "--out", out)
    assert res.exit_code == 2 and "exists" in res.output and out.read_bytes() == before


@pytest.mark.parametrize(
    "args, match",
    [
        (["-R", "0.5", "--shape", "32", "32"], "acceleration must be"),
        (["-R", "4", "--shape", "32", "32", "--kind", "spiral"], "Invalid value for '--kind'"),
        (["-R", "100", "--shape", "32", "32"], "too high"),
    ],
)
def test_mask_cli_bad_input(tmp_path, args, match):
    res = run("mask", *args, "--out", tmp_path / "m.npy")
    assert res.exit_code == 2 and match in res.output
    assert not (tmp_path / "m.npy").exists()


def test_data_prepare_cli(tmp_path):
    np.save(tmp_path / "v.npy", np.random.default_rng(0).random((2, 16, 16)).astype(np.float32))
    res = run("data", "prepare", tmp_path / "v.npy", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert "wrote 1 volume(s)" in res.output and (tmp_path / "out" / "manifest.json").exists()
    res = run("data", "prepare", tmp_path / "missing", tmp_path / "out2")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "does not exist" in res.output


def test_console_script_and_import_without_click():
    out = subprocess.run([sys.executable, "-m", "kerasrecon_cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "fit" in out.stdout and "mask" in out.stdout
    code = (
        "import sys; sys.modules['click'] = None; import kerasrecon.kspace, kerasrecon.masks, "
        "kerasrecon.data.pipeline, kerasrecon.config; print('ok')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "ok", res.stderr


@pytest.mark.slow
def test_center_fraction_flows_from_fit_to_results(tmp_path):
    """--center-fraction: mask CLI, fit (config.json), evaluate (every result row records it)."""
    import csv

    res = run(
        "mask", "--kind", "random", "-R", 8, "--shape", 16, 368, "--center-fraction", 0.04, "--out", tmp_path / "m.npy"
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["center_fraction"] == 0.04
    tiny = ["--batch-size", "2", "--patch-size", "32", "--blocks", "1", "--filters", "8", "--loss", "mse"]
    res = run(
        "fit",
        "--steps",
        1,
        "--checkpoint-every",
        1,
        "--mask",
        "random",
        "--center-fraction",
        0.12,
        "--out",
        tmp_path / "run",
        *tiny,
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["mask"]["center_fraction"] == 0.12
    res = run("evaluate", "--model", tmp_path / "run", "--out", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "ev" / "slices.csv")))
    assert {r["center_fraction"] for r in rows if r["method"] != "zero_filled"} == {"0.12"}
    res = run("fit", "--steps", 1, "--center-fraction", 1.5, "--out", tmp_path / "bad", *tiny)
    assert res.exit_code == 2 and "--center-fraction" in res.output and not (tmp_path / "bad").exists()
