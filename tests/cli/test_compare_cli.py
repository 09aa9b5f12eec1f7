import csv

import pytest
from click.testing import CliRunner

from kerasrecon_cli.main import cli

TINY = [
    "--batch-size",
    "2",
    "--patch-size",
    "32",
    "--blocks",
    "1",
    "--filters",
    "8",
    "--vgg-weights",
    "none",
    "--steps",
    "1",
    "--checkpoint-every",
    "1",
    "--val-fraction",
    "0.05",
]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.slow
def test_compare_train_space_separated_losses(tmp_path):
    res = run("compare", "--train", "--losses", "mse", "hybrid", "--no-figures", "--out", tmp_path / "cmp", *TINY)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "cmp" / "runs").iterdir()) == ["hybrid", "mse"]
    methods = [r["method"] for r in csv.DictReader(open(tmp_path / "cmp" / "table.csv"))]
    assert methods == ["zero_filled", "mse", "hybrid"]
    assert "ΔPSNR vs mse" in res.output
    # Re-running the same comparison without --force refuses and keeps the table.
    before = (tmp_path / "cmp" / "table.md").read_text()
    res = run("compare", str(tmp_path / "cmp" / "runs" / "mse"), "--no-figures", "--out", tmp_path / "cmp")
    assert res.exit_code == 2 and "--force" in res.output
    assert (tmp_path / "cmp" / "table.md").read_text() == before
    # Mask overrides apply to the existing runs.
    res = run("compare", str(tmp_path / "cmp" / "runs" / "mse"), "--no-figures", "-R", 8, "--out", tmp_path / "c8")
    assert res.exit_code == 0, res.output
    assert {r["acceleration"] for r in csv.DictReader(open(tmp_path / "c8" / "slices.csv"))} == {"8.0"}


def test_compare_bad_input(tmp_path):
    res = run("compare", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "RUN directories" in res.output
    res = run("compare", "--train", "--losses", "l1", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "unknown loss 'l1'" in res.output


@pytest.mark.slow
def test_compare_with_baselines_uses_tv_as_reference(tmp_path):
    res = run(
        "compare",
        "--train",
        "--losses",
        "mse",
        "--no-figures",
        "--out",
        tmp_path / "cmp",
        *TINY,
        "--baselines",
        "tv,l1wavelet",
        "--baseline-lambdas",
        "1e-3,1e-2",
        "--baseline-iters",
        "3",
    )
    assert res.exit_code == 0, res.output
    # the λ sweep reports each candidate as it finishes
    assert "baseline tv: λ 0.001 " in res.output and "(2/2 of the sweep" in res.output
    rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / "cmp" / "table.csv"))}
    assert list(rows) == ["zero_filled", "mse", "tv", "l1wavelet"]
    assert "psnr_diff_vs_tv" in rows["mse"] and float(rows["tv"]["sec_per_slice"]) > 0
    table = (tmp_path / "cmp" / "table.md").read_text()
    assert "ΔPSNR vs tv" in table and "tv: λ = 0.0" in table and "(swept on " in table
    assert "tolerance 1e-05, at most 3 iterations; iterations used per slice 3–3" in table  # the cap stopped it
