"""Property-based tests: the exported SavedModel's input contract, and k-space/mask invariants.

For the SavedModel, hypothesis draws batches of random inputs (ranks, shapes, dtypes, NaN/Inf,
non-binary masks, overflowing magnitudes); one bare-TensorFlow subprocess calls the export on all of
them, so a crash fails the test instead of the test run. Each outcome is compared with an
independent NumPy statement of the contract (``expected_failure``): a valid input must give a finite
image of shape [B, H, W]; an invalid one an ``InvalidArgumentError`` naming the first violated input.
"""

import json
import re
import select
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerasrecon.kspace import fft2c_np, ifft2c_np
from kerasrecon.masks import make_mask
from tests.conftest import ref_fft2c

ROOT = Path(__file__).resolve().parents[1]
DIMS = st.sampled_from([0, 1, 2, 3, 5, 8])


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig
    from kerasrecon.export import export_run
    from kerasrecon.training.trainer import train

    root = tmp_path_factory.mktemp("contract")
    cfg = TrainConfig(
        data=DataConfig(patch_size=32, batch_size=2),
        model=ModelConfig(blocks=1, filters=8),
        loss=LossConfig(content="mse"),
        steps=1,
        checkpoint_every=1,
        precision="float32",
    )
    train(cfg, root / "run")
    return export_run(root / "run", root / "export")


class Server:
    """One bare-TensorFlow process (``tests/helpers/serve_cases.py``) that serves the export to every
    example hypothesis draws: TensorFlow's import and the SavedModel's load are paid once. If the
    process dies (the crash this test looks for) the example fails with its exit status and stderr, and
    the next example starts a fresh process."""

    def __init__(self, export):
        self.export, self.proc = export, None

    def ask(self, cases, out):
        if self.proc is None or self.proc.poll() is not None:
            self.err = tempfile.TemporaryFile("w+")  # a file, not a pipe: TensorFlow's logs never block it
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "helpers" / "serve_cases.py"), str(self.export)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.err,
                text=True,
            )
        self.proc.stdin.write(json.dumps([str(cases), str(out)]) + "\n")
        self.proc.stdin.flush()
        answered = select.select([self.proc.stdout], [], [], 600)[0]
        if not answered or self.proc.stdout.readline().strip() != "done":
            self.close()
            self.err.seek(0)
            raise AssertionError(f"serving process died with {self.proc.returncode}: {self.err.read()[-1500:]}")

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server(export_dir):
    s = Server(export_dir)
    yield s
    s.close()
    if s.proc is not None:
        s.err.close()


@st.composite
def shapes(draw, ranks, base=None):
    rank = draw(ranks)
    if base is not None and rank == len(base) and draw(st.booleans()):
        return tuple(base)
    return tuple(draw(DIMS) for _ in range(rank))


@st.composite
def arrays(draw, shape, binary=False):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    a = (rng.integers(0, 2, shape) if binary else rng.standard_normal(shape)).astype(np.float32)
    if a.size and draw(st.integers(0, 5)) == 5:  # poison one value
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.5, 7.0]))
    return a


@st.composite
def kspace_cases(draw):
    ranks = st.sampled_from([3, 3, 3, 3, 0, 1, 2, 4])
    kr_shape = draw(shapes(ranks))
    ki_shape = kr_shape if draw(st.integers(0, 4)) < 4 else draw(shapes(ranks))
    expected_mask = kr_shape[1:] if draw(st.booleans()) else kr_shape
    mask_shape = expected_mask if draw(st.integers(0, 3)) < 3 else draw(shapes(st.sampled_from([1, 2, 3, 4])))
    case = {
        "signature": "serving_default",
        "kspace_real": draw(arrays(kr_shape)),
        "kspace_imag": draw(arrays(ki_shape)),
        "mask": draw(arrays(mask_shape, binary=True)),
    }
    if draw(st.integers(0, 9)) == 9:
        with np.errstate(over="ignore"):
            case["kspace_real"] = case["kspace_real"] * np.float32(3e38)  # finite or inf; overflows in the FFT
    if draw(st.integers(0, 14)) == 14:
        case["mask"] = case["mask"].astype(np.float64)  # wrong dtype: refused when binding
    return case


@st.composite
def zero_filled_cases(draw):
    shape = draw(shapes(st.sampled_from([4, 4, 4, 2, 3, 5])))
    if len(shape) == 4 and draw(st.booleans()):
        shape = shape[:3] + (2,)
    return {"signature": "from_zero_filled", "zero_filled": draw(arrays(shape))}


