"""The output policy (``kerasrecon.io.check_output``) and the data-loss cases it closes.

Each command case asserts exit 2, one ``kerasrecon: error:`` line naming the argument, and that no
file outside the command's output changed (SHA-256 of every file before and after). The policy itself
is checked on hand-built trees: links, overlaps in both directions (also hidden behind ``..`` and a
linked parent), ``--force`` replacing only a previous result of the same command.
"""

import errno
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from kerasrecon.config import TrainConfig
from kerasrecon.data.volume import FORMAT, load_prepared
from kerasrecon.errors import DataError, KerasReconError, OutputError
from kerasrecon.io import RunLock, atomic_dir, atomic_file, check_distinct, check_output
from tests.test_bad_input import assert_one_line_error, run, snapshot

KERASRECON = [sys.executable, "-m", "kerasrecon_cli.entry"]


def fake_run(path):
    """A directory that looks like a run to every check made before a checkpoint is loaded."""
    (path / "checkpoints" / "ckpt-00000001").mkdir(parents=True)
    (path / "config.json").write_text(TrainConfig().to_json())
    (path / "checkpoints" / "ckpt-00000001" / "generator.weights.h5").write_bytes(b"weights")
    return path


# ------------------------------------------------------------------------- the policy itself
def test_output_may_not_overlap_an_input(tmp_path):
    run_dir = fake_run(tmp_path / "proj" / "run")
    proj = tmp_path / "proj"
    cases = [
        (proj, "contains"),
        (run_dir, "is"),
        (run_dir / "export", "lies inside"),
        (run_dir / ".." / "run" / "sub", "lies inside"),
    ]
    for out, relation in cases:
        with pytest.raises(OutputError, match=f"--out .*: {relation} RUN_DIR"):
            check_output(out, "--out", inputs=[("RUN_DIR", run_dir)], kind="dir", force=True)
    # a linked parent folder cannot hide the overlap
    (tmp_path / "alias").symlink_to(proj, target_is_directory=True)
    with pytest.raises(OutputError, match="lies inside RUN_DIR"):
        check_output(tmp_path / "alias" / "run" / "export", "--out", inputs=[("RUN_DIR", run_dir)], kind="dir")
    assert (
        check_output(tmp_path / "elsewhere", "--out", inputs=[("RUN_DIR", run_dir)], kind="dir")
        == tmp_path / "elsewhere"
    )


def test_links_and_existing_outputs(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "link.npy").symlink_to(victim)
    (tmp_path / "dangling.npy").symlink_to(tmp_path / "nowhere.npy")
    for name in ("link.npy", "dangling.npy"):
        with pytest.raises(OutputError, match="symbolic link"):
            check_output(tmp_path / name, "--out", force=True)
    with pytest.raises(OutputError, match="exists; pass force=True"):
        check_output(victim, "--out")
    assert check_output(victim, "--out", force=True) == victim
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        check_output(tmp_path / "f" / "out.npy", "--out")


