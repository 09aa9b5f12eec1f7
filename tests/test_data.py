import json

import h5py
import numpy as np
import pytest

from kerasrecon.config import DataConfig, MaskConfig, TrainConfig
from kerasrecon.data import Volume, load_volumes, split_volumes
from kerasrecon.data.demo import demo_images, load_demo
from kerasrecon.data.fastmri import FastMRIFile
from kerasrecon.data.images import prepare_dataset, read_image_stack
from kerasrecon.data.pipeline import training_dataset
from kerasrecon.data.slices import evaluation_slices
from kerasrecon.errors import ConfigError, DataError
from kerasrecon.masks import make_mask
from tests.conftest import random_complex, ref_fft2c, ref_ifft2c


def write_fastmri(path, rng, slices=2, shape=(64, 40), esc=True):
    k = random_complex(rng, (slices, *shape))
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k)
        if esc:
            f.create_dataset("reconstruction_esc", data=np.zeros((slices, 32, 32), np.float32))
        f.attrs["acquisition"] = "CORPD_FBK"
    return k


def test_demo_set_is_real_mr_and_licensed():
    from importlib import resources

    imgs = demo_images()
    assert imgs.shape == (60, 370, 301) and imgs.dtype == np.float32
    assert 0 <= imgs.min() and imgs.max() <= 1 and imgs.std() > 0.05
    lic = resources.files("kerasrecon.data").joinpath("demo_data", "LICENSE.mricron").read_text()
    assert "BSD-3-clause" in lic and "Chris Rorden" in lic
    vol = load_demo(num_slices=3)
    np.testing.assert_allclose(np.abs(ref_ifft2c(vol.kspace)), imgs[:3], atol=1e-5)
    # Each call's k-space is its own: writing into one leaves the next load as it was.
    vol.kspace[:] = 0
    again = load_demo(num_slices=3).kspace
    np.testing.assert_allclose(np.abs(ref_ifft2c(again)), imgs[:3], atol=1e-5)
    assert again.flags.writeable and load_demo().kspace.shape == (60, 370, 301)


def test_fastmri_reader_crop_then_retransform(tmp_path, rng):
    k = write_fastmri(tmp_path / "file1000.h5", rng)
    with FastMRIFile(tmp_path / "file1000.h5", crop=(32, 32)) as f:
        assert len(f) == 2 and f.attrs["acquisition"] == "CORPD_FBK"
        img = ref_ifft2c(k[1])[16:48, 4:36]
        np.testing.assert_allclose(f.image(1), img, atol=1e-5)
        np.testing.assert_allclose(f.kspace(1), ref_fft2c(img), atol=1e-5)
        assert f.reconstruction_esc(0).shape == (32, 32)


