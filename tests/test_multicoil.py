"""Multi-coil end to end: simulated coils at `data prepare`, SENSE-combined training inputs (NumPy and
tf.data alike), multi-coil data consistency in the generator and in `Reconstructor`, SENSE-CS baselines."""

from pathlib import Path

import numpy as np
import pytest

from kerasrecon import coils
from kerasrecon.config import DataConfig, LossConfig, MaskConfig, ModelConfig, TrainConfig
from kerasrecon.data import load_volumes
from kerasrecon.data.images import prepare_dataset
from kerasrecon.data.simulate import Simulation
from kerasrecon.errors import DataError
from kerasrecon.kspace import fft2c_np, ifft2c_np
from kerasrecon.masks import make_mask


def ref_map_phase(masked_kspace, maps=None, window=0.1, support=None):
    """NumPy reference of the maps' convention: the unit phase of the SENSE combination of the coil
    images of Gaussian-windowed k-space (σ = window · side around DC), 0 where their RSS is at most
    ``support`` of its peak; complex ``[S, C, H, W]`` -> complex128 ``[S, H, W]``."""
    masked_kspace = np.asarray(masked_kspace, np.complex128)
    maps = np.ones_like(masked_kspace) if maps is None else np.asarray(maps, np.complex128)
    h, w = masked_kspace.shape[-2:]
    gy = np.exp(-0.5 * ((np.arange(h) - h // 2) / (window * h)) ** 2)
    gx = np.exp(-0.5 * ((np.arange(w) - w // 2) / (window * w)) ** 2)
    coil_low = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(masked_kspace * np.outer(gy, gx), axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    low = np.sum(np.conj(maps) * coil_low, axis=-3)
    size = np.abs(low)
    keep = size > 1e-6 * size.max(axis=(-2, -1), keepdims=True)
    u = np.where(keep, low / np.where(keep, size, 1), 1)
    if support is not None:
        rss = np.sqrt(np.sum(np.abs(coil_low) ** 2, axis=-3))
        u = u * (rss > support * rss.max(axis=(-2, -1), keepdims=True))
    return u


def cfg(**kw):
    base = dict(
        data=DataConfig(patch_size=16, batch_size=2, sampling="slice", val_fraction=0.0),
        model=ModelConfig(blocks=1, filters=8),
        loss=LossConfig(content="mse", vgg_weights="none"),
        mask=MaskConfig(kind="random", acceleration=4),
        seed=3,
        precision="float32",
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def multicoil_dir(tmp_path_factory):
    """Two 4-slice volumes of a smooth disc phantom measured through 4 simulated coils (noise 0.005)."""
    root = tmp_path_factory.mktemp("mc")
    y, x = np.mgrid[:32, :28] / np.array([32.0, 28.0])[:, None, None]  # not square: H and W stay apart
    disc = ((y - 0.5) ** 2 + (x - 0.5) ** 2) < 0.35**2
    for v in range(2):
        imgs = np.stack([disc * (1 + 0.3 * np.sin(6 * x + s + v)) for s in range(4)]).astype(np.float32)
        np.save(root / f"vol{v}.npy", imgs)
    out = tmp_path_factory.mktemp("mc_prepared") / "prepared"  # beside SRC: an output inside it is refused
    prepare_dataset(root, out, simulation=Simulation(noise=0.005, coils=4), coil_maps="acs", acs_lines=8)
    return out, disc


def test_prepare_simulated_coils(multicoil_dir):
    out, disc = multicoil_dir
    vols = load_volumes(str(out))
    assert [v.coils for v in vols] == [4, 4] and vols[0].coil_kspace.shape == (4, 4, 32, 28)
    src = np.load(Path(load_volumes(str(out))[0].source))
    src = src / src.max()
    inside = disc & (np.abs(vols[0].maps).sum(1)[0] > 0)
    err = np.linalg.norm((np.abs(vols[0].images) - src)[:, inside]) / np.linalg.norm(src[:, inside])
    assert err < 0.03, err  # noise 0.005 per coil, maps from 8 ACS lines
    # fully sampled, the SENSE zero-filled image is the volume's image
    np.testing.assert_allclose(vols[0].zero_filled(np.ones((32, 28))), vols[0].images, atol=1e-5)


def test_training_inputs_are_sense_zero_filled_windows(multicoil_dir):
    from kerasrecon.data.pipeline import numpy_batches, sampling_plan, training_dataset

    vols = load_volumes(str(multicoil_dir[0]))
    c = cfg()
    plan = sampling_plan(vols, c)
    assert (len(plan), plan.coils, plan.h, plan.w) == (8, 4, 32, 28) and not plan.exact_dc
    inputs, target = next(numpy_batches(vols, c))
    tf_inputs, tf_target = next(iter(training_dataset(vols, c)))
    np.testing.assert_allclose(tf_inputs["zero_filled"].numpy(), inputs["zero_filled"], atol=1e-5)
    np.testing.assert_allclose(tf_target.numpy(), target, atol=1e-6)
    assert not inputs["mask"].any() and not inputs["masked_kspace"].any()  # DC is the identity on windows
    # element 0 by hand: slice s, window (top, left), mask m of the plan
    from kerasrecon.data.pipeline import element_indices

    s, top, left, m = element_indices(plan, 0)
    zf = np.sum(np.conj(plan.maps(s)) * ifft2c_np(plan.coil_kspace(s) * plan.mask(m)), axis=0)
    window = zf[top : top + 16, left : left + 16]
    np.testing.assert_allclose(inputs["zero_filled"][0], np.stack([window.real, window.imag], -1), atol=1e-5)


def test_patch_inputs_are_coils_measured_on_the_patch_grid(multicoil_dir):
    """--sampling patch: the window's coil images S_c·crop measured on the p×p grid (exact DC in
    training), by hand with numpy.fft; tf.data and NumPy alike; the generator is the multi-coil graph."""
    from kerasrecon.data.pipeline import coil_inputs, element_indices, numpy_batches, sampling_plan, training_dataset

    vols = load_volumes(str(multicoil_dir[0]))
    c = cfg(data=DataConfig(patch_size=16, batch_size=2, sampling="patch", val_fraction=0.0))
    assert coil_inputs(vols, c) and not coil_inputs(vols, cfg())  # slice windows smaller than the slice: no
    plan = sampling_plan(vols, c)
    assert plan.coil_inputs and not plan.whole_slice
    inputs, target = next(numpy_batches(vols, c))
    assert inputs["masked_kspace"].shape == inputs["maps"].shape == (2, 4, 16, 16, 2)
    tf_inputs, tf_target = next(iter(training_dataset(vols, c)))
    for k in inputs:
        np.testing.assert_allclose(tf_inputs[k].numpy(), inputs[k], atol=1e-5, err_msg=k)
    np.testing.assert_allclose(tf_target.numpy(), target, atol=1e-6)
    for j in range(2):  # element j by hand
        s, top, left, m = element_indices(plan, j)
        crop = plan.target(s)[top : top + 16, left : left + 16]
        maps = plan.maps(s)[:, top : top + 16, left : left + 16]
        mask = plan.mask(m)
        assert mask.shape == (16, 16)
        zf = np.zeros((16, 16), complex)
        for coil in range(4):
            y = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(maps[coil] * crop), norm="ortho")) * mask
            np.testing.assert_allclose(inputs["masked_kspace"][j, coil], np.stack([y.real, y.imag], -1), atol=1e-5)
            zf += np.conj(maps[coil]) * np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(y), norm="ortho"))
        np.testing.assert_allclose(inputs["zero_filled"][j], np.stack([zf.real, zf.imag], -1), atol=1e-5)
        np.testing.assert_allclose(inputs["maps"][j], np.stack([maps.real, maps.imag], -1))
        np.testing.assert_allclose(target[j, ..., 0], np.abs(crop), atol=1e-6)


@pytest.mark.slow
def test_multicoil_patch_fit_loads_into_both_graphs(multicoil_dir, tmp_path):
    """A multi-coil patch run trains the multi-coil graph; its checkpoint loads into the single-coil
    graph (evaluation, export) with the same weights, and the run resumes."""
    import dataclasses

    from kerasrecon.training import checkpoint as ckpt
    from kerasrecon.training.trainer import build_gan, train

    c = cfg(
        data=DataConfig(data=str(multicoil_dir[0]), patch_size=16, batch_size=2, sampling="patch", val_fraction=0.5),
        steps=2,
        pretrain_steps=1,
        checkpoint_every=3,
        log_every=1,
    )
    r1 = train(c, tmp_path / "run")
    assert "maps" in r1.gan.generator.input and r1.step == 3
    single = build_gan(c)
    assert "maps" not in single.generator.input
    ckpt.restore_latest(tmp_path / "run", single)
    for a, b in zip(r1.gan.generator.weights, single.generator.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    r2 = train(dataclasses.replace(c, steps=4), tmp_path / "run", force=True)
    assert (r2.start_step, r2.step) == (3, 5)


def test_multicoil_training_refusals(multicoil_dir, tmp_path):
    from kerasrecon.data.pipeline import sampling_plan

    vols = load_volumes(str(multicoil_dir[0]))
    single = vols[0].slices(slice(0, 4))
    single = type(single)("single", single.kspace)
    with pytest.raises(DataError, match="mix coil counts"):
        sampling_plan([vols[0], single], cfg())


def test_untrained_multicoil_generator_is_sense_dc_of_its_input(rng):
    """Zero-initialised output conv: the multi-coil graph returns Σ conj(S) Fᴴ[(1 - M) F(S zf) + M y]."""
    from kerasrecon.models.generator import build_generator

    b, c, h, w = 2, 3, 16, 12
    maps = np.stack([coils.birdcage_maps(c, h, w)] * b)
    y = (rng.standard_normal((b, c, h, w)) + 1j * rng.standard_normal((b, c, h, w))).astype(np.complex64)
    mask = np.stack([make_mask("random", 3, (h, w), i).array for i in range(b)]).astype(np.float32)
    y = y * mask[:, None]
    zf = np.sum(np.conj(maps) * ifft2c_np(y), axis=1)
    k = fft2c_np(maps * zf[:, None])
    ref = np.sum(np.conj(maps) * ifft2c_np((1 - mask[:, None]) * k + mask[:, None] * y), axis=1)
    ch = lambda z: np.stack([z.real, z.imag], -1).astype(np.float32)  # noqa: E731
    g = build_generator(blocks=1, filters=4, multicoil=True)
    out = np.asarray(g({"zero_filled": ch(zf), "masked_kspace": ch(y), "mask": mask, "maps": ch(maps)}))
    np.testing.assert_allclose(out[..., 0] + 1j * out[..., 1], ref, atol=1e-5)


def test_map_phase_is_the_low_resolution_sense_phase(rng):
    """``kspace.map_phase_ch`` against the NumPy reference; the turned maps' low-resolution SENSE image
    is real and non-negative."""
    from kerasrecon.kspace import map_phase_ch

    b, c, h, w = 2, 3, 20, 14
    maps = np.stack([coils.birdcage_maps(c, h, w)] * b) * np.exp(1j * rng.uniform(0, 6, (b, 1, h, w)))
    y = fft2c_np(maps * (1 + rng.standard_normal((b, 1, h, w)) + 1j * rng.standard_normal((b, 1, h, w))))
    y = y * np.stack([make_mask("random", 2, (h, w), i).array for i in range(b)])[:, None]
    ch = lambda z: np.stack([z.real, z.imag], -1).astype(np.float32)  # noqa: E731
    u = np.asarray(map_phase_ch(ch(y), ch(maps)))
    ref = ref_map_phase(y, maps)
    np.testing.assert_allclose(u[..., 0] + 1j * u[..., 1], ref, atol=1e-4)
    low = ref_map_phase(y, maps * ref[:, None])
    np.testing.assert_allclose(low, np.ones_like(low), atol=1e-4)
    # with a support: 0 where the windowed coil images' RSS is at most 30 % of its peak
    u = np.asarray(map_phase_ch(ch(y), ch(maps), support=0.3))
    ref = ref_map_phase(y, maps, support=0.3)
    assert 0.1 < np.mean(ref == 0) < 0.9
    np.testing.assert_allclose(u[..., 0] + 1j * u[..., 1], ref, atol=1e-4)


def test_model_output_does_not_depend_on_the_maps_phase(rng):
    """Maps S and S e^{iθ} fit the same data; the SENSE image turns by e^{-iθ}. With trained-like (random,
    non-zero) weights the multi-coil graph returns exactly that turned image for a constant θ and the
    same magnitude, and to within the window's resolution for a smooth θ."""
    from kerasrecon.models.generator import build_generator

    b, c, h, w = 2, 4, 24, 24
    g = build_generator(blocks=1, filters=4, multicoil=True)
    g.get_layer("g_conv_out").set_weights(
        [rng.standard_normal(v.shape).astype(np.float32) * 0.1 for v in g.get_layer("g_conv_out").weights]
    )
    yy, xx = np.mgrid[:h, :w] / h
    image = (np.exp(-((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.1) * np.exp(1j * 2 * xx))[None]
    maps = np.stack([coils.birdcage_maps(c, h, w)] * b)
    mask = np.stack([make_mask("random", 2, (h, w), i).array for i in range(b)]).astype(np.float32)
    y = fft2c_np(maps * image[:, None]) * mask[:, None]
    ch = lambda z: np.stack([z.real, z.imag], -1).astype(np.float32)  # noqa: E731

    def run(m):
        zf = np.sum(np.conj(m) * ifft2c_np(y), axis=1)
        out = np.asarray(g({"zero_filled": ch(zf), "masked_kspace": ch(y), "mask": mask, "maps": ch(m)}))
        return out[..., 0] + 1j * out[..., 1]

    base = run(maps)
    assert np.abs(base).max() > 0.1
    turned = run(maps * np.exp(1.3j))
    np.testing.assert_allclose(turned, base * np.exp(-1.3j), atol=1e-5)
    smooth = run(maps * np.exp(1j * (0.5 + 1.5 * yy - xx)))
    assert np.max(np.abs(np.abs(smooth) - np.abs(base))) < 0.05 * np.abs(base).max()


@pytest.fixture(scope="module")
def fastmri_multicoil_dir(tmp_path_factory):
    """Two multi-coil files in fastMRI's layout (4 slices, 4 coils, raw 48x40), prepared on a 32x32 grid."""
    from tests.test_coils import write_multicoil

    root = tmp_path_factory.mktemp("fastmri_mc")
    (root / "raw").mkdir()
    rng = np.random.default_rng(7)
    for name in ("file_a", "file_b"):
        write_multicoil(root / "raw" / f"{name}.h5", rng, slices=4, coils_n=4, raw=(48, 40), crop=32)
    prepare_dataset(root / "raw", root / "prepared", crop=(32, 32), coil_maps="acs", acs_lines=8)
    return root


@pytest.mark.slow
def test_fit_evaluate_multicoil_with_sense_baselines(fastmri_multicoil_dir, tmp_path):
    """fastMRI multi-coil files through data prepare -> fit -> evaluate (multi-coil DC beside zero-filled
    and SENSE-TV, same masks) -> export -> reconstruct, with no conversion; one coil with S = 1
    through the multi-coil path equals the single-coil path."""
    pytest.importorskip("sigpy")
    from kerasrecon.api import Reconstructor
    from kerasrecon.evaluate import evaluate_run
    from kerasrecon.training.trainer import train

    prepared = fastmri_multicoil_dir / "prepared"
    c = cfg(
        data=DataConfig(data=str(prepared), patch_size=16, batch_size=2, sampling="slice", val_fraction=0.5),
        steps=4,
        pretrain_steps=2,
        checkpoint_every=2,
        log_every=1,
    )
    train(c, tmp_path / "run")
    res = evaluate_run(tmp_path / "run", baselines=["tv"], baseline_grid=[0.01])
    assert set(res.summary) == {"mse", "zero_filled", "tv"}
    psnr = {m: res.summary[m]["over_slices"]["psnr"]["mean"] for m in res.summary}
    assert psnr["tv"] > psnr["zero_filled"] + 1, psnr
    rec = Reconstructor.from_run(tmp_path / "run")
    vol = load_volumes(str(prepared))[1]
    mask = make_mask("random", 4, (32, 32), 0).array
    # one coil through the multi-coil graph: S = 1 and S = the low-resolution phase of the data (NumPy)
    # are one map in two phase conventions, so they give the same image
    measured_one = (vol.kspace * mask)[:, None]
    via_coils = rec(measured_one, mask, maps=np.ones((4, 1, 32, 32), np.complex64))
    turned = rec(measured_one, mask, maps=ref_map_phase(measured_one)[:, None].astype(np.complex64))
    np.testing.assert_allclose(turned, via_coils, rtol=1e-4, atol=1e-5 * via_coils.max())
    assert np.isfinite(via_coils).all() and via_coils.shape == (4, 32, 32)
    multi = rec(vol.measured(mask), mask, maps=vol.maps)
    assert multi.shape == (4, 32, 32) and np.isfinite(multi).all()
    # the export's multicoil signature: maps from the sampled centre in the graph, same network
    from kerasrecon.coils import acs_maps_np
    from kerasrecon.export import export_run
    from kerasrecon.reconstruct import reconstruct_files, run_serving

    export_run(tmp_path / "run", tmp_path / "export")
    from kerasrecon.export import load_export

    loaded, _ = load_export(tmp_path / "export")
    measured = vol.measured(mask)
    served = run_serving(loaded.signatures["multicoil"], measured, mask, name="test")
    maps = acs_maps_np(measured, acs=4)  # max(4, round(0.08 * 32)) centre columns
    np.testing.assert_allclose(served, rec(measured, mask, maps=maps), rtol=1e-3, atol=1e-4)
    # and reconstruct reads the raw fastMRI file and writes fastMRI's layout
    import h5py

    raw = fastmri_multicoil_dir / "raw" / "file_b.h5"
    (out,) = reconstruct_files(tmp_path / "export", raw, tmp_path / "file_b.h5", crop=(32, 32))
    with h5py.File(out) as f:
        assert f["reconstruction"].shape == (4, 32, 32) and np.isfinite(f["reconstruction"][()]).all()


def test_score_multicoil_outputs_with_fastmri_evaluate(tmp_path, rng):
    """`score` on a multi-coil target (reconstruction_rss) agrees with fastMRI's own evaluation
    functions to 1e-4. Runs where the `fastmri` package is importable (it needs PyTorch; not a
    dependency here): our metric formulas are otherwise checked against NumPy/skimage in test_metrics."""
    fm = pytest.importorskip("fastmri.evaluate")
    import h5py

    from kerasrecon.evaluate import score_predictions
    from tests.test_coils import write_multicoil

    (tmp_path / "t").mkdir()
    (tmp_path / "p").mkdir()
    _, _, rss = write_multicoil(tmp_path / "t" / "v.h5", rng, raw=(48, 40), crop=32)
    pred = (rss + 0.01 * rng.standard_normal(rss.shape)).astype(np.float32)
    with h5py.File(tmp_path / "p" / "v.h5", "w") as f:
        f.create_dataset("reconstruction", data=pred)
    ours = score_predictions(tmp_path / "p", tmp_path / "t")["per_volume"]["v"]
    assert ours["nmse"] == pytest.approx(fm.nmse(rss, pred), rel=1e-4)
    assert ours["psnr"] == pytest.approx(fm.psnr(rss, pred), rel=1e-4)
    assert ours["ssim"] == pytest.approx(fm.ssim(rss, pred), rel=1e-4)


def test_rss_target_is_fastmris(fastmri_multicoil_dir):
    """--target rss scores against the root-sum-of-squares of the (cropped) coil images, which for a
    fastMRI file is its reconstruction_rss; --target sense against |SENSE-combined image|."""
    import h5py

    from kerasrecon.data.slices import evaluation_slices

    vols = load_volumes(str(fastmri_multicoil_dir / "prepared"))
    with h5py.File(fastmri_multicoil_dir / "raw" / "file_a.h5") as f:
        rss = f["reconstruction_rss"][()]
    mask_cfg = MaskConfig(kind="random", acceleration=4)
    ev_rss = next(evaluation_slices(vols, mask_cfg, target="rss"))
    np.testing.assert_allclose(ev_rss["target"], rss, rtol=1e-4, atol=1e-5)
    ev_sense = next(evaluation_slices(vols, mask_cfg))
    np.testing.assert_allclose(ev_sense["target"], np.abs(vols[0].images), rtol=1e-6)
    with pytest.raises(DataError, match="target must be one of sense, rss"):
        vols[0].target("esc")
