"""Prepared datasets are read slice by slice on demand (kerasrecon.data.store): opening reads headers
only, slices equal the written arrays, the cache and the open files are bounded, bad slices are one
line naming the file, and training elements are the same as from volumes held in memory."""

from __future__ import annotations

import json
import tracemalloc

import h5py
import numpy as np
import pytest

from kerasrecon.config import DataConfig, MaskConfig, TrainConfig
from kerasrecon.data import load_volumes, split_volumes, store
from kerasrecon.data.pipeline import numpy_element, sampling_plan
from kerasrecon.errors import DataError
from kerasrecon.masks import make_mask


def write_dataset(root, volumes, slices=3, h=24, w=20, coils=0, seed=0, chunked=True, bad=None):
    """A prepared dataset of random complex k-space; returns {name: (kspace, coil_kspace, maps)} as
    written. ``bad``: (volume, slice or slice(None)) whose k-space gets a NaN."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    written, entries = {}, []
    for v in range(volumes):

        def draw(*shape):
            return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)

        k = draw(slices, h, w)
        if bad is not None and bad[0] == v:
            k[bad[1], 3, 4] = np.nan
        arrays = {"kspace": k}
        if coils:
            arrays["coil_kspace"], arrays["maps"] = draw(slices, coils, h, w), draw(slices, coils, h, w)
        name = f"v{v:03d}.h5"
        with h5py.File(root / name, "w") as f:
            for key, a in arrays.items():
                f.create_dataset(key, data=a, chunks=(1, *a.shape[1:]) if chunked else None)
            f.attrs["source"] = f"test{v}"
        written[f"v{v:03d}"] = (arrays["kspace"], arrays.get("coil_kspace"), arrays.get("maps"))
        entries.append({"file": name})
    (root / "manifest.json").write_text(json.dumps({"format": "kerasrecon-dataset", "volumes": entries}))
    return written


@pytest.fixture(autouse=True)
def fresh_store():
    store.reset()
    yield
    store.reset()


class Reads:
    """Records the reads that reach the files: through HDF5 (``("h5", path, name, index)``) or by offset
    (``("raw", path, name, offset)``)."""

    def __init__(self, monkeypatch):
        self.calls = []
        h5_read, raw_read = store.FILES.read, store._pread

        def read(path, name, index):
            self.calls.append(("h5", path, name, index))
            return h5_read(path, name, index)

        def pread(path, name, offset, nbytes, stamp):
            self.calls.append(("raw", path, name, offset))
            return raw_read(path, name, offset, nbytes, stamp)

        monkeypatch.setattr(store.FILES, "read", read)
        monkeypatch.setattr(store, "_pread", pread)


def test_opening_reads_no_data_and_slices_equal_the_written_arrays(tmp_path, monkeypatch):
    written = write_dataset(tmp_path / "d", volumes=3, slices=4, coils=2)
    reads = Reads(monkeypatch)
    vols = load_volumes(str(tmp_path / "d"))
    train, val = split_volumes(vols, 0.3)
    assert [v.shape for v in vols] == [(4, 24, 20)] * 3 and [len(v) for v in train + val] == [4, 4, 4]
    assert [v.coils for v in vols] == [2, 2, 2] and all(v.multicoil for v in vols)
    picked = vols[1].slices([3, 0, 2])
    assert picked.shape == (3, 24, 20) and reads.calls == []  # nothing read so far
    k, c, m = written["v001"]
    np.testing.assert_array_equal(picked.kspace, k[[3, 0, 2]])  # unsorted rows come back in order
    np.testing.assert_array_equal(picked.coil_kspace, c[[3, 0, 2]])
    np.testing.assert_array_equal(picked.maps, m[[3, 0, 2]])
    np.testing.assert_array_equal(vols[1].kspace_at(2), k[2])
    np.testing.assert_array_equal(picked.slices(slice(1, 3)).kspace_at(1), k[2])
    np.testing.assert_array_equal(vols[2].maps_at(-1), written["v002"][2][3])
    n = len(reads.calls)
    vols[1].kspace_at(2)  # cached: no new read
    assert len(reads.calls) == n
    # slices are read by offset (data prepare's layout: one raw chunk per slice), whole volumes via HDF5
    assert {c[0] for c in reads.calls if c[2] == "kspace" and isinstance(c[3], (int, np.integer))} == {"raw"}
    with pytest.raises(IndexError):
        vols[0].kspace_at(4)


def test_cache_and_open_files_are_bounded(tmp_path, monkeypatch):
    write_dataset(tmp_path / "d", volumes=store.MAX_OPEN_FILES + 8, slices=2, h=8, w=8)
    vols = load_volumes(str(tmp_path / "d"))
    for v in vols:
        v.loaded()  # whole volumes are read through HDF5, whose open files are the bounded LRU
    assert len(store.FILES.handles) == store.MAX_OPEN_FILES
    # an LRU of 3 slices of 8×8 complex64 (512 bytes each)
    cache = store.SliceCache(budget=3 * 512)
    for i in range(5):
        cache.put(i, np.zeros((8, 8), np.complex64))
        cache.get(0 if i < 4 else 99)  # slice 0 stays recent until the last put
    assert sorted(cache.items) == [0, 3, 4] and cache.nbytes == 3 * 512
    monkeypatch.setenv(store.CACHE_ENV, "0.5")
    assert store.cache_budget() == 2**19
    monkeypatch.setenv(store.CACHE_ENV, "lots")
    with pytest.raises(DataError, match="KERASRECON_CACHE_MB must be a number"):
        store.cache_budget()


def test_a_bad_slice_is_one_line_naming_the_file_when_read(tmp_path):
    write_dataset(tmp_path / "d", volumes=2, slices=3, bad=(1, 2))
    vols = load_volumes(str(tmp_path / "d"))  # opening succeeds: data are read when used
    vols[1].kspace_at(1)
    with pytest.raises(DataError) as exc:
        vols[1].kspace_at(2)
    assert "v001.h5:kspace slice 2 contains 1 NaN/Inf values" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(DataError, match="v001.h5:kspace contains 1 NaN"):
        vols[1].loaded()
    (tmp_path / "d" / "v000.h5").write_bytes(b"not hdf5 any more")
    store.reset()
    with pytest.raises(DataError, match=r"v000.h5: cannot read 'kspace'"):
        vols[0].kspace_at(0)


@pytest.mark.parametrize("coils", [0, 3])
@pytest.mark.parametrize("sampling", ["patch", "slice"])
def test_training_elements_from_disk_equal_those_from_memory(tmp_path, coils, sampling):
    write_dataset(tmp_path / "d", volumes=3, slices=3, coils=coils)
    on_disk = load_volumes(str(tmp_path / "d"))
    in_memory = [v.loaded() for v in on_disk]
    assert all(isinstance(v._kspace, np.ndarray) for v in in_memory)
    cfg = TrainConfig(data=DataConfig(patch_size=16, batch_size=2, sampling=sampling), mask=MaskConfig(seed=5))
    disk_plan, memory_plan = sampling_plan(on_disk, cfg), sampling_plan(in_memory, cfg)
    for i in range(12):
        a, b = numpy_element(disk_plan, i), numpy_element(memory_plan, i)
        assert a[0].keys() == b[0].keys()
        for key in a[0]:
            np.testing.assert_array_equal(a[0][key], b[0][key], err_msg=key)
        np.testing.assert_array_equal(a[1], b[1])


def test_plan_slices_against_a_numpy_reference(tmp_path):
    """Dataset slice s of volume v, row r: target = ifft2c(k_r) / max|ifft2c(M_v ⊙ k_r)|, with M_v the
    volume's reference mask (seed mask.seed + v), computed here with NumPy's FFT."""
    written = write_dataset(tmp_path / "d", volumes=3, slices=2)
    cfg = TrainConfig(data=DataConfig(patch_size=16), mask=MaskConfig(seed=7, acceleration=4))
    plan = sampling_plan(load_volumes(str(tmp_path / "d")), cfg)

    def ifft2c(x):
        return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x), norm="ortho"))

    assert len(plan) == 6 and plan.locate(3) == (1, 1) and plan.locate(5) == (2, 1)
    for s in range(6):
        v, r = divmod(s, 2)
        k = written[f"v{v:03d}"][0][r].astype(np.complex128)
        mask = make_mask("poisson", 4, (24, 20), 7 + v).array
        expected = ifft2c(k) / np.abs(ifft2c(mask * k)).max()
        np.testing.assert_allclose(plan.target(s), expected, rtol=1e-5, atol=1e-6)
        assert plan.mask_index(s) == v
        np.testing.assert_array_equal(plan.mask(v), make_mask("poisson", 4, (16, 16), 7 + v).array)


def test_plan_memory_does_not_hold_the_data(tmp_path, monkeypatch):
    """Building a plan over 60 volumes (3.7 MB of k-space) and drawing 200 elements with a 256 kB slice
    cache allocates a small fraction of the data (an in-memory plan held the scaled images, and with
    whole-slice sampling the k-space again: twice the data)."""
    monkeypatch.setenv(store.CACHE_ENV, "0.25")
    store.reset()
    write_dataset(tmp_path / "d", volumes=60, slices=10, h=32, w=24)
    vols = load_volumes(str(tmp_path / "d"))
    data_bytes = sum(len(v) * 32 * 24 * 8 for v in vols)
    cfg = TrainConfig(data=DataConfig(patch_size=16, sampling="slice"), mask=MaskConfig(kind="random"))
    tracemalloc.start()
    try:
        plan = sampling_plan(vols, cfg)
        for i in range(200):
            numpy_element(plan, i)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert store.CACHE.nbytes <= 2**18 and peak < 0.15 * data_bytes, (peak, data_bytes)


def test_prepare_writes_one_chunk_per_slice(tmp_path):
    from kerasrecon.data.images import prepare_dataset
    from kerasrecon.data.simulate import Simulation

    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "a.npy", np.random.default_rng(0).random((3, 16, 12)).astype(np.float32))
    prepare_dataset(src, tmp_path / "out", simulation=Simulation(coils=2), acs_lines=8)
    with h5py.File(tmp_path / "out" / "a.h5") as f:
        assert f["kspace"].chunks == (1, 16, 12) and f["kspace"].compression is None
        assert f["coil_kspace"].chunks == f["maps"].chunks == (1, 2, 16, 12)


@pytest.mark.parametrize("layout", ["contiguous", "gzip", "complex128"])
def test_other_layouts_are_read_through_hdf5_and_give_the_same_slices(tmp_path, layout, monkeypatch):
    rng = np.random.default_rng(1)
    k = (rng.standard_normal((3, 8, 6)) + 1j * rng.standard_normal((3, 8, 6))).astype(np.complex64)
    (tmp_path / "d").mkdir()
    with h5py.File(tmp_path / "d" / "v.h5", "w") as f:
        if layout == "contiguous":
            f.create_dataset("kspace", data=k)
        elif layout == "gzip":
            f.create_dataset("kspace", data=k, chunks=(1, 8, 6), compression="gzip")
        else:
            f.create_dataset("kspace", data=k.astype(np.complex128), chunks=(1, 8, 6))
    (tmp_path / "d" / "manifest.json").write_text(
        json.dumps({"format": "kerasrecon-dataset", "volumes": [{"file": "v.h5"}]})
    )
    reads = Reads(monkeypatch)
    (vol,) = load_volumes(str(tmp_path / "d"))
    assert vol._kspace.offsets is None
    np.testing.assert_array_equal(vol.kspace_at(1), k[1])
    np.testing.assert_array_equal(vol.kspace, k)
    assert [c[0] for c in reads.calls] == ["h5", "h5"]


def test_offsets_are_those_of_the_slices(tmp_path):
    """The byte offsets looked up once are where each slice's bytes lie: read back with plain file I/O."""
    written = write_dataset(tmp_path / "d", volumes=1, slices=4, h=6, w=5)
    with h5py.File(tmp_path / "d" / "v000.h5") as f:
        offsets = store.slice_offsets(f["kspace"])
    raw = (tmp_path / "d" / "v000.h5").read_bytes()
    for i, offset in enumerate(offsets):
        got = np.frombuffer(raw[offset : offset + 6 * 5 * 8], "<c8").reshape(6, 5)
        np.testing.assert_array_equal(got, written["v000"][0][i])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_training_stops_with_one_line_at_a_bad_slice(tmp_path, backend):
    """A slice that turns out not to be finite when training first draws it stops ``fit`` with one line
    naming the file, the slice and the step, on both input paths (tf.data reports the element's error
    as an OpError with a traceback: the runner raises the error itself)."""
    from tests.test_bad_input import assert_one_line_error, run
    from tests.test_jax_training import jax_cli

    write_dataset(tmp_path / "d", volumes=3, slices=2, h=32, w=32, bad=(1, slice(None)))
    args = ["fit", "--data", tmp_path / "d", "--out", tmp_path / "run", "--steps", 4, "--val-fraction", 0.3]
    args += ["--batch-size", 2, "--patch-size", 32, "--blocks", 1, "--filters", 8, "--loss", "mse"]
    if backend == "tensorflow":
        res = run(*args)
        assert_one_line_error(res, "v001.h5:kspace slice")
        line = res.stderr
    else:
        res = jax_cli(*args)
        assert res.returncode == 2, res.stderr[-2000:]
        errors = [x for x in res.stderr.splitlines() if x.startswith("kerasrecon: error:")]
        assert len(errors) == 1 and "v001.h5:kspace slice" in errors[0] and "Traceback" not in res.stderr
        line = errors[0]
    assert "NaN/Inf" in line and "training stopped at step" in line and "last good checkpoint is step none" in line


