from dataclasses import replace

import numpy as np
import pytest

from kerasrecon.errors import ConfigError
from kerasrecon.masks import EquispacedLineMask, PoissonMask, RandomLineMask, make_mask, mask_hash


@pytest.mark.parametrize("acceleration", [4, 6, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_poisson_achieved_acceleration_within_one_percent(acceleration, seed):
    m = PoissonMask(acceleration)(shape=(444, 448), seed=seed)
    achieved = 444 * 448 / m.array.sum()
    assert abs(achieved - acceleration) / acceleration < 0.01
    assert m.id["achieved_acceleration"] == pytest.approx(achieved, abs=1e-3)


@pytest.mark.parametrize("shape", [(32, 32), (96, 96), (65, 47)])
@pytest.mark.parametrize("acceleration", [2.5, 4, 8])
def test_poisson_small_shapes(shape, acceleration):
    m = PoissonMask(acceleration)(shape=shape, seed=3)
    assert abs(shape[0] * shape[1] / m.array.sum() - acceleration) / acceleration < 0.01
    assert set(np.unique(m.array)) <= {0.0, 1.0} and m.array.dtype == np.float32


def test_poisson_reproducible_and_seed_dependent():
    a = PoissonMask(6)(shape=(100, 120), seed=5)
    b = PoissonMask(6)(shape=(100, 120), seed=5)
    c = PoissonMask(6)(shape=(100, 120), seed=6)
    np.testing.assert_array_equal(a.array, b.array)
    assert a.sha256 == b.sha256 != c.sha256


# Masks drawn by earlier versions: results, model cards and checkpoints name masks by (kind, R, shape,
# seed), so the same arguments must keep giving the same bits.
@pytest.mark.parametrize(
    "args, sha",
    [
        (("poisson", 4, (370, 301), 0), "556463f04442c8baa738f1697b566b5e56ff04411f3a1334270f65970e3491bd"),
        (("poisson", 8, (64, 64), 3), "c5747e241f813d55b229e2536491878d7ba01ac5b4b0cdb7fd82dccc38230ae9"),
        (("poisson", 6, (444, 448), 1), "29dba1d09a729f6977ac176d45c3025f96d31041b2652f0fd0c5cf0e2f0172d9"),
    ],
)
def test_poisson_masks_are_the_ones_earlier_versions_drew(args, sha):
    assert make_mask(*args).sha256 == sha


def _rsa_point_by_point(h, w, order, radius, calib):
    """Random sequential adsorption written from its definition: visit the points in ``order``; accept a
    point unless it lies strictly inside the exclusion disc of an accepted point, the disc's radius being
    that point's ``radius`` rounded to 1/4 pixel (half to even)."""
    accepted = calib.copy()
    yy, xx = np.mgrid[:h, :w]
    covered = np.zeros((h, w), bool)
    for y, x in zip(*np.nonzero(calib)):
        covered |= (yy - y) ** 2 + (xx - x) ** 2 < (np.round(radius[y, x] * 4) / 4) ** 2
    for idx in order:
        y, x = divmod(int(idx), w)
        if accepted[y, x] or covered[y, x]:
            continue
        accepted[y, x] = True
        covered |= (yy - y) ** 2 + (xx - x) ** 2 < (np.round(radius[y, x] * 4) / 4) ** 2
    return accepted


@pytest.mark.parametrize("shape, scale", [((40, 33), 1.3), ((24, 24), 0.4), ((31, 50), 2.6)])
def test_rsa_equals_the_point_by_point_definition(shape, scale):
    from kerasrecon.masks import _centre_box, _normalised_radius, _rsa

    h, w = shape
    rng = np.random.default_rng(h * w)
    order = rng.permutation(h * w)
    radius = scale * (1 + 2 * _normalised_radius(h, w))
    calib = _centre_box(h, w, 0.1)
    got = _rsa(h, w, order, radius, calib)
    np.testing.assert_array_equal(got, _rsa_point_by_point(h, w, order, radius, calib))
    assert calib.sum() < got.sum() < h * w


def test_make_mask_again_gives_the_same_mask_in_an_array_of_its_own():
    a = make_mask("poisson", 4, (48, 40), 2)
    expected = PoissonMask(4)(shape=(48, 40), seed=2)
    a.array[:] = 0  # a caller writing into its mask changes nobody else's
    b = make_mask("poisson", 4.0, [48, 40], 2)
    np.testing.assert_array_equal(b.array, expected.array)
    assert b == replace(expected, array=b.array) and b.array is not a.array
    np.testing.assert_array_equal(
        make_mask("random", 4, (8, 40), 2).array, RandomLineMask(4)(shape=(8, 40), seed=2).array
    )


def test_poisson_does_not_touch_global_rng():
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    PoissonMask(4)(shape=(64, 64), seed=1)
    assert np.random.random() == before


def test_poisson_variable_density_and_calibration():
    m = PoissonMask(6)(shape=(200, 200), seed=0).array
    yy, xx = np.mgrid[:200, :200]
    r = np.hypot(yy - 100, xx - 100) / 100
    assert m[r < 0.1].mean() == 1.0  # fully sampled centre
    assert m[r < 0.3].mean() > 2 * m[(r > 0.7) & (r < 1.0)].mean()  # denser near the centre
    # Poisson-disc: away from the centre no two samples are 4-neighbours.
    outer = (m > 0) & (r > 0.6)
    assert not np.any(outer[1:, :] & outer[:-1, :]) and not np.any(outer[:, 1:] & outer[:, :-1])


@pytest.mark.parametrize("cls, kind", [(RandomLineMask, "random"), (EquispacedLineMask, "equispaced")])
@pytest.mark.parametrize("acceleration", [4, 8])
def test_line_masks(cls, kind, acceleration):
    m = cls(acceleration)(shape=(10, 368), seed=0)
    cols = m.array[0]
    assert (m.array == cols[None]).all()  # whole phase-encode lines
    assert cols.sum() == round(368 / acceleration)
    n_low = round(368 * 0.08)
    start = (368 - n_low + 1) // 2
    assert cols[start : start + n_low].all()
    assert m.kind == kind


def test_mask_id_fields():
    m = make_mask("random", 4, (16, 40), 9)
    assert m.id == {
        "mask_kind": "random",
        "acceleration": 4.0,
        "center_fraction": 0.08,
        "achieved_acceleration": 4.0,
        "mask_seed": 9,
        "mask_shape": [16, 40],
        "mask_sha256": mask_hash(m.array),
    }
    import hashlib

    expected = hashlib.sha256(b"(16, 40)" + (m.array > 0.5).astype(np.uint8).tobytes()).hexdigest()
    assert m.sha256 == expected


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="poisson", acceleration=0.5, shape=(32, 32), seed=0), "acceleration must be"),
        (dict(kind="poisson", acceleration=400, shape=(32, 32), seed=0), "too high"),
        (dict(kind="random", acceleration=40, shape=(32, 32), seed=0), "too high"),
        (dict(kind="spiral", acceleration=4, shape=(32, 32), seed=0), "unknown mask kind"),
        (dict(kind="poisson", acceleration=4, shape=(32,), seed=0), "shape"),
        (dict(kind="poisson", acceleration=4, shape=(32, 32), seed=-1), "seed"),
    ],
)
def test_mask_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_mask(**kwargs)


@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_center_fraction_sets_the_fully_sampled_centre(kind):
    """fastMRI's R = 8 setting: 4 % of the 368 columns (15) fully sampled at the centre, exact R kept."""
    m = make_mask(kind, 8, (16, 368), 0, center_fraction=0.04)
    cols = m.array[0].astype(bool)
    n_low = int(round(368 * 0.04))
    start = (368 - n_low + 1) // 2
    assert n_low == 15 and cols[start : start + n_low].all() and cols.sum() == round(368 / 8)
    assert m.id["center_fraction"] == 0.04 and make_mask(kind, 8, (16, 368), 0).id["center_fraction"] == 0.08
    assert not np.array_equal(m.array, make_mask(kind, 8, (16, 368), 0).array)


def test_center_fraction_sizes_the_poisson_calibration_square():
    m = make_mask("poisson", 4, (64, 64), 0, center_fraction=0.25)
    assert m.array[24:40, 24:40].all() and m.id["center_fraction"] == 0.25  # 16×16 centre square
    with pytest.raises(ConfigError, match="center_fraction must be in"):
        make_mask("random", 4, (16, 40), 0, center_fraction=1.5)
