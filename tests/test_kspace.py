import itertools

import numpy as np
import pytest

from kerasrecon import kspace as ks
from kerasrecon.errors import DataError
from tests.conftest import random_complex, ref_fft2c, ref_ifft2c

SHAPES = [(1, 8, 8), (2, 7, 9), (3, 16, 5), (1, 33, 32)]


@pytest.mark.parametrize("shape", SHAPES)
def test_tf_fft_matches_numpy(rng, shape):
    x = random_complex(rng, shape)
    np.testing.assert_allclose(ks.fft2c(x).numpy(), ref_fft2c(x), atol=1e-5)
    np.testing.assert_allclose(ks.ifft2c(x).numpy(), ref_ifft2c(x), atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_twins_match_reference(rng, shape):
    x = random_complex(rng, shape)
    np.testing.assert_allclose(ks.fft2c_np(x), ref_fft2c(x), atol=1e-5)
    np.testing.assert_allclose(ks.ifft2c_np(x), ref_ifft2c(x), atol=1e-5)
    assert ks.fft2c_np(x).dtype == np.complex64


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_and_parseval(rng, shape):
    x = random_complex(rng, shape)
    k = ks.fft2c(x)
    np.testing.assert_allclose(ks.ifft2c(k).numpy(), x, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(k.numpy()), np.linalg.norm(x), rtol=1e-5)


@pytest.mark.parametrize("h,w", itertools.product([6, 7], [8, 9]))
def test_dc_sample_is_centred(h, w):
    # A constant image has all its energy at the DC sample, which must sit at (H//2, W//2).
    x = np.ones((1, h, w), np.complex64)
    k = ks.fft2c(x).numpy()[0]
    assert np.unravel_index(np.argmax(np.abs(k)), k.shape) == (h // 2, w // 2)
    np.testing.assert_allclose(abs(k[h // 2, w // 2]), np.sqrt(h * w), rtol=1e-5)


def test_zero_filled_by_hand(rng):
    k = random_complex(rng, (2, 8, 10))
    mask = (rng.random((8, 10)) > 0.5).astype(np.float32)
    expected = ref_ifft2c(k * mask)
    np.testing.assert_allclose(ks.zero_filled(k, mask).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(ks.zero_filled_np(k, mask), expected, atol=1e-5)


def test_channels_round_trip(rng):
    x = random_complex(rng, (2, 5, 7))
    c = ks.to_channels(x)
    assert c.shape == (2, 5, 7, 2) and c.dtype == np.float32
    np.testing.assert_array_equal(c[..., 0], x.real)
    np.testing.assert_array_equal(ks.from_channels(c), x)
    np.testing.assert_allclose(ks.from_channels(ks.to_channels(ks.fft2c(x))).numpy(), ref_fft2c(x), atol=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones((4,), np.complex64), "rank"),
        (np.ones((4, 4), np.float32), "complex"),
        (np.full((4, 4), np.nan, np.complex64), "NaN"),
    ],
)
def test_check_kspace_rejects(bad, match):
    with pytest.raises(DataError, match=match):
        ks.check_kspace(bad)


def test_undersample_rejects_mask_shape_mismatch():
    with pytest.raises(DataError, match="does not match"):
        ks.undersample_np(np.ones((2, 4, 4), np.complex64), np.ones((4, 5)))
