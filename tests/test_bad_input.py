"""Bad input, table-driven: every CLI command answers with exit 2, exactly one ``kerasrecon: error:``
line naming the argument, no traceback, and no file changed under the output or run directories
(SHA-256 of every file before and after; the run directory's ``.lock`` file is the one exception).

Cases that can crash a process or need process-level control (disk full, SIGTERM, two concurrent
``fit``) run the CLI in a subprocess; the rest run it in-process with click's test runner.
"""

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from kerasrecon.io import LOCK_FILE, RunLock
from kerasrecon.training import checkpoint as ckpt
from kerasrecon_cli.main import cli
from tests.helpers.hostile_files import h5_entries, write_h5
from tests.test_data import write_dicom

TINY = ["--batch-size", "2", "--patch-size", "32", "--blocks", "1", "--filters", "8", "--loss", "mse"]
KERASRECON = [sys.executable, "-m", "kerasrecon_cli.main"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(*roots) -> dict:
    """{path: sha256} of every file under ``roots`` (``.lock`` excluded: readers create it)."""
    out = {}
    for root in roots:
        root = Path(root)
        if root.is_file():
            out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
        elif root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file() and p.name != LOCK_FILE:
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_one_line_error(res, needle: str, status: int = 2):
    """A click result: exit ``status``, exactly one ``kerasrecon: error:`` line containing ``needle``."""
    assert res.exit_code == status, (res.exit_code, res.output, res.exception)
    errors = [line for line in res.stderr.splitlines() if line.startswith("kerasrecon: error:")]
    assert len(errors) == 1, res.stderr
    assert needle in errors[0], errors[0]
    assert "Traceback" not in res.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step run (checkpoints at 1 and 2) and its export."""
    root = tmp_path_factory.mktemp("bad_input")
    res = run("fit", "--steps", 2, "--checkpoint-every", 1, "--out", root / "run", *TINY)
    assert res.exit_code == 0, res.output
    res = run("export", root / "run", "--out", root / "export")
    assert res.exit_code == 0, res.output
    return root


@pytest.fixture(scope="module")
def foreign_savedmodel(tmp_path_factory):
    """A SavedModel that is not a kerasrecon export (other signature)."""
    import tensorflow as tf

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def f(self, x):
            return {"y": x * 2}

    path = tmp_path_factory.mktemp("foreign") / "sm"
    m = M()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.f})
    return path


# ------------------------------------------------------------------------- data prepare
def _h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return path


def _dicom_series(folder, shapes, rng):
    folder.mkdir()
    for i, shape in enumerate(shapes):
        write_dicom(folder / f"{i}.dcm", rng.integers(0, 100, shape), i + 1)
    return folder


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[: len(data) + keep])


def make_prepare_case(kind, tmp_path, rng):
    """Returns (SRC, extra args, text the error line must contain)."""
    c64 = (rng.standard_normal((32, 32)) + 1j * rng.standard_normal((32, 32))).astype(np.complex64)
    if kind == "complex_2d_kspace":
        return _h5(tmp_path / "k.h5", kspace=c64), [], "'kspace' must be complex [slices, H, W]"
    if kind == "multicoil_kspace":
        # 5-D: neither single-coil [S, H, W] nor multi-coil [S, C, H, W] (which data prepare SENSE-combines)
        return _h5(tmp_path / "mc.h5", kspace=np.stack([np.stack([np.stack([c64] * 4)] * 2)])), [], "(multi-coil)"
    if kind == "string_npy":
        np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
        return tmp_path / "s.npy", [], "expected numeric images"
    if kind == "empty_npy":
        (tmp_path / "e.npy").write_bytes(b"")
        return tmp_path / "e.npy", [], "e.npy: cannot read .npy"
    if kind in ("crop_negative", "crop_zero"):
        np.save(tmp_path / "ok.npy", rng.random((2, 32, 32)).astype(np.float32))
        crop = ["-5", "10"] if kind == "crop_negative" else ["0", "0"]
        return tmp_path / "ok.npy", ["--crop", *crop], "--crop"
    if kind == "crop_too_large":
        np.save(tmp_path / "ok.npy", rng.random((2, 32, 32)).astype(np.float32))
        return tmp_path / "ok.npy", ["--crop", "64", "64"], "crop (64, 64) is larger"
    if kind == "dicom_random_bytes":
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "x.dcm").write_bytes(rng.bytes(600))
        return tmp_path / "d", [], "x.dcm: not a readable DICOM"
    if kind == "dicom_no_pixeldata":
        folder = _dicom_series(tmp_path / "d", [(16, 16)], rng)
        import pydicom

        ds = pydicom.dcmread(str(folder / "0.dcm"))
        del ds.PixelData
        ds.save_as(str(folder / "0.dcm"))
        return folder, [], "no PixelData"
    if kind == "dicom_truncated_pixels":
        folder = _dicom_series(tmp_path / "d", [(16, 16)], rng)
        _truncate(folder / "0.dcm", -100)
        return folder, [], "0.dcm"
    if kind == "dicom_truncated_header":
        folder = _dicom_series(tmp_path / "d", [(16, 16)], rng)
        _truncate(folder / "0.dcm", 200)
        return folder, [], "0.dcm"
    if kind == "dicom_mixed_sizes":
        return _dicom_series(tmp_path / "d", [(16, 16), (16, 12)], rng), [], "must have one size"
    if kind == "png_mixed_sizes":
        from skimage import io

        (tmp_path / "p").mkdir()
        io.imsave(tmp_path / "p" / "a.png", np.zeros((16, 16), np.uint8), check_contrast=False)
        io.imsave(tmp_path / "p" / "b.png", np.zeros((16, 20), np.uint8), check_contrast=False)
        return tmp_path / "p", [], "must have one size"
    if kind == "nan_images":
        a = rng.random((2, 16, 16)).astype(np.float32)
        a[0, 0, 0] = np.nan
        np.save(tmp_path / "n.npy", a)
        return tmp_path / "n.npy", [], "NaN/Inf"
    raise AssertionError(kind)


PREPARE_CASES = [
    "complex_2d_kspace",
    "multicoil_kspace",
    "string_npy",
    "empty_npy",
    "crop_negative",
    "crop_zero",
    "crop_too_large",
    "dicom_random_bytes",
    "dicom_no_pixeldata",
    "dicom_truncated_pixels",
    "dicom_truncated_header",
    "dicom_mixed_sizes",
    "png_mixed_sizes",
    "nan_images",
]


@pytest.mark.parametrize("kind", PREPARE_CASES)
def test_data_prepare_bad_input(kind, tmp_path, rng):
    pytest.importorskip("pydicom")
    src, extra, needle = make_prepare_case(kind, tmp_path, rng)
    before = snapshot(tmp_path)
    res = run("data", "prepare", src, tmp_path / "out", *extra)
    assert_one_line_error(res, needle)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".prepare-*"))


# ------------------------------------------------------------------------- other commands
def test_mask_huge_shape_checked_up_front(tmp_path, monkeypatch):
    from kerasrecon import masks

    drawn = []  # the Poisson draw would allocate the 100000² grid: it must not start
    for name in ("_solve_radius", "_rsa"):
        monkeypatch.setattr(masks, name, lambda *a, **k: drawn.append(name) or 1 / 0)
    res = run("mask", "--acceleration", 4, "--shape", 100000, 100000, "--out", tmp_path / "m.npy")
    assert_one_line_error(res, "H, W <= 4096")
    assert not drawn and not list(tmp_path.iterdir())


def test_fit_architecture_change_refused_even_with_force(trained):
    run_dir = trained / "run"
    before = snapshot(run_dir)
    res = run(
        "fit", "--steps", 3, "--checkpoint-every", 1, "--out", run_dir, *TINY[:4], "--blocks", 3, *TINY[6:], "--force"
    )
    assert_one_line_error(res, "model.blocks: 1 -> 3")
    assert "--force only allows resumable changes" in res.stderr
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_fit_validates_before_creating_out(tmp_path):
    for args, needle in [
        (["--patch-size", "1000"], "--patch-size 1000"),
        (["--data", tmp_path / "nodata"], "--data"),
        (["--loss", "feature", "--vgg-weights", tmp_path / "no.h5"], "--vgg-weights"),
    ]:
        res = run("fit", "--steps", 1, "--out", tmp_path / "run", *TINY, *args)
        assert_one_line_error(res, needle)
        assert not (tmp_path / "run").exists()


def test_evaluate_bad_batch_size_and_foreign_model(trained, foreign_savedmodel, tmp_path):
    before = snapshot(trained)
    res = run("evaluate", "--model", trained / "run", "--batch-size", 0, "--out", tmp_path / "ev")
    assert_one_line_error(res, "--batch-size must be >= 1")
    res = run("evaluate", "--model", foreign_savedmodel, "--out", tmp_path / "ev")
    assert_one_line_error(res, "not a kerasrecon export")
    assert snapshot(trained) == before and not (tmp_path / "ev").exists()


def _kspace_file(path, kspace, mask=None):
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        if mask is not None:
            f.create_dataset("mask", data=mask)
    return path


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("zero_slices", "Received: shape (0, 32, 32) (an empty axis)"),
        ("nan_mask", "'mask' must hold only 0 and 1"),
        ("mask_half", "'mask' must hold only 0 and 1"),
        ("huge_kspace", "the reconstruction is not finite"),
        ("foreign_model", "not a kerasrecon export"),
        ("batch_size_zero", "--batch-size must be >= 1"),
        (
            "multicoil",
            "'kspace' must be complex [slices, H, W] or multi-coil [slices, coils, H, W]. "
            "Received: shape (2, 1, 4, 32, 32)",
        ),
    ],
)
def test_reconstruct_bad_input(kind, needle, trained, foreign_savedmodel, tmp_path):
    model = foreign_savedmodel if kind == "foreign_model" else trained / "export"
    k = np.ones((2, 32, 32), np.complex64)
    cols = np.ones(32, np.float32)
    extra = []
    if kind == "zero_slices":
        k = np.zeros((0, 32, 32), np.complex64)
    elif kind == "nan_mask":
        cols[3] = np.nan
    elif kind == "mask_half":
        cols[3] = 0.5
    elif kind == "huge_kspace":
        k = np.full((2, 32, 32), 3e38, np.complex64)
    elif kind == "batch_size_zero":
        extra = ["--batch-size", 0]
    elif kind == "multicoil":
        k = np.ones((2, 1, 4, 32, 32), np.complex64)  # rank 5: neither layout
    src = _kspace_file(tmp_path / "in.h5", k, cols)
    before = snapshot(tmp_path, trained / "export")
    res = run("reconstruct", "--model", model, "--input", src, "--output", tmp_path / "out.h5", *extra)
    assert_one_line_error(res, needle)
    assert snapshot(tmp_path, trained / "export") == before
    assert not (tmp_path / "out.h5").exists() and not list(tmp_path.glob(".reconstruct-*"))


def test_compare_refuses_duplicate_runs(trained, tmp_path):
    res = run(
        "compare", trained / "run", trained / "run", str(trained / "run") + "/", "--out", tmp_path / "c", "--no-figures"
    )
    assert_one_line_error(res, "is given twice")
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------- locks
def test_locked_run_refuses_second_writer_and_readers(trained, tmp_path):
    run_dir = trained / "run"
    before = snapshot(run_dir)
    with RunLock(run_dir, exclusive=True):
        res = run("fit", "--steps", 3, "--checkpoint-every", 1, "--out", run_dir, *TINY)
        assert_one_line_error(res, f"in use by another kerasrecon process (PID {os.getpid()})")
        res = run("export", run_dir, "--out", tmp_path / "e")
        assert_one_line_error(res, "is writing it")
        res = run("evaluate", "--model", run_dir, "--out", tmp_path / "ev")
        assert_one_line_error(res, "is writing it")
    assert snapshot(run_dir) == before and not (tmp_path / "e").exists()


@pytest.mark.slow
def test_two_fits_on_one_out_exactly_one_runs(tmp_path):
    out = tmp_path / "run"
    common = [
        "fit",
        "--steps",
        "12",
        "--checkpoint-every",
        "4",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--patch-size",
        "32",
        "--filters",
        "8",
        "--loss",
        "mse",
    ]
    procs = [
        subprocess.Popen(
            KERASRECON + common + ["--blocks", str(b)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for b in (1, 2)
    ]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser_err = next(r[2] for r in results if r[0] == 2)
    lines = [line for line in loser_err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kerasrecon: error:"), loser_err  # no TF start-up noise either
    assert "in use by another kerasrecon process" in lines[0] or "different architecture" in lines[0]
    winner_blocks = 1 if results[0][0] == 0 else 2
    assert json.loads((out / "config.json").read_text())["model"]["blocks"] == winner_blocks
    _, g, step = ckpt.load_generator(out)  # the checkpoints load into the config's architecture
    assert step == 12


# ------------------------------------------------------------------------- checkpoints
@pytest.mark.slow
def test_nan_guard_never_writes_poisoned_weights(tmp_path):
    out = tmp_path / "run"
    res = run("fit", "--steps", 3, "--checkpoint-every", 1, "--lr", 1e8, "--out", out, *TINY)
    assert_one_line_error(res, "non-finite")
    assert "last good checkpoint is step" in res.stderr
    for d in (out / "checkpoints").glob("ckpt-*"):
        for f in ("generator.weights.h5", "discriminator.weights.h5"):
            with h5py.File(d / f, "r") as h:
                h.visititems(
                    lambda name, obj: (
                        isinstance(obj, h5py.Dataset)
                        and obj.dtype.kind == "f"
                        and (np.testing.assert_array_equal(np.isfinite(obj[()]), True))
                    )
                )
        assert np.all([np.isfinite(v).all() for v in np.load(d / "optimizers.npz").values()])


@pytest.mark.parametrize("damage", ["truncate_generator", "truncate_optimizers", "zero_bytes", "delete_state"])
def test_damaged_newest_checkpoint_falls_back(trained, tmp_path, damage, caplog):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained / "run", run_dir)
    newest = run_dir / "checkpoints" / "ckpt-00000002"
    if damage == "truncate_generator":
        _truncate(newest / "generator.weights.h5", -1000)
    elif damage == "truncate_optimizers":
        _truncate(newest / "optimizers.npz", 1000)
    elif damage == "zero_bytes":  # same size, some bytes zeroed: only the checksum can tell
        data = bytearray((newest / "generator.weights.h5").read_bytes())
        data[-3000:-2000] = bytes(1000)
        (newest / "generator.weights.h5").write_bytes(bytes(data))
    elif damage == "delete_state":
        (newest / "state.json").unlink()
    (run_dir / "checkpoints" / "latest.json").write_text('{"foo": 1}')
    assert ckpt.latest_checkpoint(run_dir)[0] == 1
    res = run("export", run_dir, "--out", tmp_path / "export")
    assert res.exit_code == 0, res.output
    assert "skipped damaged checkpoint(s) (ckpt-00000002" in caplog.text
    assert json.loads((tmp_path / "export" / "assets" / "kerasrecon.json").read_text())["step"] == 1
    if damage == "truncate_generator":  # fit resumes from the intact one
        res = run("fit", "--steps", 3, "--checkpoint-every", 1, "--out", run_dir, *TINY)
        assert res.exit_code == 0, res.output
        assert "trained steps 1..3" in res.stdout


def test_all_checkpoints_damaged_is_one_line(trained, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained / "run", run_dir)
    for d in (run_dir / "checkpoints").glob("ckpt-*"):
        _truncate(d / "discriminator.weights.h5", 100)
    before = snapshot(run_dir)
    res = run("fit", "--steps", 3, "--checkpoint-every", 1, "--out", run_dir, *TINY)
    assert_one_line_error(res, "no intact checkpoint")
    res = run("export", run_dir, "--out", tmp_path / "e")
    assert_one_line_error(res, "no intact checkpoint")
    assert snapshot(run_dir) == before


def test_resume_removes_checkpoint_temporaries_of_a_killed_writer(trained, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained / "run", run_dir)
    root = run_dir / "checkpoints"
    leftovers = [root / ".ckpt-999999999-abc", root / "ckpt-00000009.tmp"]  # today's and older versions' names
    for d in leftovers:
        d.mkdir()
        (d / "generator.weights.h5").write_bytes(b"half")
    (run_dir / ".write-999999999-x.json").write_text("{")
    assert ckpt.latest_checkpoint(run_dir)[0] == 2  # a temporary is never taken for a checkpoint
    res = run("fit", "--steps", 3, "--checkpoint-every", 1, "--out", run_dir, *TINY)
    assert res.exit_code == 0, res.output
    assert not any(d.exists() for d in leftovers) and not (run_dir / ".write-999999999-x.json").exists()
    assert sorted(p.name for p in root.iterdir()) == ["ckpt-00000001", "ckpt-00000002", "ckpt-00000003", "latest.json"]


# ------------------------------------------------------------------------- leftovers, disk full, signals
def _limited(limit_bytes):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return preexec


@pytest.mark.slow
def test_prepare_on_full_disk_leaves_nothing(tmp_path, rng):
    np.save(tmp_path / "big.npy", rng.random((4, 256, 256)).astype(np.float32))
    res = subprocess.run(
        KERASRECON + ["data", "prepare", str(tmp_path / "big.npy"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limited(200_000),
    )
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kerasrecon: error: OUT"), res.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".prepare-*"))


@pytest.mark.slow
def test_fit_on_full_disk_leaves_no_tmp_checkpoint(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(
        KERASRECON + ["fit", "--steps", "1", "--checkpoint-every", "1", "--out", str(out), *TINY],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limited(2_000_000),
    )
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kerasrecon: error:"), res.stderr
    assert not list((out / "checkpoints").glob("ckpt-*"))


def test_stale_temporaries_removed_and_umask_respected(tmp_path, rng):
    np.save(tmp_path / "a.npy", rng.random((2, 16, 16)).astype(np.float32))
    stale = tmp_path / ".prepare-999999999-abc"  # no such process
    stale.mkdir()
    (stale / "junk.h5").write_bytes(b"x" * 100)
    live = tmp_path / f".prepare-{os.getpid()}-mine"  # a live process's temporary is kept
    live.mkdir()
    old = os.umask(0o022)
    try:
        res = run("data", "prepare", tmp_path / "a.npy", tmp_path / "out")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert not stale.exists() and live.exists()
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


@pytest.mark.slow
def test_sigterm_during_prepare_cleans_up(tmp_path, rng):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        np.save(src / f"v{i:02d}.npy", rng.random((8, 128, 128)).astype(np.float32))
    # The last volume takes seconds (FFT and gzip of 128 MB) on any machine, against the 50 ms between
    # polls: the signal arrives while it is being prepared, never after prepare has finished.
    np.save(src / "v99.npy", rng.random((64, 512, 512)).astype(np.float32))
    proc = subprocess.Popen(
        KERASRECON + ["data", "prepare", str(src), str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(tmp_path.glob(".prepare-*/*.h5"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err
    assert not list(tmp_path.glob(".prepare-*")) and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- process level: backends, signals, full disk
ENTRY = [sys.executable, "-m", "kerasrecon_cli.entry"]


@pytest.mark.parametrize("backend", ["torch", "bogus"])
def test_unsupported_keras_backend_is_one_line(backend, tmp_path):
    res = subprocess.run(
        ENTRY + ["fit", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"KERAS_BACKEND={backend}" in lines[0] and "tensorflow or jax" in lines[0], res.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args", [["fit", "--loss", "l1", "--out", "x"], ["evaluate", "--model", "/nonexistent", "--out", "x"]]
)
def test_usage_errors_come_before_the_tensorflow_import(args, tmp_path):
    """Click's checks (choices, paths) run before TensorFlow is imported: a typo costs no import."""
    code = (
        "import sys\nfrom kerasrecon_cli.main import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as exc:\n    assert exc.code == 2, exc.code\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Invalid value" in res.stderr and not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_the_tensorflow_import_is_one_line(sig, status, tmp_path):
    proc = subprocess.Popen(
        ENTRY + ["fit", "--out", str(tmp_path / "r")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1.0)  # importing NumPy, Keras and TensorFlow takes several seconds on these machines
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kerasrecon: error:"), err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_export_and_reconstruct_on_full_disk_are_one_line(trained, tmp_path):
    out = tmp_path / "export"
    res = subprocess.run(
        KERASRECON + ["export", str(trained / "run"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limited(20_000),
    )
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and f"--out {out}" in lines[0], res.stderr
    assert not out.exists() and not list(tmp_path.glob(".export-*"))
    src = _kspace_file(tmp_path / "in.h5", np.ones((4, 64, 64), np.complex64), np.ones(64, np.float32))
    res = subprocess.run(
        KERASRECON
        + [
            "reconstruct",
            "--model",
            str(trained / "export"),
            "--input",
            str(src),
            "--output",
            str(tmp_path / "out.h5"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limited(20_000),
    )
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "--output" in lines[0], res.stderr
    assert not (tmp_path / "out.h5").exists() and not list(tmp_path.glob(".reconstruct-*"))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=h5_entries())
def test_random_hdf5_files_through_reconstruct(spec, trained, tmp_path_factory):
    """Generated HDF5 trees (see tests/test_file_fuzz.py) into ``reconstruct``: a finite result or one line."""
    root = tmp_path_factory.mktemp("rec_fuzz")
    write_h5(root / "in.h5", *spec, np.random.default_rng(0))
    before = snapshot(root, trained / "export")
    res = run("reconstruct", "--model", trained / "export", "--input", root / "in.h5", "--output", root / "out.h5")
    assert res.exit_code in (0, 2) and "Traceback" not in res.output, (res.output, res.exception)
    if res.exit_code == 2:
        assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1, res.stderr
    else:
        with h5py.File(root / "out.h5", "r") as f:
            assert np.all(np.isfinite(f["reconstruction"][()]))
    assert {k: v for k, v in snapshot(root, trained / "export").items() if not k.endswith("out.h5")} == before