def test_evaluation_from_disk_holds_one_volume_and_scores_like_numpy(tmp_path, monkeypatch):
    """``evaluate`` on a dataset on disk: every slice scored (zero-filled PSNR against skimage on a NumPy
    zero-filled image), reconstructions kept only for the volumes asked for, and each volume read
    whole once."""
    from skimage.metrics import peak_signal_noise_ratio

    from kerasrecon.evaluate import evaluate

    written = write_dataset(tmp_path / "d", volumes=3, slices=2, h=24, w=24)
    vols = load_volumes(str(tmp_path / "d"))
    reads = Reads(monkeypatch)
    result = evaluate({}, vols, MaskConfig(seed=3), keep_recons=1)
    assert list(result.targets) == ["v000"] and list(result.recons["zero_filled"]) == ["v000"]
    assert sorted({c[1].rsplit("/", 1)[-1] for c in reads.calls}) == ["v000.h5", "v001.h5", "v002.h5"]
    assert len(reads.calls) == 3  # one whole-volume read each (single-coil: kspace only)

    def ifft2c(x):
        return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))

    for v in range(3):
        k = written[f"v{v:03d}"][0].astype(np.complex128)
        target, zf = np.abs(ifft2c(k)), np.abs(ifft2c(make_mask("poisson", 4, (24, 24), 3 + v).array * k))
        expected = [peak_signal_noise_ratio(t, z, data_range=target.max()) for t, z in zip(target, zf)]
        got = [r["psnr"] for r in result.rows if r["volume"] == f"v{v:03d}"]
        np.testing.assert_allclose(got, expected, atol=1e-3)


def test_held_out_volumes_open_only_their_files(tmp_path, monkeypatch):
    """Evaluating the held-out part of a dataset opens the held-out files only (the split is by volume)."""
    import kerasrecon.data.volume as volume
    from kerasrecon.evaluate import held_out_volumes

    write_dataset(tmp_path / "d", volumes=10, slices=2)
    opened = []
    original = volume.read_prepared_volume
    monkeypatch.setattr(volume, "read_prepared_volume", lambda path: opened.append(path.name) or original(path))
    val = held_out_volumes(str(tmp_path / "d"), 0.2)
    assert [v.name for v in val] == ["v008", "v009"] and opened == ["v008.h5", "v009.h5"]
    write_dataset(tmp_path / "one", volumes=1, slices=10)  # one volume: its last slices are held out
    (val,) = held_out_volumes(str(tmp_path / "one"), 0.2)
    assert len(val) == 2 and val.name == "v000_val"
