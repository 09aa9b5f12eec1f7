import itertools

import numpy as np
import pytest

from kerasrecon import kspace as ks
from kerasrecon.errors import DataError
from tests.conftest import centred_dft_matrix, random_complex, ref_fft2c, ref_ifft2c

SHAPES = [(1, 8, 8), (2, 7, 9), (3, 16, 5), (1, 33, 32)]


def test_reference_dft_by_hand():
    # The tests' reference itself, on cases computed by hand: n = 2 (DC at index 1, centred indices
    # -1, 0) is [[e^{-iπ}, 1], [1, 1]] / √2; a centred delta has a flat spectrum; a constant image has
    # only a DC sample.
    np.testing.assert_allclose(centred_dft_matrix(2), np.array([[-1, 1], [1, 1]]) / np.sqrt(2), atol=1e-15)
    delta = np.zeros((5, 4))
    delta[2, 2] = 1
    np.testing.assert_allclose(ref_fft2c(delta), np.full((5, 4), 1 / np.sqrt(20)), atol=1e-15)
    k = ref_fft2c(np.ones((5, 4)))
    np.testing.assert_allclose(k[2, 2], np.sqrt(20), atol=1e-12)
    assert np.count_nonzero(np.abs(k) > 1e-12) == 1
    f = centred_dft_matrix(7)
    np.testing.assert_allclose(f @ centred_dft_matrix(7, inverse=True), np.eye(7), atol=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_twins_match_reference(rng, shape):
    x = random_complex(rng, shape)
    np.testing.assert_allclose(ks.fft2c_np(x), ref_fft2c(x), atol=1e-5)
    np.testing.assert_allclose(ks.ifft2c_np(x), ref_ifft2c(x), atol=1e-5)
    assert ks.fft2c_np(x).dtype == np.complex64


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_and_parseval(rng, shape):
    x = random_complex(rng, shape)
    k = ks.fft2c_np(x)
    np.testing.assert_allclose(ks.ifft2c_np(k), x, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(k), np.linalg.norm(x), rtol=1e-5)


@pytest.mark.parametrize("h,w", itertools.product([6, 7], [8, 9]))
def test_dc_sample_is_centred(h, w):
    # A constant image has all its energy at the DC sample, which must sit at (H//2, W//2).
    x = np.ones((1, h, w), np.complex64)
    k = ks.fft2c_np(x)[0]
    assert np.unravel_index(np.argmax(np.abs(k)), k.shape) == (h // 2, w // 2)
    np.testing.assert_allclose(abs(k[h // 2, w // 2]), np.sqrt(h * w), rtol=1e-5)


def test_zero_filled_by_hand(rng):
    k = random_complex(rng, (2, 8, 10))
    mask = (rng.random((8, 10)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(ks.zero_filled_np(k, mask), ref_ifft2c(k * mask), atol=1e-5)


def test_channels_round_trip(rng):
    x = random_complex(rng, (2, 5, 7))
    c = ks.to_channels(x)
    assert c.shape == (2, 5, 7, 2) and c.dtype == np.float32
    np.testing.assert_array_equal(c[..., 0], x.real)
    np.testing.assert_array_equal(c[..., 1], x.imag)
    np.testing.assert_array_equal(ks.from_channels(c), x)
    with pytest.raises(DataError, match="2 channels"):
        ks.from_channels(np.ones((4, 3)))


def test_model_inputs_by_hand(rng):
    # Two slices whose zero-filled peaks are known: inputs are scaled so each peaks at 1, the k-space
    # by the same factor, and the scale is 1 / peak.
    k = random_complex(rng, (2, 8, 6))
    mask = (rng.random((8, 6)) > 0.4).astype(np.float32)
    zf = ref_ifft2c(k * mask)
    peaks = np.abs(zf).reshape(2, -1).max(axis=1)
    inputs, scale = ks.model_inputs_np(k, mask)
    np.testing.assert_allclose(scale, 1 / peaks, rtol=1e-5)
    np.testing.assert_allclose(ks.from_channels(inputs["zero_filled"]), zf / peaks[:, None, None], atol=1e-5)
    np.testing.assert_allclose(ks.from_channels(inputs["masked_kspace"]), k * mask / peaks[:, None, None], atol=1e-5)
    np.testing.assert_array_equal(inputs["mask"], mask)
    assert set(inputs) == {"zero_filled", "masked_kspace", "mask"}


def test_model_inputs_multicoil_by_hand(rng):
    # Coils: the zero-filled input is Σ_c conj(S_c) Fᴴ(M ⊙ y_c), written out with the reference DFT.
    k = random_complex(rng, (2, 3, 6, 5))
    maps = random_complex(rng, (2, 3, 6, 5))
    mask = (rng.random((2, 6, 5)) > 0.4).astype(np.float32)
    zf = np.sum(np.conj(maps) * ref_ifft2c(k * mask[:, None]), axis=1)
    peaks = np.abs(zf).reshape(2, -1).max(axis=1)
    inputs, scale = ks.model_inputs_np(k, mask, maps)
    np.testing.assert_allclose(ks.from_channels(inputs["zero_filled"]), zf / peaks[:, None, None], atol=1e-5)
    np.testing.assert_allclose(
        ks.from_channels(inputs["masked_kspace"]), k * mask[:, None] / peaks[:, None, None, None], atol=1e-5
    )
    np.testing.assert_array_equal(ks.from_channels(inputs["maps"]), maps.astype(np.complex64))


def test_per_slice_broadcasts_over_leading_axis():
    x = np.ones((3, 2, 2, 2))
    np.testing.assert_array_equal((x * ks.per_slice([1, 2, 3], 4))[:, 1, 1, 1], [1, 2, 3])


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


def _mirror_by_index(x, axis):
    """Reference mirror about the centred grid's origin: position p = n - N // 2 goes to -p."""
    n = x.shape[axis]
    return np.take(x, (2 * (n // 2) - np.arange(n)) % n, axis=axis)


@pytest.mark.parametrize("shape", [(6, 8), (7, 5), (2, 5, 6)])
def test_dihedral_transforms_are_exact_acquisitions_of_the_transformed_image(shape):
    """Each of the 8 transforms, applied to an image, equals the same transform of its k-space (the
    independent DFT of conftest), and the inverse undoes it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    for t in range(8):
        expected = x
        if t & 1:
            expected = _mirror_by_index(expected, -2)
        if t & 2:
            expected = _mirror_by_index(expected, -1)
        if t & 4:
            expected = np.swapaxes(expected, -1, -2)
        got = ks.dihedral_np(x, t)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_allclose(ref_fft2c(got), ks.dihedral_np(ref_fft2c(x), t), atol=1e-12)
        np.testing.assert_array_equal(ks.dihedral_np(got, t, inverse=True), x)
