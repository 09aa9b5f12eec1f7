"""Hostile files, generated: every reader answers with a result or one ``KerasReconError`` line.

Hypothesis builds the files — JSON documents of random structure for ``manifest.json``, a run's
``config.json``, a checkpoint's ``state.json`` and export metadata; HDF5 trees whose ``kspace``,
``image``, ``mask``, ``reconstruction`` entries are groups, strings, scalars or arrays of random dtype
and rank; ``.npy`` files of random dtype, shape and extreme values — and feeds them to the readers,
to ``data prepare`` and to the Python API (``Reconstructor``, ``baselines.solve``,
``coils.estimate_maps``). The property: either success with finite output, or a ``KerasReconError``
(the CLI's one line, exit 2) — never another exception, never NaN — and nothing outside the output
changes.
"""

import json
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerasrecon.config import TrainConfig
from kerasrecon.data.volume import FORMAT, Manifest, load_prepared
from kerasrecon.errors import KerasReconError
from kerasrecon.schema import from_dict, parse_json
from kerasrecon.training.checkpoint import CheckpointState
from tests.helpers.hostile_files import DTYPES, array_of, h5_entries, write_h5
from tests.test_bad_input import run, snapshot

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False),
    st.text(string.printable, max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(string.ascii_lowercase + "_", max_size=12), inner, max_size=4),
    ),
    max_leaves=12,
)


def _mutations(document: dict):
    """A valid document with one key's value replaced, one key dropped, or one unknown key added."""
    keys = sorted(document)
    return st.one_of(
        st.builds(lambda k, v: {**document, k: v}, st.sampled_from(keys), json_values),
        st.builds(lambda k: {kk: vv for kk, vv in document.items() if kk != k}, st.sampled_from(keys)),
        st.builds(
            lambda k, v: {**document, k: v}, st.text(string.ascii_lowercase, min_size=1, max_size=6), json_values
        ),
    )


def _nested_mutation(document: dict):
    """Like :func:`_mutations` one level down (``model.blocks = 1.5``)."""
    subs = sorted(k for k, v in document.items() if isinstance(v, dict))
    return st.sampled_from(subs).flatmap(lambda k: _mutations(document[k]).map(lambda sub: {**document, k: sub}))


VALID_CONFIG = json.loads(TrainConfig().to_json())
SCHEMAS = {
    "config": (TrainConfig, VALID_CONFIG, "forbid"),
    "manifest": (Manifest, {"format": FORMAT, "version": 1, "volumes": [{"file": "a.h5", "kind": "x"}]}, "ignore"),
    "state": (CheckpointState, {"step": 3, "sha256": {"generator.weights.h5": "ab"}}, "forbid"),
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@FAST
@given(data=st.data())
def test_json_documents_are_accepted_or_refused_in_one_line(name, data):
    cls, valid, extra = SCHEMAS[name]
    doc = data.draw(
        st.one_of(json_values, _mutations(valid), _nested_mutation(valid) if name == "config" else _mutations(valid))
    )
    raw = json.dumps(doc).encode()
    try:
        obj = from_dict(cls, parse_json(raw, f"{name}.json"), f"{name}.json", extra=extra)
    except KerasReconError as exc:
        assert str(exc).startswith(f"{name}.json: ") and "\n" not in str(exc)
        return
    assert isinstance(obj, cls)
    if cls is TrainConfig:  # what was accepted round-trips and passes the range checks
        assert TrainConfig.from_json(obj.to_json()) == obj


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe\x00",
        b"[",
        b"[]",
        b"null",
        b'["a.h5"]',
        b'{"format": 5}',
        b'{"format": "kerasrecon-dataset", "volumes": [{"file": 5}]}',
        b'{"format": "kerasrecon-dataset", "volumes": [{}]}',
        b"[" * 100_000,
    ],
)
def test_named_manifest_cases(raw, tmp_path):
    (tmp_path / "manifest.json").write_bytes(raw)
    with pytest.raises(KerasReconError, match="manifest.json"):
        load_prepared(str(tmp_path))


def test_named_config_cases(tmp_path):
    from kerasrecon.training.checkpoint import read_config

    for text in ("[]", "null", json.dumps({**VALID_CONFIG, "model": {**VALID_CONFIG["model"], "blocks": 1.5}})):
        (tmp_path / "config.json").write_text(text)
        with pytest.raises(KerasReconError, match="config.json"):
            read_config(tmp_path)


# ------------------------------------------------------------------------- HDF5 and .npy files
def _result_is_finite(value):
    arrays = (
        [value]
        if isinstance(value, np.ndarray)
        else [getattr(value, a) for a in ("kspace", "coil_kspace", "maps") if getattr(value, a, None) is not None]
    )
    assert all(np.all(np.isfinite(a)) for a in arrays)