def test_force_replaces_only_a_previous_result(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty; pass force=True"):
        check_output(d, "OUT", kind="dir", replaceable=lambda p: False)
    with pytest.raises(OutputError, match="is not a prepared dataset"):
        check_output(d, "OUT", kind="dir", force=True, replaceable=lambda p: False, what="a prepared dataset")
    assert check_output(d, "OUT", kind="dir", force=True, replaceable=lambda p: True) == d
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty", "OUT", kind="dir") == tmp_path / "empty"


def test_two_outputs_with_one_name_are_refused(tmp_path):
    with pytest.raises(OutputError, match="both .*a.h5 and .*a.npy"):
        check_distinct(
            [(tmp_path / "a.h5", tmp_path / "o" / "a.h5"), (tmp_path / "a.npy", tmp_path / "o" / "a.h5")], "--output"
        )
    check_distinct(
        [(tmp_path / "a.h5", tmp_path / "o" / "a.h5"), (tmp_path / "b.h5", tmp_path / "o" / "b.h5")], "--output"
    )


def test_atomic_writes_name_the_output_and_leave_nothing(tmp_path):
    final = tmp_path / "m.npy"
    with pytest.raises(OutputError, match=r"--out .*m\.npy: cannot write \(No space left on device\)"):
        with atomic_file(final, "mask", option="--out"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert not final.exists() and not list(tmp_path.iterdir())
    with pytest.raises(OutputError, match="cannot write"):
        with atomic_dir(tmp_path / "d", "export", option="--out"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert not list(tmp_path.iterdir())
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(OutputError, match="symbolic link"):
        with atomic_file(tmp_path / "link"):
            pass
    assert not (tmp_path / "target").exists()


def test_run_lock_never_follows_a_link(tmp_path):
    run_dir = fake_run(tmp_path / "run")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run_dir / ".lock").symlink_to(victim)
    for exclusive in (True, False):
        with pytest.raises(KerasReconError, match=".lock is a symbolic link"):
            RunLock(run_dir, exclusive=exclusive).acquire()
    assert victim.read_text() == "precious"


def test_manifest_may_only_name_files_inside_the_dataset(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with h5py.File(elsewhere / "a.h5", "w") as f:
        f["kspace"] = np.ones((1, 8, 8), np.complex64)
    data = tmp_path / "data"
    data.mkdir()
    (data / "link.h5").symlink_to(elsewhere / "a.h5")
    for name in ("../elsewhere/a.h5", str(elsewhere / "a.h5"), "link.h5", "sub/a.h5", "..", ""):
        (data / "manifest.json").write_text(json.dumps({"format": FORMAT, "volumes": [{"file": name}]}))
        with pytest.raises(DataError, match=r"volumes\[0\]\.file .* must name a file inside"):
            load_prepared(str(data))


# ------------------------------------------------------------------------- the commands
def test_export_force_never_deletes_the_run_it_reads(tmp_path):
    run_dir = fake_run(tmp_path / "proj" / "run")
    before = snapshot(tmp_path)
    res = run("export", run_dir, "--out", tmp_path / "proj", "--force")
    assert_one_line_error(res, "contains RUN_DIR")
    assert snapshot(tmp_path) == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not an export")
    res = run("export", run_dir, "--out", tmp_path / "mine", "--force")
    assert_one_line_error(res, "is not a kerasrecon export")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "not an export"


def test_mask_out_through_a_dangling_link_is_refused(tmp_path):
    (tmp_path / "m.npy").symlink_to(tmp_path / "target.npy")
    res = run("mask", "-R", 4, "--shape", 16, 16, "--out", tmp_path / "m.npy", "--force")
    assert_one_line_error(res, "symbolic link")
    assert not (tmp_path / "target.npy").exists()


def test_mask_on_full_disk_names_the_file_and_leaves_nothing(tmp_path):
    from tests.test_bad_input import _limited

    out = tmp_path / "m.npy"
    res = subprocess.run(
        KERASRECON + ["mask", "-R", "4", "--shape", "256", "256", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited(4096),
    )
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"kerasrecon: error: --out {out}: cannot write"), res.stderr
    assert not list(tmp_path.iterdir())


def test_reconstruct_refuses_two_inputs_with_one_output_name(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    indir = tmp_path / "in"
    indir.mkdir()
    with h5py.File(indir / "a.h5", "w") as f:
        f["kspace"] = np.ones((1, 8, 8), np.complex64)
    np.save(indir / "a.npy", np.ones((1, 8, 8), np.complex64))
    before = snapshot(tmp_path)
    res = run("reconstruct", "--model", model, "--input", indir, "--output", tmp_path / "out")
    assert_one_line_error(res, "would be written there")
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()
    res = run("reconstruct", "--model", model, "--input", indir, "--output", indir / "out")
    assert_one_line_error(res, "lies inside --input")


def _score_files(root):
    for kind, key, value in (("pred", "reconstruction", 1.0), ("target", "reconstruction_esc", 1.5)):
        (root / kind).mkdir(exist_ok=True)
        with h5py.File(root / kind / "v.h5", "w") as f:
            f[key] = np.full((1, 16, 16), value, np.float32) + np.eye(16, dtype=np.float32)


def test_score_out_needs_force_to_replace(tmp_path):
    _score_files(tmp_path)
    (tmp_path / "s.json").write_text("previous scores")
    res = run(
        "score", "--predictions", tmp_path / "pred", "--targets", tmp_path / "target", "--out", tmp_path / "s.json"
    )
    assert_one_line_error(res, "--out")
    assert (tmp_path / "s.json").read_text() == "previous scores"
    res = run(
        "score",
        "--predictions",
        tmp_path / "pred",
        "--targets",
        tmp_path / "target",
        "--out",
        tmp_path / "s.json",
        "--force",
    )
    assert res.exit_code == 0, res.output
    assert set(json.loads((tmp_path / "s.json").read_text())["per_volume"]) == {"v"}
    res = run(
        "score",
        "--predictions",
        tmp_path / "pred",
        "--targets",
        tmp_path / "target",
        "--out",
        tmp_path / "pred" / "s.json",
    )
    assert_one_line_error(res, "lies inside --predictions")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["-R", "inf"], "--acceleration"),
        (["--mask-seed", "-1"], "--mask-seed"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**40)], "--seed"),
        (["--lr", "nan"], "--lr"),
    ],
)
def test_fit_refuses_bad_values_before_creating_out(args, needle, tmp_path):
    res = run("fit", "--out", tmp_path / "r2", "--steps", 1, *args)
    assert_one_line_error(res, needle)
    assert not (tmp_path / "r2").exists()


def test_prepare_force_replaces_only_a_prepared_dataset(tmp_path, rng):
    np.save(tmp_path / "a.npy", rng.random((2, 16, 16)).astype(np.float32))
    out = tmp_path / "ds"
    assert run("data", "prepare", tmp_path / "a.npy", out).exit_code == 0
    assert_one_line_error(run("data", "prepare", tmp_path / "a.npy", out), "pass --force")
    res = run("data", "prepare", tmp_path / "a.npy", out, "--force")
    assert res.exit_code == 0, res.output
    assert (out / "a.h5").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    assert_one_line_error(run("data", "prepare", tmp_path / "a.npy", mine, "--force"), "is not a prepared dataset")
    assert (mine / "notes.txt").read_text() == "x"
    assert_one_line_error(run("data", "prepare", tmp_path, tmp_path / "inside"), "lies inside SRC")