def test_fastmri_grid_defaults_to_the_files_own_reconstruction(tmp_path, rng):
    """fastMRI's convention: the image grid is that of the file's reconstruction_esc/_rss; without one,
    320×320; a grid larger than the file's images is one error naming crop (--crop in the CLI)."""
    from click.testing import CliRunner

    from kerasrecon_cli.main import cli

    (tmp_path / "src").mkdir()
    k = write_fastmri(tmp_path / "src" / "small.h5", rng, shape=(64, 40))
    with FastMRIFile(tmp_path / "src" / "small.h5") as f:
        assert f.crop == (32, 32)
        np.testing.assert_allclose(f.image(0), ref_ifft2c(k[0])[16:48, 4:36], atol=1e-5)
    write_fastmri(tmp_path / "noesc.h5", rng, shape=(64, 40), esc=False)
    with FastMRIFile(tmp_path / "noesc.h5") as f:  # the header reads whatever the grid; images do not
        assert f.attrs["acquisition"] == "CORPD_FBK"
        with pytest.raises(DataError, match=r"grid 320×320 is larger than the file's images 64×40; pass crop H W"):
            f.image(0)
    res = CliRunner().invoke(cli, ["data", "prepare", str(tmp_path / "src"), str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(
        cli, ["data", "prepare", str(tmp_path / "src"), str(tmp_path / "o2"), "--crop", "48", "48"]
    )
    assert res.exit_code == 2 and "pass --crop H W with H <= 64, W <= 40" in res.output


def test_fastmri_reader_errors(tmp_path, rng):
    with h5py.File(tmp_path / "nok.h5", "w") as f:
        f.create_dataset("reconstruction_esc", data=np.zeros((1, 8, 8)))
    with pytest.raises(DataError, match="missing dataset 'kspace'"):
        FastMRIFile(tmp_path / "nok.h5")
    write_fastmri(tmp_path / "t.h5", rng, slices=4, shape=(128, 128))
    data = (tmp_path / "t.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="trunc.h5"):
        FastMRIFile(tmp_path / "trunc.h5").raw_kspace(3)


def test_prepare_image_sources_and_manifest(tmp_path, rng):
    from skimage import io

    src = tmp_path / "src"
    src.mkdir()
    mag = rng.random((3, 24, 20)).astype(np.float32) * 7
    np.save(src / "vol_a.npy", mag)
    with h5py.File(src / "vol_b.h5", "w") as f:
        f.create_dataset("image", data=(mag[:2] * np.exp(1j * 0.3)).astype(np.complex64))
    (src / "vol_c").mkdir()
    for i in range(2):
        io.imsave(src / "vol_c" / f"{i:02d}.png", (mag[i] * 30).astype(np.uint8), check_contrast=False)
    manifest = prepare_dataset(src, tmp_path / "out")
    assert [v["file"] for v in manifest["volumes"]] == ["vol_a.h5", "vol_b.h5", "vol_c.h5"]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    vols = load_volumes(str(tmp_path / "out"))
    assert [v.shape for v in vols] == [(3, 24, 20), (2, 24, 20), (2, 24, 20)]
    np.testing.assert_allclose(np.abs(ref_ifft2c(vols[0].kspace)), mag / mag.max(), atol=1e-5)
    assert manifest["volumes"][0]["scale"] == pytest.approx(1 / mag.max())
    np.testing.assert_allclose(np.angle(vols[1].images[0, 3, 3]), 0.3, atol=1e-4)


def test_prepare_fastmri_and_refuses_overwrite(tmp_path, rng):
    write_fastmri(tmp_path / "f.h5", rng)
    prepare_dataset(tmp_path / "f.h5", tmp_path / "out", crop=(32, 32))
    assert load_volumes(str(tmp_path / "out"))[0].shape == (2, 32, 32)
    before = (tmp_path / "out" / "f.h5").read_bytes()
    with pytest.raises(DataError, match="not empty; pass force=True"):
        prepare_dataset(tmp_path / "f.h5", tmp_path / "out")
    assert (tmp_path / "out" / "f.h5").read_bytes() == before


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p.mkdir(), "empty directory"),
        (lambda p: np.save(str(p) + ".npy", np.full((2, 16, 16), np.nan)), "NaN"),
        (lambda p: np.save(str(p) + ".npy", np.ones((16,))), "expected images"),
    ],
)
def test_prepare_bad_sources(tmp_path, make, match):
    src = tmp_path / "bad"
    make(src)
    path = src if src.exists() else tmp_path / "bad.npy"
    with pytest.raises(DataError, match=match):
        prepare_dataset(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_read_h5_without_image_dataset(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("foo", data=np.ones((2, 8, 8)))
    with pytest.raises(DataError, match="dataset=NAME"):
        read_image_stack(tmp_path / "x.h5")
    assert read_image_stack(tmp_path / "x.h5", dataset="foo").shape == (2, 8, 8)


def test_load_volumes_errors(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_volumes(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="empty"):
        load_volumes(str(tmp_path))


def test_split_volumes():
    vol = Volume("v", np.zeros((10, 8, 8), np.complex64))
    train, val = split_volumes([vol], 0.2)
    assert train[0].shape[0] == 8 and val[0].shape[0] == 2
    vols = [Volume(f"v{i}", np.zeros((2, 8, 8), np.complex64)) for i in range(5)]
    train, val = split_volumes(vols, 0.2)
    assert [v.name for v in val] == ["v4"]


def test_training_splits_train_on_the_training_part_of_every_dataset(tmp_path, rng):
    """--extra-data: each extra dataset contributes its training split alone (the --val-fraction rule);
    validation is --data's held-out part. Expected parts by hand: 3 volumes at 0.2 hold out the last;
    one volume of 10 slices at 0.2 holds out its last 2."""
    from kerasrecon.data import training_splits

    (tmp_path / "a").mkdir()
    mags = {name: rng.random((2, 16, 16)).astype(np.float32) + 0.1 for name in ("v0", "v1", "v2")}
    for name, mag in mags.items():
        np.save(tmp_path / "a" / f"{name}.npy", mag)
    one = rng.random((10, 20, 18)).astype(np.float32) + 0.1
    np.save(tmp_path / "b.npy", one)
    prepare_dataset(tmp_path / "a", tmp_path / "A")
    prepare_dataset(tmp_path / "b.npy", tmp_path / "B")
    train, val = training_splits(DataConfig(data=str(tmp_path / "A"), extra_data=[str(tmp_path / "B")]))
    assert [[v.name for v in vols] for vols in train] == [["v0", "v1"], ["b"]] and [v.name for v in val] == ["v2"]
    images = np.abs(ref_ifft2c(np.stack([train[1][0].kspace_at(i) for i in range(len(train[1][0]))])))
    np.testing.assert_allclose(images, one[:8] / one.max(), atol=1e-5)  # slices 0..7 of b, never 8 or 9
    with pytest.raises(DataError, match=r"^data.extra_data .*nope: not a directory"):
        training_splits(DataConfig(data=str(tmp_path / "A"), extra_data=[str(tmp_path / "nope")]))


def small_cfg(**mask):
    return TrainConfig(data=DataConfig(patch_size=16, batch_size=4), mask=MaskConfig(acceleration=4, **mask), seed=3)


def test_pipeline_matches_numpy_reference(rng):
    images = (rng.random((3, 24, 20)) * np.exp(1j * rng.random((3, 24, 20)))).astype(np.complex64)
    vol = Volume("v", ref_fft2c(images).astype(np.complex64))
    cfg = small_cfg()
    inputs, target = next(iter(training_dataset([vol], cfg)))
    assert inputs["zero_filled"].shape == (4, 16, 16, 2) and target.shape == (4, 16, 16, 1)
    # Independent recomputation: the per-volume patch mask, the slice scale, then locate the crop.
    pmask = make_mask("poisson", 4, (16, 16), cfg.mask.seed).array
    smask = make_mask("poisson", 4, (24, 20), cfg.mask.seed).array
    scales = 1 / np.abs(ref_ifft2c(ref_fft2c(images) * smask)).reshape(3, -1).max(1)
    for b in range(4):
        np.testing.assert_array_equal(inputs["mask"][b], pmask)
        t = target[b, ..., 0].numpy()
        found = [
            (s, y, x)
            for s in range(3)
            for y in range(9)
            for x in range(5)
            if np.allclose(np.abs(images[s, y : y + 16, x : x + 16]) * scales[s], t, atol=1e-5)
        ]
        assert found, "target patch is not a scaled crop of any slice"
        s, y, x = found[0]
        patch = images[s, y : y + 16, x : x + 16] * scales[s]
        mk = ref_fft2c(patch) * pmask
        zf = inputs["zero_filled"][b].numpy()
        np.testing.assert_allclose(zf[..., 0] + 1j * zf[..., 1], ref_ifft2c(mk), atol=1e-5)
        mko = inputs["masked_kspace"][b].numpy()
        np.testing.assert_allclose(mko[..., 0] + 1j * mko[..., 1], mk, atol=1e-5)


@pytest.mark.slow
def test_pipeline_deterministic_and_sharded():
    vol = load_demo(num_slices=4)
    cfg = small_cfg(per_sample=True, bank_size=5)
    a = [t.numpy() for _, t in training_dataset([vol], cfg).take(4)]
    b = [t.numpy() for _, t in training_dataset([vol], cfg).take(4)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    flat = np.concatenate(a)  # 16 elements, element i = i-th sample
    s0 = np.concatenate(
        [t.numpy() for _, t in training_dataset([vol], cfg, batch_size=2, num_shards=2, shard_index=0).take(4)]
    )
    s1 = np.concatenate(
        [t.numpy() for _, t in training_dataset([vol], cfg, batch_size=2, num_shards=2, shard_index=1).take(4)]
    )
    np.testing.assert_array_equal(s0, flat[0::2])
    np.testing.assert_array_equal(s1, flat[1::2])


def test_pipeline_bad_inputs():
    vol = Volume("v", np.ones((2, 12, 12), np.complex64))
    with pytest.raises(ConfigError, match=r"data.patch_size 16 is larger than the images of v \(12×12\)"):
        training_dataset([vol], small_cfg())
    big = Volume("w", np.ones((2, 20, 20), np.complex64))
    with pytest.raises(ConfigError, match="images of v"):  # patch sampling takes mixed shapes, each must fit
        training_dataset([big, vol], small_cfg())
    slices = TrainConfig(data=DataConfig(patch_size=8, sampling="slice"), mask=MaskConfig(acceleration=4))
    with pytest.raises(DataError, match="different shapes.*data.sampling slice needs one"):
        training_dataset([vol, big], slices)
    with pytest.raises(DataError, match="empty"):
        training_dataset([], small_cfg())


def test_patches_from_volumes_of_different_sizes(rng):
    """Patch sampling over volumes of different matrix sizes: every element is a crop of one slice of
    its own volume (window inside that slice), scaled by that slice's factor under its volume's
    slice-shaped reference mask and measured with its volume's patch mask (NumPy recomputation); both volumes
    are drawn and windows reach the far edges of the larger one."""
    from kerasrecon.data.pipeline import element_indices, numpy_element, sampling_plan

    sizes = [(24, 20), (40, 33)]
    images = [(rng.random((2, *hw)) * np.exp(1j * rng.random((2, *hw)))).astype(np.complex64) for hw in sizes]
    vols = [Volume(f"v{i}", ref_fft2c(im).astype(np.complex64)) for i, im in enumerate(images)]
    cfg = small_cfg()
    plan = sampling_plan(vols, cfg)
    pmasks = [make_mask("poisson", 4, (16, 16), cfg.mask.seed + v).array for v in range(2)]  # one per volume
    scales = []
    for v, (im, hw) in enumerate(zip(images, sizes)):
        smask = make_mask("poisson", 4, hw, cfg.mask.seed + v).array  # volume v's reference mask
        scales.append(1 / np.abs(ref_ifft2c(ref_fft2c(im) * smask)).reshape(2, -1).max(1))
    seen, far = set(), 0
    for i in range(40):
        s, top, left, _ = element_indices(plan, i)
        v, r = divmod(int(s), 2)
        h, w = sizes[v]
        assert 0 <= top <= h - 16 and 0 <= left <= w - 16
        seen.add(v)
        far = max(far, top + 16 if v == 1 else 0)
        crop = images[v][r, top : top + 16, left : left + 16] * scales[v][r]
        inputs, target = numpy_element(plan, i)
        np.testing.assert_allclose(target[..., 0], np.abs(crop), atol=1e-5)
        zf = inputs["zero_filled"]
        np.testing.assert_allclose(zf[..., 0] + 1j * zf[..., 1], ref_ifft2c(ref_fft2c(crop) * pmasks[v]), atol=1e-5)
    assert seen == {0, 1} and far > 24  # windows of the 40-row volume go past the small volume's 24 rows


def test_evaluation_slices_by_hand(rng):
    images = rng.random((2, 20, 18)).astype(np.complex64)
    vol = Volume("v", ref_fft2c(images).astype(np.complex64))
    (ev,) = list(evaluation_slices([vol], MaskConfig(kind="random", acceleration=4, seed=2)))
    m = make_mask("random", 4, (20, 18), 2).array
    zf = ref_ifft2c(vol.kspace * m)
    scale = 1 / np.abs(zf).reshape(2, -1).max(1)
    np.testing.assert_allclose(ev["scale"], scale, rtol=1e-5)
    np.testing.assert_allclose(ev["zero_filled"], zf * scale[:, None, None], atol=1e-5)
    np.testing.assert_allclose(ev["target"], np.abs(images), atol=1e-5)
    assert ev["mask"].id["mask_seed"] == 2


def write_dicom(path, pixels, instance):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.InstanceNumber = "MR", instance
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, 1
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return pydicom


def test_dicom_series_sorted_by_instance_and_rescaled(tmp_path, rng):
    series = rng.integers(0, 1000, (3, 16, 12))
    (tmp_path / "knee").mkdir()
    for name, inst in [("a.dcm", 3), ("b.dcm", 1), ("c.dcm", 2)]:  # file order != instance order
        write_dicom(tmp_path / "knee" / name, series[inst - 1], inst)
    stack = read_image_stack(tmp_path / "knee")
    np.testing.assert_array_equal(stack, series * 2 + 1)
    manifest = prepare_dataset(tmp_path / "knee", tmp_path / "out")
    assert manifest["volumes"][0]["shape"] == [3, 16, 12]


def test_slice_sampling_crops_the_whole_slice_aliasing():
    """--sampling slice: the input is a window of the whole-slice zero-filled image (NumPy reference)."""
    from kerasrecon.config import DataConfig, MaskConfig, TrainConfig
    from kerasrecon.data.pipeline import training_dataset
    from kerasrecon.data.slices import normalisation_scales, reference_masks
    from kerasrecon.data.volume import Volume
    from tests.conftest import ref_fft2c, ref_ifft2c

    rng = np.random.default_rng(0)
    images = rng.random((3, 40, 36)).astype(np.float32)
    vol = Volume("v", ref_fft2c(images).astype(np.complex64))
    cfg = TrainConfig(mask=MaskConfig(acceleration=4), data=DataConfig(patch_size=16, batch_size=1, sampling="slice"))
    (mask,) = reference_masks([vol], cfg.mask)
    (scale,) = normalisation_scales([vol], [mask])
    whole_zf = [ref_ifft2c(ref_fft2c(images[i] * scale[i]) * mask.array) for i in range(3)]
    for inputs, target in training_dataset([vol], cfg).take(6):
        zf = inputs["zero_filled"][0].numpy()
        zf = zf[..., 0] + 1j * zf[..., 1]
        t = target[0, ..., 0].numpy()
        # Find the slice and window by the target, then the input must be the same window of the
        # whole-slice zero-filled image (not a patch undersampled on its own grid).
        hits = [
            (i, a, b)
            for i in range(3)
            for a in range(40 - 15)
            for b in range(36 - 15)
            if np.allclose(images[i, a : a + 16, b : b + 16] * scale[i], t, atol=1e-6)
        ]
        assert len(hits) == 1
        i, a, b = hits[0]
        np.testing.assert_allclose(zf, whole_zf[i][a : a + 16, b : b + 16], atol=1e-5)
        assert not inputs["mask"].numpy().any()  # DC is off on a crop (identity layer)
    # A patch covering the whole slice keeps the slice's mask and k-space: DC is exact in training.
    square = Volume("s", ref_fft2c(images[:, :36]).astype(np.complex64))
    full = TrainConfig(mask=MaskConfig(acceleration=4), data=DataConfig(patch_size=36, batch_size=1, sampling="slice"))
    (mask,) = reference_masks([square], full.mask)
    inputs, target = next(iter(training_dataset([square], full)))
    np.testing.assert_array_equal(inputs["mask"][0].numpy(), mask.array)
    k = inputs["masked_kspace"][0].numpy()
    np.testing.assert_allclose(k[..., 0] + 1j * k[..., 1], ref_fft2c(target[0, ..., 0].numpy()) * mask.array, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sampling, per_sample, patch", [("patch", False, 32), ("patch", True, 24), ("slice", False, 32), ("slice", True, 0)]
)
def test_numpy_input_path_equals_tf_data(sampling, per_sample, patch):
    """The NumPy path (JAX backend, no TensorFlow) yields the tf.data pipeline's arrays for the same seed
    and element indices: plain, per-sample masks, whole-slice sampling (DC off, and exact on whole slices)."""
    from kerasrecon.config import DataConfig, MaskConfig, TrainConfig
    from kerasrecon.data.demo import load_demo
    from kerasrecon.data.pipeline import numpy_batches, training_dataset

    vol = load_demo(num_slices=6)
    size = patch or min(vol.kspace.shape[1:])
    if not patch:  # whole slices: crop the volume square so the patch covers it
        vol = Volume(vol.name, ifft2c_square(vol.kspace, size), vol.source)
    cfg = TrainConfig(
        data=DataConfig(patch_size=size, batch_size=3, sampling=sampling),
        mask=MaskConfig(per_sample=per_sample, bank_size=5),
        seed=11,
    )
    tf_batches = iter(training_dataset([vol], cfg, start=7, num_shards=2, shard_index=1))
    np_batches = numpy_batches([vol], cfg, start=7, num_shards=2, shard_index=1, workers=2)
    for _ in range(2):
        (ti, tt), (ni, nt) = next(tf_batches), next(np_batches)
        np.testing.assert_allclose(nt, tt.numpy(), atol=1e-5)
        for key in ("zero_filled", "masked_kspace", "mask"):
            assert ni[key].shape == tuple(ti[key].shape) and ni[key].dtype == np.float32
            np.testing.assert_allclose(ni[key], ti[key].numpy(), atol=2e-5, err_msg=key)


def ifft2c_square(kspace, size):
    """k-space of the central size×size crop of each slice's image (NumPy)."""
    from kerasrecon.kspace import fft2c_np, ifft2c_np

    img = ifft2c_np(kspace)
    h, w = img.shape[1:]
    crop = img[:, (h - size) // 2 : (h - size) // 2 + size, (w - size) // 2 : (w - size) // 2 + size]
    return fft2c_np(crop).astype(np.complex64)


def test_prepare_keeps_fastmri_header_and_refuses_undersampled_files(tmp_path, rng):
    """fastMRI's acquisition/max/norm/patient_id travel into the prepared file and manifest; a test or
    challenge file (undersampled, with a `mask` dataset) is refused as ground truth, nothing written."""
    write_fastmri(tmp_path / "f.h5", rng)
    with h5py.File(tmp_path / "f.h5", "a") as f:
        f.attrs["max"] = np.float64(0.0123)
        f.attrs["norm"] = np.float64(0.456)
        f.attrs["patient_id"] = "abc123"
    manifest = prepare_dataset(tmp_path / "f.h5", tmp_path / "out", crop=(32, 32))
    entry = manifest["volumes"][0]
    assert (entry["acquisition"], entry["max"], entry["norm"], entry["patient_id"]) == (
        "CORPD_FBK",
        0.0123,
        0.456,
        "abc123",
    )
    with h5py.File(tmp_path / "out" / "f.h5", "r") as f:
        assert f.attrs["acquisition"] == "CORPD_FBK" and f.attrs["patient_id"] == "abc123"
        assert float(f.attrs["norm"]) == 0.456
    with h5py.File(tmp_path / "test.h5", "w") as f:  # fastMRI test-set layout
        f.create_dataset("kspace", data=random_complex(rng, (2, 64, 40)))
        f.create_dataset("mask", data=(rng.random(40) > 0.7).astype(bool))
    with pytest.raises(DataError, match="undersampled fastMRI test/challenge file.*kerasrecon reconstruct"):
        prepare_dataset(tmp_path / "test.h5", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


ISMRMRD_HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>80</x><y>40</y><z>1</z></matrixSize></encodedSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>31</maximum><center>18</center>
</kspace_encoding_step_1></encodingLimits></encoding></ismrmrdHeader>"""


def test_header_padding_columns_are_never_sampled(tmp_path, rng):
    """fastMRI's VarNet transform: padding_left = y // 2 - center = 2, padding_right = left + maximum + 1
    = 34; a mask drawn on the file grid samples no column outside [2, 34)."""
    from kerasrecon.config import MaskConfig
    from kerasrecon.masks import make_mask
    from kerasrecon.reconstruct import _file_mask, kspace_padding

    write_fastmri(tmp_path / "f.h5", rng, shape=(64, 40))
    with h5py.File(tmp_path / "f.h5", "a") as f:
        f.create_dataset("ismrmrd_header", data=np.bytes_(ISMRMRD_HEADER))
    with h5py.File(tmp_path / "f.h5") as f:
        assert kspace_padding(f) == (2, 34)
        cfg = MaskConfig(kind="random", acceleration=4, seed=3)
        arr, ident = _file_mask(f, (64, 40), cfg, "f.h5", kspace_padding(f))
    drawn = make_mask("random", 4, (64, 40), 3).array
    assert drawn[:, 34:].any()  # this seed samples a padded column, which the file mask drops
    assert not arr[:, :2].any() and not arr[:, 34:].any()
    np.testing.assert_array_equal(arr[:, 2:34], drawn[:, 2:34])
    assert ident["padding"] == [2, 34] and ident["achieved_acceleration"] == round(arr.size / arr.sum(), 4)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_dataset("ismrmrd_header", data=np.bytes_(b"<not xml"))
        assert kspace_padding(f) is None


def _square_turns(x):
    """The 8 symmetries of the square, written out (NumPy reference for the augmentation)."""
    rots = [x, x.T[::-1], x[::-1, ::-1], x.T[:, ::-1]]  # 0, 90, 180, 270 degrees counter-clockwise
    return rots + [r[:, ::-1] for r in rots]


def test_augmented_patches_are_turned_crops_measured_by_hand(rng):
    """--augment: each target is one of the 8 turns/flips of the un-augmented element's target (same
    slice, window and mask); the zero-filled input is that turned crop times e^{iφ}, measured with the
    un-turned mask (recomputed here from the slice); over 64 elements every turn occurs and φ covers
    [0, 2π); the same element twice is the same."""
    from kerasrecon.data.pipeline import augmentation, numpy_element, sampling_plan

    images = (rng.random((3, 24, 20)) * np.exp(1j * rng.random((3, 24, 20)))).astype(np.complex64)
    vol = Volume("v", ref_fft2c(images).astype(np.complex64))
    cfg = small_cfg()
    plain = sampling_plan([vol], cfg)
    aug = sampling_plan([vol], TrainConfig(data=DataConfig(patch_size=16, augment=True), mask=cfg.mask, seed=3))
    smask = make_mask("poisson", 4, (24, 20), cfg.mask.seed).array
    scales = 1 / np.abs(ref_ifft2c(ref_fft2c(images) * smask)).reshape(3, -1).max(1)
    crops = [(images[s, y : y + 16, x : x + 16] * scales[s]) for s in range(3) for y in range(9) for x in range(5)]
    turns, phases = set(), []
    for i in range(64):
        (pi, pt), (ai, at) = numpy_element(plain, i), numpy_element(aug, i)
        np.testing.assert_array_equal(ai["mask"], pi["mask"])  # the acquisition is not turned
        (crop,) = [c for c in crops if np.allclose(np.abs(c), pt[..., 0], atol=1e-5)][:1]
        hits = [t for t, g in enumerate(_square_turns(crop)) if np.allclose(np.abs(g), at[..., 0], atol=1e-5)]
        assert hits, f"element {i}: the target is not a turn of the plain target"
        t, phi = augmentation(aug, i)
        assert t in hits
        turns.add(t)
        phases.append(phi)
        expected = ref_ifft2c(ref_fft2c(_square_turns(crop)[t] * np.exp(1j * phi)) * pi["mask"])
        np.testing.assert_allclose(ai["zero_filled"][..., 0] + 1j * ai["zero_filled"][..., 1], expected, atol=1e-5)
    assert turns == set(range(8)) and np.histogram(phases, 4, (0, 2 * np.pi))[0].min() > 5
    np.testing.assert_array_equal(numpy_element(aug, 5)[0]["zero_filled"], numpy_element(aug, 5)[0]["zero_filled"])


def test_augment_needs_patch_sampling():
    from kerasrecon.config import validate

    with pytest.raises(ConfigError, match=r"data.augment .* needs data.sampling patch. Received: data.sampling slice"):
        validate(TrainConfig(data=DataConfig(augment=True, sampling="slice")))


def test_augmented_multicoil_patch_turns_the_maps_with_the_image(rng):
    """Multi-coil --augment (patch sampling, coil inputs): the target and the window's maps are turned
    alike, and the zero-filled input is the SENSE adjoint, with the turned maps, of the measured samples."""
    from kerasrecon.data.pipeline import augmentation, numpy_element, sampling_plan

    images = random_complex(rng, (2, 20, 20))
    maps = random_complex(rng, (2, 3, 20, 20)) / 2
    vol = Volume("mc", ref_fft2c(images), coil_kspace=ref_fft2c(maps * images[:, None]), maps=maps)
    base = dict(mask=MaskConfig(acceleration=4), seed=2)
    plain = sampling_plan([vol], TrainConfig(data=DataConfig(patch_size=12), **base))
    aug = sampling_plan([vol], TrainConfig(data=DataConfig(patch_size=12, augment=True), **base))
    assert aug.coil_inputs
    for i in range(8):
        (pi, pt), (ai, at) = numpy_element(plain, i), numpy_element(aug, i)
        t, _ = augmentation(aug, i)
        np.testing.assert_allclose(at[..., 0], _square_turns(pt[..., 0])[t], atol=1e-6)
        pm, am = (x[..., 0] + 1j * x[..., 1] for x in (pi["maps"], ai["maps"]))
        for c in range(3):
            np.testing.assert_allclose(am[c], _square_turns(pm[c])[t], atol=1e-6)
        k = ai["masked_kspace"][..., 0] + 1j * ai["masked_kspace"][..., 1]
        zf = ai["zero_filled"][..., 0] + 1j * ai["zero_filled"][..., 1]
        # the zero-filled input is the SENSE adjoint of the measured coil k-space with the turned maps
        expected_zf = (np.conj(am) * ref_ifft2c(k)).sum(0)
        np.testing.assert_allclose(zf, expected_zf, atol=1e-4)
        np.testing.assert_allclose(k, k * ai["mask"], atol=1e-6)  # only measured samples


def _ramp(y, x, slope):
    """A complex linear ramp (NumPy reference for the zoom): splines reproduce it inside the plane."""
    return (1 + slope * (0.02 * y + 0.01 * x)) + 1j * (0.5 - 0.01 * y + 0.015 * x)


def test_zoomed_patches_interpolate_a_smaller_window():
    """--zoom Z: each element's image is the slice sampled at ``top + dy + j/z, left + dx + k/z``, z in
    [1, Z] log-uniform, the zoomed window inside the p×p window; checked on linear ramps, which the
    cubic spline reproduces (up to its edge condition, a few pixels deep: only elements sampling at
    least 6 pixels inside the slice are compared), then measured on the p×p grid as any patch (the
    input recomputed by hand with the patch-shaped mask). The slice, window and mask are the un-zoomed
    element's."""
    from kerasrecon.data.pipeline import element_indices, numpy_element, sampling_plan, zoom_draw

    n, p, big = 48, 16, 3.0
    yy, xx = np.mgrid[:n, :n]
    images = np.stack([_ramp(yy, xx, 1.0), _ramp(yy, xx, -2.0)]).astype(np.complex64)
    vol = Volume("v", ref_fft2c(images).astype(np.complex64))
    cfg = small_cfg()
    plain = sampling_plan([vol], cfg)
    zoom = sampling_plan([vol], TrainConfig(data=DataConfig(patch_size=p, zoom=big), mask=cfg.mask, seed=3))
    smask = make_mask("poisson", 4, (n, n), cfg.mask.seed).array
    scales = 1 / np.abs(ref_ifft2c(ref_fft2c(images) * smask)).reshape(2, -1).max(1)
    compared, logs = 0, []
    for i in range(60):
        s, top, left, _ = element_indices(zoom, i)
        np.testing.assert_array_equal(element_indices(plain, i), element_indices(zoom, i))
        z, dy, dx = zoom_draw(zoom, i)
        logs.append(np.log(z) / np.log(big))
        assert 1 <= z <= big and 0 <= dy <= (p - 1) * (1 - 1 / z) + 1e-9 and 0 <= dx <= (p - 1) * (1 - 1 / z) + 1e-9
        rows, cols = top + dy + np.arange(p)[:, None] / z, left + dx + np.arange(p)[None, :] / z
        if min(rows.min(), cols.min()) < 6 or max(rows.max(), cols.max()) > n - 7:
            continue
        compared += 1
        expected = scales[s] * _ramp(rows, cols, [1.0, -2.0][s])
        inputs, target = numpy_element(zoom, i)
        np.testing.assert_allclose(target[..., 0], np.abs(expected), rtol=2e-3)
        zf = ref_ifft2c(ref_fft2c(expected) * inputs["mask"])
        np.testing.assert_allclose(inputs["zero_filled"][..., 0] + 1j * inputs["zero_filled"][..., 1], zf, atol=2e-3)
        np.testing.assert_array_equal(inputs["mask"], numpy_element(plain, i)[0]["mask"])
    assert compared >= 10
    assert np.histogram(logs, 3, (0, 1))[0].min() >= 10  # log-uniform over [1, Z]


def test_zoomed_multicoil_maps_are_interpolated_linearly(rng):
    """Multi-coil --zoom: the window's maps are sampled where the image is, by linear interpolation
    (exact for linear maps, so checked to round-off), and the input is the SENSE adjoint of the
    zoomed coil images measured on the patch grid."""
    from kerasrecon.data.pipeline import element_indices, numpy_element, sampling_plan, zoom_draw

    n, p = 24, 12
    yy, xx = np.mgrid[:n, :n]
    images = random_complex(rng, (2, n, n))
    maps = np.stack([_ramp(yy, xx, 1.0), _ramp(yy, xx, -1.0) * 1j, _ramp(yy, xx, 0.5)])[None].repeat(2, 0) / 3
    vol = Volume("mc", ref_fft2c(images), coil_kspace=ref_fft2c(maps * images[:, None]), maps=maps.astype(np.complex64))
    plan = sampling_plan([vol], TrainConfig(data=DataConfig(patch_size=p, zoom=2.0), mask=MaskConfig(acceleration=4)))
    assert plan.coil_inputs
    for i in range(6):
        s, top, left, _ = element_indices(plan, i)
        z, dy, dx = zoom_draw(plan, i)
        rows, cols = top + dy + np.arange(p)[:, None] / z, left + dx + np.arange(p)[None, :] / z
        inputs, _ = numpy_element(plan, i)
        got = inputs["maps"][..., 0] + 1j * inputs["maps"][..., 1]
        ref = np.stack([_ramp(rows, cols, 1.0), _ramp(rows, cols, -1.0) * 1j, _ramp(rows, cols, 0.5)]) / 3
        np.testing.assert_allclose(got, ref, atol=1e-5)
        k = inputs["masked_kspace"][..., 0] + 1j * inputs["masked_kspace"][..., 1]
        zf = inputs["zero_filled"][..., 0] + 1j * inputs["zero_filled"][..., 1]
        np.testing.assert_allclose(zf, (np.conj(got) * ref_ifft2c(k)).sum(0), atol=1e-4)


@pytest.mark.parametrize(
    "data, match",
    [
        (
            DataConfig(zoom=2.0, sampling="slice"),
            r"data.zoom .* needs data.sampling patch. Received: data.sampling slice",
        ),
        (DataConfig(zoom=0.5), r"data.zoom must be in \[1, 4\]. Received: 0.5"),
        (DataConfig(zoom=8.0), r"data.zoom must be in \[1, 4\]. Received: 8.0"),
    ],
)
def test_zoom_bad_values(data, match):
    from kerasrecon.config import validate

    with pytest.raises(ConfigError, match=match):
        validate(TrainConfig(data=data))