@FAST
@given(spec=h5_entries())
def test_hdf5_trees_through_every_reader(spec, tmp_path_factory):
    from kerasrecon.data.fastmri import FastMRIFile
    from kerasrecon.data.images import read_image_stack
    from kerasrecon.data.volume import read_prepared_volume

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("h5") / "v.h5"
    write_h5(path, *spec, rng)
    readers = [
        lambda: read_prepared_volume(path).loaded(),  # opening reads headers; loaded() reads the data
        lambda: read_image_stack(path),
        lambda: read_image_stack(path, dataset="mask"),
        lambda: _read_fastmri(FastMRIFile, path),
    ]
    for read in readers:
        try:
            result = read()
        except KerasReconError as exc:
            assert "\n" not in str(exc)
            continue
        if result is not None:
            _result_is_finite(result)


def _read_fastmri(cls, path):
    with cls(path, crop=(2, 2)) as f:
        f.metadata()
        return f.raw_kspace(0)


@FAST
@given(spec=h5_entries())
def test_hdf5_trees_through_data_prepare_and_score(spec, tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    rng = np.random.default_rng(0)
    (root / "src").mkdir()
    write_h5(root / "src" / "v.h5", *spec, rng)
    (root / "target").mkdir()
    write_h5(root / "target" / "v.h5", *spec, rng)
    before = snapshot(root)
    res = run("data", "prepare", root / "src" / "v.h5", root / "out")
    _one_line_or_success(res)
    res = run("score", "--predictions", root / "src", "--targets", root / "target")
    _one_line_or_success(res)
    assert {k: v for k, v in snapshot(root).items() if "/out/" not in k} == before


def _one_line_or_success(res):
    assert res.exit_code in (0, 2), (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    if res.exit_code == 2:
        assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1, res.stderr


@FAST
@given(
    dtype=st.sampled_from(DTYPES + ["object", "<U3"]),
    shape=st.lists(st.integers(0, 12), max_size=4),
    fill=st.sampled_from([0.0, 1.0, 1e-45, 1e300, -1e300, np.inf, np.nan, "random"]),
    header_only=st.booleans(),
)
def test_npy_files_through_data_prepare(dtype, shape, fill, header_only, tmp_path_factory):
    root = tmp_path_factory.mktemp("npy")
    path = root / "v.npy"
    rng = np.random.default_rng(0)
    if header_only:  # the header promises more than the file holds (up to terabytes)
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": tuple(s * 10_000 + 1 for s in shape)}
            )
    elif dtype in ("object", "<U3"):
        np.save(path, np.full(shape, "abc", dtype), allow_pickle=True)
    else:
        np.save(path, array_of("float64" if dtype == "S4" else dtype, tuple(shape), fill, rng))
    res = run("data", "prepare", path, root / "out")
    _one_line_or_success(res)
    if res.exit_code == 0:
        vol = load_prepared(str(root / "out"))[0]
        assert np.all(np.isfinite(vol.kspace)) and np.any(vol.kspace)


# ------------------------------------------------------------------------- the Python API
arrays = st.builds(
    lambda dtype, shape, fill, seed: array_of(dtype, tuple(shape), fill, np.random.default_rng(seed)),
    st.sampled_from(["complex64", "complex128", "float32", "int16"]),
    st.lists(st.integers(0, 6), max_size=5),
    st.sampled_from([0.0, 1.0, 1e300, np.nan, "random"]),
    st.integers(0, 3),
)


def _api_result(fn):
    try:
        out = fn()
    except KerasReconError as exc:
        assert "\n" not in str(exc)
        return
    assert np.all(np.isfinite(out)), "a silent NaN/Inf"


@FAST
@given(kspace=arrays, mask=arrays, maps=st.one_of(st.none(), arrays))
def test_reconstructor_validates_its_inputs(kspace, mask, maps):
    from kerasrecon import Reconstructor

    rec = Reconstructor(
        lambda k, m: np.abs(np.fft.ifft2(k * m)),
        TrainConfig(),
        0,
        "fake",
        lambda k, m, s: np.abs(np.sum(np.conj(s) * np.fft.ifft2(k * m[:, None]), axis=1)),
    )
    _api_result(lambda: rec(kspace, mask, maps=maps))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(kspace=arrays, mask=arrays, lam=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.01)))
def test_baselines_solve_validates_its_inputs(kspace, mask, lam):
    from kerasrecon.baselines import solve

    _api_result(lambda: solve("tv", kspace, mask, lam, iters=2))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(kspace=arrays, acs=st.integers(-2, 8), method=st.sampled_from(["acs", "espirit"]))
def test_estimate_maps_validates_its_inputs(kspace, acs, method):
    from kerasrecon.coils import estimate_maps

    _api_result(lambda: estimate_maps(kspace, method, acs))
