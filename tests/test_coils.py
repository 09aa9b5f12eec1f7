"""Coil sensitivities and multi-coil data consistency, against NumPy references and sigpy."""

import numpy as np
import pytest

from kerasrecon import coils
from kerasrecon.errors import ConfigError
from kerasrecon.kspace import fft2c_np, ifft2c_np
from tests.conftest import random_complex


def disc(h, w, r=0.7):
    y, x = np.mgrid[:h, :w]
    return (((y - h / 2) / (h / 2)) ** 2 + ((x - w / 2) / (w / 2)) ** 2) < r**2


def smooth_object(rng, h, w):
    """A complex object on a disc with smooth magnitude and phase (what coil maps are estimated from)."""
    y, x = np.mgrid[:h, :w] / max(h, w)
    mag = 1 + 0.3 * np.cos(6 * x) * np.sin(4 * y)
    return (disc(h, w) * mag * np.exp(1j * (x - 0.5 * y))).astype(np.complex64)


def test_birdcage_equals_sigpy_model_and_is_normalised():
    sigpy_mri = pytest.importorskip("sigpy.mri")
    ours = coils.birdcage_maps(8, 40, 36)
    ref = sigpy_mri.birdcage_maps((8, 40, 36))
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(np.sum(np.abs(ours) ** 2, axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(coils.birdcage_maps(1, 4, 4), np.ones((1, 4, 4)))


def test_rss_and_sense_combine_by_hand(rng):
    x = random_complex(rng, (3, 5, 6))
    np.testing.assert_allclose(coils.rss_np(x), np.sqrt((np.abs(x) ** 2).sum(0)), rtol=1e-6)
    maps = coils.birdcage_maps(3, 5, 6)
    img = random_complex(rng, (5, 6))
    np.testing.assert_allclose(coils.sense_combine_np(maps * img, maps), img, atol=1e-5)  # Σ|S|² = 1


@pytest.mark.parametrize("method", ["acs", "espirit"])
def test_estimated_maps_recover_the_object(rng, method):
    """Fully sampled 8-coil k-space of a smooth object: SENSE-combining with the estimated maps gives
    the object's magnitude back inside it (the object's smooth phase goes into the maps, which are
    defined only up to such a phase), and the maps are normalised there."""
    if method == "espirit":
        pytest.importorskip("sigpy")
    h, w = 48, 48
    obj, maps = smooth_object(rng, h, w), coils.birdcage_maps(8, h, w)
    kspace = fft2c_np(maps * obj)[None]  # [S=1, C, H, W]
    est = coils.estimate_maps(kspace, method, acs=24)[0]
    inside = disc(h, w, 0.6)
    np.testing.assert_allclose(np.sum(np.abs(est) ** 2, axis=0)[inside], 1.0, atol=1e-4)
    combined = coils.sense_combine_np(ifft2c_np(kspace[0]), est)
    err = np.linalg.norm((np.abs(combined) - np.abs(obj))[inside]) / np.linalg.norm(obj[inside])
    assert err < 1e-3, err  # measured: acs 6e-5, espirit 7e-6; maps of the wrong coils give 0.035
    # and the RSS image is |object| (Σ|S|² = 1 for birdcage maps)
    np.testing.assert_allclose(coils.rss_np(ifft2c_np(kspace[0]))[inside], np.abs(obj)[inside], rtol=1e-4)


def test_bad_map_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="coil_maps must be one of acs, espirit"):
        coils.estimate_maps(np.zeros((1, 2, 8, 8), np.complex64), "bart", 4)
    with pytest.raises(ConfigError, match=r"acs_lines must be in \[1, 8\]"):
        coils.acs_region((8, 8), 9)
    with pytest.raises(ConfigError, match="coils must be >= 1"):
        coils.birdcage_maps(0, 8, 8)


def write_multicoil(path, rng, slices=2, coils_n=6, raw=(48, 40), crop=32):
    """A fully sampled multi-coil file in fastMRI's layout (kspace [S, C, H, W] complex64 on the raw
    grid, reconstruction_rss [S, crop, crop]) of a smooth object inside the crop."""
    import h5py

    obj = np.zeros((slices, *raw), np.complex64)
    top, left = (raw[0] - crop) // 2, (raw[1] - crop) // 2
    for s in range(slices):
        obj[s, top : top + crop, left : left + crop] = smooth_object(rng, crop, crop) * (1 + 0.2 * s)
    maps = coils.birdcage_maps(coils_n, *raw)
    kspace = fft2c_np(maps[None] * obj[:, None]).astype(np.complex64)
    rss = coils.rss_np(ifft2c_np(kspace)[..., top : top + crop, left : left + crop])
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_rss", data=rss)
        f.attrs["acquisition"] = "CORPD_FBK"
    return kspace, obj[:, top : top + crop, left : left + crop], rss


def test_multicoil_fastmri_reader(tmp_path, rng):
    from kerasrecon.data.fastmri import FastMRIFile

    kspace, _, rss = write_multicoil(tmp_path / "file_mc.h5", rng)
    with FastMRIFile(tmp_path / "file_mc.h5", crop=(32, 32)) as f:
        assert (f.multicoil, f.coils, len(f)) == (True, 6, 2)
        coil_images = ifft2c_np(kspace[1])[:, 8:40, 4:36]
        np.testing.assert_allclose(f.image(1), coil_images, atol=1e-5)
        np.testing.assert_allclose(f.kspace(1), fft2c_np(coil_images), atol=1e-4)
        np.testing.assert_allclose(coils.rss_np(f.image(0)), f.reconstruction_rss(0), rtol=1e-5, atol=1e-6)
        assert f.reconstruction_esc(0) is None


@pytest.mark.parametrize("method", ["acs", "espirit"])
def test_prepare_sense_combines_multicoil_files_per_file(tmp_path, rng, method):
    """A folder with a multi-coil and a single-coil fastMRI file: each is prepared on its own; the
    multi-coil volume is the SENSE-combined image (|.| = the object = fastMRI's RSS target inside it),
    with coil k-space and normalised maps stored beside it."""
    import h5py

    from kerasrecon.data import load_volumes
    from kerasrecon.data.images import prepare_dataset
    from tests.test_data import write_fastmri

    if method == "espirit":
        pytest.importorskip("sigpy")
    src = tmp_path / "src"
    src.mkdir()
    _, obj, rss = write_multicoil(src / "a_multi.h5", rng)
    write_fastmri(src / "b_single.h5", rng, shape=(48, 40))
    manifest = prepare_dataset(src, tmp_path / "out", crop=(32, 32), coil_maps=method, acs_lines=16)
    kinds = {v["file"]: (v["kind"], v["shape"], v.get("coils")) for v in manifest["volumes"]}
    assert kinds == {
        "a_multi.h5": ("fastmri-multicoil", [2, 32, 32], 6),
        "b_single.h5": ("fastmri-singlecoil", [2, 32, 32], None),
    }
    vol = load_volumes(str(tmp_path / "out"))[0]
    inside = disc(32, 32, 0.6)
    err = np.linalg.norm((np.abs(vol.images) - np.abs(obj))[:, inside]) / np.linalg.norm(obj[:, inside])
    assert err < 2e-3, err
    np.testing.assert_allclose(np.abs(vol.images)[:, inside], rss[:, inside], rtol=5e-3)
    with h5py.File(tmp_path / "out" / "a_multi.h5") as f:
        assert f["coil_kspace"].shape == f["maps"].shape == (2, 6, 32, 32)
        assert (f.attrs["coils"], f.attrs["coil_maps"], f.attrs["acs_lines"]) == (6, method, 16)
        np.testing.assert_allclose(np.sum(np.abs(f["maps"][()]) ** 2, axis=1)[:, inside], 1.0, atol=1e-4)


def test_multicoil_refusals(tmp_path, rng):
    from kerasrecon.data.images import prepare_dataset
    from kerasrecon.errors import DataError

    write_multicoil(tmp_path / "m.h5", rng)
    with pytest.raises(DataError, match="coil_maps must be one of acs, espirit"):
        prepare_dataset(tmp_path / "m.h5", tmp_path / "out", coil_maps="bart")
    assert not (tmp_path / "out").exists()


def test_espirit_calibration_region_must_hold_its_kernel(rng):
    """ESPIRiT's 6×6 kernel must fit the calibration region, and the region the image: a one-line error
    naming acs_lines, not sigpy's 'negative dimensions' (found by the input fuzzer)."""
    pytest.importorskip("sigpy")
    from kerasrecon.coils import ESPIRIT_KERNEL, estimate_maps

    k = random_complex(rng, (1, 2, 8, 8))
    for acs in (1, ESPIRIT_KERNEL - 1):
        with pytest.raises(ConfigError, match=f"acs_lines {acs}: ESPIRiT's calibration region"):
            estimate_maps(k, "espirit", acs)
    assert np.all(np.isfinite(estimate_maps(k, "espirit", ESPIRIT_KERNEL)))
