"""Coil sensitivities and multi-coil data consistency, against NumPy references and sigpy."""

import numpy as np
import pytest

from kerasrecon import coils
from kerasrecon.errors import ConfigError
from kerasrecon.kspace import fft2c_np, ifft2c_np
from tests.conftest import random_complex


def disc(h, w, r=0.7):
    y, x = np.mgrid[:h, :w]
    return (((y - h / 2) / (h / 2)) ** 2 + ((x - w / 2) / (w / 2)) ** 2) < r ** 2


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
    with pytest.raises(ConfigError, match="--coil-maps must be one of espirit, acs"):
        coils.estimate_maps(np.zeros((1, 2, 8, 8), np.complex64), "bart", 4)
    with pytest.raises(ConfigError, match=r"--acs-lines must be in \[1, 8\]"):
        coils.acs_region((8, 8), 9)
    with pytest.raises(ConfigError, match="--coils must be >= 1"):
        coils.birdcage_maps(0, 8, 8)
