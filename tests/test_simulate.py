"""Realistic simulation: phase smooth and seeded, noise at the stated σ, k-space crop keeps intensities."""

import json

import h5py
import numpy as np
import pytest

from kerasrecon.data.images import prepare_dataset
from kerasrecon.data.simulate import Simulation, simulate_kspace
from kerasrecon.errors import DataError
from tests.conftest import ref_fft2c, ref_ifft2c


def flat(shape=(2, 64, 48), value=0.5):
    return np.full(shape, value, np.float32)


def test_default_is_the_plain_fft():
    x = np.random.default_rng(0).random((2, 16, 12)).astype(np.float32)
    np.testing.assert_allclose(simulate_kspace(x, Simulation()), ref_fft2c(x), atol=1e-5)
    assert not Simulation().active


def test_smooth_phase_keeps_magnitude_and_is_smooth_and_seeded():
    x = flat()
    k = simulate_kspace(x, Simulation(phase="smooth", seed=3), volume_index=1)
    img = ref_ifft2c(k)
    np.testing.assert_allclose(np.abs(img), x, atol=1e-5)
    phase = np.angle(img[0])
    assert np.ptp(phase) > 2.0  # most of the 2π range is used
    # Smooth: neighbouring pixels differ (wrap-free difference) by far less than the range.
    step = np.angle(img[0, 1:] * np.conj(img[0, :-1]))
    assert np.abs(step).max() < 0.6  # white noise over 2π: steps ~2 rad
    same = simulate_kspace(x, Simulation(phase="smooth", seed=3), volume_index=1)
    other = simulate_kspace(x, Simulation(phase="smooth", seed=3), volume_index=2)
    np.testing.assert_array_equal(k, same)
    assert not np.allclose(k, other)


def test_noise_has_the_stated_sigma_in_image_and_kspace():
    x = flat((4, 64, 64), 2.0)  # max 2 -> σ = 0.01 · 2
    k = simulate_kspace(x, Simulation(noise=0.01))
    n = k - ref_fft2c(x)
    assert np.sqrt(np.mean(np.abs(n) ** 2)) == pytest.approx(0.02, rel=0.03)
    assert abs(np.mean(n.real * n.imag)) < 1e-5  # circular: real and imaginary parts uncorrelated
    img_noise = ref_ifft2c(k) - x
    assert np.sqrt(np.mean(np.abs(img_noise) ** 2)) == pytest.approx(0.02, rel=0.03)


def test_kspace_crop_keeps_intensity_and_band_limits():
    yy, xx = np.mgrid[:64, :64]
    x = (0.5 + 0.3 * np.cos(2 * np.pi * 3 * xx / 64))[None].astype(np.float32)  # 3 cycles: inside a 32 crop
    k = simulate_kspace(x, Simulation(kspace_crop=(32, 32)))
    assert k.shape == (1, 32, 32)
    small = ref_ifft2c(k).real[0]
    expected = 0.5 + 0.3 * np.cos(2 * np.pi * 3 * np.arange(32) / 32)
    np.testing.assert_allclose(small, np.broadcast_to(expected, (32, 32)), atol=1e-5)


@pytest.mark.slow
def test_prepare_demo_with_simulation(tmp_path):
    sim = Simulation(phase="smooth", noise=0.01, kspace_crop=(64, 64), seed=1)
    manifest = prepare_dataset("demo", tmp_path / "d", simulation=sim)
    assert manifest["simulation"]["noise"] == 0.01 and manifest["simulation"]["kspace_crop"] == [64, 64]
    (vol,) = manifest["volumes"]
    assert vol["kind"] == "magnitude-images+simulated" and vol["shape"] == [60, 64, 64]
    with h5py.File(tmp_path / "d" / vol["file"]) as f:
        k = f["kspace"][()]
    assert k.shape == (60, 64, 64) and np.iscomplexobj(k)
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["simulation"]["phase"] == "smooth"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(phase="wild"), "simulation.phase must"),
        (dict(noise=-1.0), "simulation.noise must"),
        (dict(noise=float("nan")), "simulation.noise must"),
        (dict(kspace_crop=(4, 4)), "simulation.kspace_crop: expected"),
        (dict(phase_range=0.0), "simulation.phase_range must"),
    ],
)
def test_bad_simulation_settings(kwargs, match):
    with pytest.raises(DataError, match=match):
        Simulation(**kwargs)


def test_kspace_crop_larger_than_image(tmp_path):
    np.save(tmp_path / "v.npy", flat((1, 16, 16)))
    with pytest.raises(DataError, match="simulation.kspace_crop 32 32 is larger"):
        prepare_dataset(tmp_path / "v.npy", tmp_path / "out", simulation=Simulation(kspace_crop=(32, 32)))
    assert not (tmp_path / "out").exists()