def expected_failure(case) -> str | None:
    """The input the contract says is violated first (message prefix), or None when valid."""
    if case["signature"] == "from_zero_filled":
        z = case["zero_filled"]
        if z.ndim != 4:
            return "zero_filled: expected rank 4"
        if z.shape[3] != 2:
            return "zero_filled: expected 2 channels"
        if z.shape[0] < 1 or min(z.shape[1:3]) < 2:
            return "zero_filled: expected B >= 1"
        return None if np.isfinite(z).all() else "zero_filled: expected finite"
    kr, ki, m = case["kspace_real"], case["kspace_imag"], case["mask"]
    if m.dtype != np.float32:
        return "dtype"
    if kr.ndim != 3:
        return "kspace_real: expected rank 3"
    if ki.ndim != 3:
        return "kspace_imag: expected rank 3"
    if ki.shape != kr.shape:
        return "kspace_imag: expected the shape of kspace_real"
    if kr.shape[0] < 1 or min(kr.shape[1:]) < 2:
        return "kspace_real: expected B >= 1"
    if m.ndim not in (2, 3):
        return "mask: expected [H, W] or [B, H, W]"
    if m.shape != kr.shape[3 - m.ndim :]:
        return "mask: expected shape"
    for name, a in (("kspace_real", kr), ("kspace_imag", ki), ("mask", m)):
        if not np.isfinite(a).all():
            return f"{name}: expected finite"
    if not np.isin(m, [0, 1]).all():
        return "mask: expected values 0 or 1"
    return None


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases=st.lists(st.one_of(kspace_cases(), zero_filled_cases()), min_size=40, max_size=40))
def test_savedmodel_contract_never_crashes(server, tmp_path, cases):
    flat = {}
    for i, case in enumerate(cases):
        for k, v in case.items():
            flat[f"{i}/{k}"] = np.asarray(v)
    np.savez(tmp_path / "cases.npz", **flat)
    server.ask(tmp_path / "cases.npz", tmp_path / "out.json")
    records = json.loads((tmp_path / "out.json").read_text())
    for case, rec in zip(cases, records):
        expected = expected_failure(case)
        shapes_ = {k: np.asarray(v).shape for k, v in case.items() if k != "signature"}
        if expected is None:
            overflow = case["signature"] == "serving_default" and np.abs(case["kspace_real"]).max() > 1e30
            if overflow and rec["status"] != "ok":
                assert rec["message"].startswith("image: the reconstruction is not finite"), (shapes_, rec)
                continue
            assert rec["status"] == "ok", (shapes_, rec)
            b, h, w = (case.get("kspace_real", case.get("zero_filled"))).shape[:3]
            assert rec["shape"] == [b, h, w] and rec["finite"], (shapes_, rec)
        elif expected == "dtype":
            assert rec["status"] in ("TypeError", "ValueError", "InvalidArgumentError"), (shapes_, rec)
        else:
            assert rec["status"] == "InvalidArgumentError", (shapes_, rec)
            assert rec["message"].startswith(expected), (shapes_, expected, rec["message"])


# ----------------------------------------------------------------------- k-space and mask invariants
@settings(max_examples=25, deadline=None)
@given(h=st.integers(2, 24), w=st.integers(2, 24), seed=st.integers(0, 2**16))
def test_fft2c_matches_numpy_reference_and_is_unitary(h, w, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, h, w)) + 1j * rng.standard_normal((2, h, w))).astype(np.complex64)
    k = fft2c_np(x)
    np.testing.assert_allclose(k, ref_fft2c(x), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(k), np.linalg.norm(x), rtol=1e-4)  # Parseval
    np.testing.assert_allclose(ifft2c_np(k), x, atol=1e-4)


@settings(max_examples=15, deadline=None)
@given(
    kind=st.sampled_from(["poisson", "random", "equispaced"]),
    r=st.sampled_from([2.0, 4.0, 6.0, 8.0]),
    h=st.integers(24, 64),
    w=st.integers(24, 64),
    seed=st.integers(0, 1000),
)
def test_masks_binary_seeded_and_at_requested_rate(kind, r, h, w, seed):
    m = make_mask(kind, r, (h, w), seed)
    assert m.array.shape == (h, w) and m.array.dtype == np.float32
    assert np.isin(m.array, [0, 1]).all()
    np.testing.assert_array_equal(m.array, make_mask(kind, r, (h, w), seed).array)
    samples = m.array.sum()
    if kind == "poisson":
        assert abs(samples - round(h * w / r)) <= 1
    else:  # whole columns; the centre may force a few more than W / R
        cols = m.array.any(axis=0).sum()
        assert m.array.all(axis=0).sum() == cols and cols >= w / r - 1


def test_multicoil_signature_contract(export_dir):
    """The multicoil signature checks its inputs like serving_default does: one-line errors naming the
    input, a valid [B, C, H, W] call returns [B, H, W]."""
    from kerasrecon.errors import DataError
    from kerasrecon.export import load_export
    from kerasrecon.reconstruct import run_serving

    loaded, _ = load_export(export_dir)
    serve = loaded.signatures["multicoil"]
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((2, 3, 12, 10)) + 1j * rng.standard_normal((2, 3, 12, 10))).astype(np.complex64)
    mask = make_mask("random", 2, (12, 10), 0).array
    assert run_serving(serve, k, mask, name="mc").shape == (2, 12, 10)
    nan = k.copy()
    nan[1, 2, 3, 4] = np.nan
    half = mask.copy()
    half[0, 0] = 0.5
    for kspace, m, needle in [
        (k[:, 0], mask, "kspace_real: expected rank 4 [B, C, H, W]"),
        (k, mask[:, :9], "mask: expected shape [H, W] or [B, H, W]"),
        (nan, mask, "kspace_real: expected finite values"),
        (k, half, "mask: expected values 0 or 1"),
    ]:
        with pytest.raises(DataError, match=re.escape(needle)):
            run_serving(serve, kspace, m, name="mc")
