"""Plug-and-play reconstruction (kerasrecon.pnp): the denoiser's scale equivariance, the solver against
closed-form NumPy results, training (and resuming) into a run directory through train_denoiser, train and
``fit --network denoiser``, and the refusals (export, maps, bad option mixes)."""

import dataclasses
import json
import re

import numpy as np
import pytest

from kerasrecon import pnp
from kerasrecon.api import Reconstructor
from kerasrecon.config import DENOISER, DataConfig, LossConfig, MaskConfig, ModelConfig, PnPConfig, TrainConfig
from kerasrecon.errors import ConfigError, DataError
from kerasrecon.masks import make_mask
from kerasrecon.training.denoiser import train_denoiser
from tests.conftest import random_complex, ref_fft2c, ref_ifft2c


def pnp_config(**pnp_changes) -> TrainConfig:
    return TrainConfig(
        mask=MaskConfig(kind="poisson", acceleration=8.0, seed=0),
        data=DataConfig(data="demo", patch_size=32, batch_size=2),
        model=ModelConfig(network=DENOISER, filters=4, levels=2, blocks=0, bias_free=True),
        loss=LossConfig(content="mse", adv_weight=0.0, vgg_weights="none"),
        steps=0,
        pretrain_steps=3,
        learning_rate=1e-3,
        checkpoint_every=2,
        log_every=1,
        pnp=PnPConfig(**{"init": "zf", "iters": 4, "sigma_first": 0.08, "sigma_last": 0.01, **pnp_changes}),
    )


class Shrink:
    """A stand-in denoiser: D(x, σ) = c·x; records the σ channel of every call."""

    def __init__(self, c=0.5):
        self.c, self.sigmas = c, []

    def predict_on_batch(self, inp):
        self.sigmas.append(inp[:, 0, 0, 2].copy())
        return self.c * inp[..., :2]


def test_denoiser_is_scale_equivariant_at_any_size(rng):
    import keras

    from kerasrecon.models.denoiser import build_denoiser

    keras.utils.set_random_seed(3)
    model = build_denoiser(8, 2)
    x = random_complex(rng, (2, 21, 18))  # not a multiple of 4: padded and cropped back
    sigma = np.array([0.1, 0.3])
    out = pnp.denoise(model, x, sigma, levels=2)
    assert out.shape == x.shape and out.dtype == np.complex64
    assert np.abs(out - x).max() > 1e-3  # random weights: not the identity
    a = 7.5
    np.testing.assert_allclose(pnp.denoise(model, a * x, a * sigma, levels=2), a * out, rtol=1e-4, atol=1e-4 * a)


def test_solver_matches_the_closed_form_with_a_linear_denoiser(rng):
    """With D(x) = c·x, K steps leave the measured samples at y and multiply the rest of x0's k-space
    by c^K; σ_k is geometric from σ_first to σ_last times the zero-filled image's peak."""
    cfg = pnp_config()
    k = random_complex(rng, (2, 16, 12)).astype(np.complex64)
    mask = make_mask("poisson", 4, (16, 12), seed=1).array
    x0 = random_complex(rng, (2, 16, 12))
    fake = Shrink(0.5)
    out = pnp.solve(fake, cfg, k, mask, x0=x0)
    expected = ref_ifft2c(mask * k + (1 - mask) * 0.5**4 * ref_fft2c(x0))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    peak = np.abs(ref_ifft2c(mask * k)).reshape(2, -1).max(1)
    np.testing.assert_allclose(np.array(fake.sigmas), np.outer([0.08, 0.08 / 2, 0.08 / 4, 0.01], peak), rtol=1e-5)
    # zero-filled start: the linear denoiser never adds anything there
    np.testing.assert_allclose(pnp.solve(Shrink(0.3), cfg, k, mask), ref_ifft2c(mask * k), atol=1e-5)


def test_ensemble_of_an_equivariant_denoiser_changes_nothing(rng):
    cfg = pnp_config()
    k = random_complex(rng, (1, 12, 10)).astype(np.complex64)
    mask = make_mask("poisson", 4, (12, 10), seed=2).array
    x0 = random_complex(rng, (1, 12, 10))
    one = pnp.solve(Shrink(0.7), cfg, k, mask, x0=x0)
    np.testing.assert_allclose(pnp.solve(Shrink(0.7), cfg, k, mask, x0=x0, ensemble=8), one, atol=1e-5)


def test_tv_start_is_the_converged_tv_image(rng):
    """init tv with the identity denoiser (c = 1) returns the TV start unchanged; TV's own data term
    leaves it close to, not at, the measured samples, and the steps put them back exactly."""
    from kerasrecon.baselines import solve

    cfg = pnp_config(init="tv", iters=1, tv_lambda=1e-3)
    image = np.zeros((1, 24, 24), np.complex64)
    image[0, 6:18, 8:16] = 1
    k = ref_fft2c(image).astype(np.complex64)
    mask = make_mask("poisson", 3, (24, 24), seed=0).array
    tv = solve("tv", k * mask, mask, 1e-3)
    out = pnp.solve(Shrink(1.0), cfg, k, mask)
    np.testing.assert_allclose(out, ref_ifft2c(mask * k + (1 - mask) * ref_fft2c(tv)), atol=1e-5)


def test_config_round_trips_and_bad_settings_name_the_field():
    cfg = pnp_config()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, extra_data=["a", "b"]))
    assert TrainConfig.from_json(cfg.to_json()) == cfg and cfg.method == "pnp"
    old = cfg.to_dict()  # kerasrecon 0.9–0.12 kept a denoiser's extra datasets under pnp
    old["pnp"]["extra_data"] = old["data"].pop("extra_data")
    assert TrainConfig.from_dict(old) == cfg
    for extra in (["a", "a"], ["demo"], [" "]):  # pnp_config's --data is demo
        with pytest.raises(ConfigError, match="data.extra_data must name other datasets"):
            dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, extra_data=extra))
    assert TrainConfig().method == "hybrid" and TrainConfig().pnp is None
    old = TrainConfig().to_dict()
    del old["pnp"]  # configs written before plug-and-play models existed load as before
    assert TrainConfig.from_dict(old) == TrainConfig()
    with pytest.raises(ConfigError, match=r"model.network must be one of \('resnet', 'unet'\)"):
        TrainConfig(model=ModelConfig(network=DENOISER))
    bad = {
        "pnp.sigma_last must be in": {"sigma_last": 0.5},
        "pnp.init must be one of": {"init": "nope"},
        "pnp.iters must be >= 1": {"iters": 0},
    }
    for message, change in bad.items():
        with pytest.raises(ConfigError, match=message):
            dataclasses.replace(cfg, pnp=dataclasses.replace(cfg.pnp, **change))
    with pytest.raises(ConfigError, match="loss.content must be 'mse'"):
        dataclasses.replace(cfg, loss=TrainConfig().loss)
    with pytest.raises(ConfigError, match="steps must be 0"):
        dataclasses.replace(cfg, steps=10)
    with pytest.raises(ConfigError, match="data.patch_size must be a multiple of 2\\*\\*model.levels = 4"):
        dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, patch_size=30))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pnp") / "run"
    model, step = train_denoiser(pnp_config(), out)
    return out, model, step


def test_training_is_full_float32_on_gpus_too(trained):
    """The denoiser trains in float32: TensorFloat-32 off (TensorFlow), "highest" matmul precision
    (JAX), as fit's float32 runs (training.precision.full_precision_matmuls)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        before = jax.config.jax_default_matmul_precision
        jax.config.update("jax_default_matmul_precision", None)
        try:
            train_denoiser(pnp_config(), trained[0])  # a finished run: returned as it is
            assert jax.config.jax_default_matmul_precision == "highest"
        finally:
            jax.config.update("jax_default_matmul_precision", before)
        return
    import tensorflow as tf

    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(True)
    try:
        train_denoiser(pnp_config(), trained[0])  # a finished run: returned as it is
        assert not tf.config.experimental.tensor_float_32_execution_enabled()
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


def test_training_writes_a_run_that_reconstructor_and_evaluate_take(trained, rng):
    out, model, step = trained
    assert step == 3 and json.loads((out / "config.json").read_text())["pnp"]["iters"] == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt-00000002", "ckpt-00000003", "latest.json"]
    # the weights file holds the denoiser's weights alone, not the compiled model's optimizer moments
    import h5py

    with h5py.File(out / "checkpoints" / "ckpt-00000003" / "generator.weights.h5") as f:
        stored = []
        f.visititems(lambda name, obj: stored.append(obj.size) if isinstance(obj, h5py.Dataset) else None)
    assert sum(stored) == model.count_params() > 0
    rec = Reconstructor.from_run(out)
    assert rec.step == 3 and "plug-and-play(init=zf, iters=4" in repr(rec)
    from kerasrecon.data.demo import demo_images

    image = demo_images()[50, 100:164, 100:164]
    k = ref_fft2c(image).astype(np.complex64)
    mask = make_mask("poisson", 8, k.shape, seed=0)
    got = rec(k, mask)
    direct = np.abs(pnp.solve(model, rec.config, k[None], mask.array))[0]
    np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.abs(ref_fft2c(pnp.solve(model, rec.config, k[None], mask.array)[0]))[mask.array == 1],
                               np.abs(k)[mask.array == 1], rtol=1e-4, atol=1e-4)  # fmt: skip
    ens = rec(k, mask, ensemble=8)
    assert ens.shape == got.shape and np.all(np.isfinite(ens))
    with pytest.raises(DataError, match="plug-and-play model reconstructs single-coil"):
        rec(k[None, None], mask, maps=np.ones((1, 1, *k.shape), np.complex64))
    # a rerun into the same directory with the same config returns it; other solver settings are
    # written into the run (they are not used in training); another training setting needs force
    assert train_denoiser(pnp_config(), out)[1] == 3
    assert train_denoiser(pnp_config(iters=5), out)[1] == 3
    assert TrainConfig.from_json((out / "config.json").read_text()).pnp.iters == 5
    train_denoiser(pnp_config(), out)
    with pytest.raises(ConfigError, match="holds a run with a different config .*pnp.sigma_max: 0.2 -> 0.3"):
        train_denoiser(pnp_config(sigma_max=0.3), out)
    with pytest.raises(ConfigError, match="exists and is not a kerasrecon run"):
        (out.parent / "other").mkdir()
        (out.parent / "other" / "notes.txt").write_text("mine")
        train_denoiser(pnp_config(), out.parent / "other")
    assert (out.parent / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.slow  # trains
def test_an_interrupted_training_resumes_to_the_uninterrupted_weights(trained, tmp_path):
    """Stopped after step 2's checkpoint, a rerun restores the weights and Adam's moments and replays
    the crops: step 3 then gives the weights of the run that was never stopped (the fixture)."""
    _, model, _ = trained

    class Stop(Exception):
        pass

    def stop_at_3(step, total, logs):
        if step == 3:
            raise Stop

    out = tmp_path / "run"
    with pytest.raises(Stop):
        train_denoiser(pnp_config(), out, progress=stop_at_3)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt-00000002", "latest.json"]
    calls = []
    resumed, step = train_denoiser(pnp_config(), out, progress=lambda s, n, logs: calls.append((s, n, logs)))
    assert step == 3 and calls[0] == (2, 3, {}) and [c[0] for c in calls[1:]] == [3]
    for got, want in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_training_reads_a_prepared_dataset_slice_by_slice(tmp_path, rng, monkeypatch):
    """No whole volume is read: the crops come from single slices (the inverse FFT of each slice's
    k-space, checked against NumPy), so a dataset larger than memory trains in constant memory."""
    from kerasrecon.data import store
    from kerasrecon.data.images import prepare_dataset
    from kerasrecon.training.denoiser import SliceImages, noisy_crops, training_images

    np.save(tmp_path / "v0.npy", np.abs(random_complex(rng, (4, 40, 36))).astype(np.float32))
    prepare_dataset(tmp_path / "v0.npy", tmp_path / "d0")
    monkeypatch.setattr(store, "whole", lambda a: pytest.fail("a whole volume was read"))
    sets = training_images(DataConfig(data=str(tmp_path / "d0"), val_fraction=0.0))[0]
    assert [type(v) for v in sets] == [SliceImages] and sets[0].shape == (4, 40, 36)
    from kerasrecon.data import load_volumes

    kspace = np.stack([np.asarray(load_volumes(str(tmp_path / "d0"))[0].kspace_at(i)) for i in range(4)])
    for i in range(4):
        np.testing.assert_allclose(sets[0][i], ref_ifft2c(kspace[i]), rtol=1e-5, atol=1e-5)
    inputs, targets = noisy_crops(np.random.default_rng(0), [sets], 3, 32, 0.1)
    assert inputs.shape == (3, 32, 32, 3) and targets.shape == (3, 32, 32, 2)
    assert np.all(np.abs(targets[..., 0] + 1j * targets[..., 1]).max(axis=(1, 2)) == pytest.approx(1.0))


def test_images_smaller_than_the_crop_are_one_line_naming_the_dataset(tmp_path, rng):
    from kerasrecon.data.images import prepare_dataset

    np.savez(tmp_path / "small.npz", images=np.abs(random_complex(rng, (3, 24, 24))).astype(np.float32))
    prepare_dataset(tmp_path / "small.npz", tmp_path / "small")
    cfg = pnp_config()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data=str(tmp_path / "small"), val_fraction=0.0))
    with pytest.raises(ConfigError, match=r"data.patch_size 32: dataset .*small has images of 24×24, smaller than"):
        train_denoiser(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # trains
def test_fit_trains_a_plug_and_play_config_as_train_denoiser_does(trained, tmp_path):
    from kerasrecon.training.trainer import train

    result = train(pnp_config(), tmp_path / "fit")
    assert (result.start_step, result.step, result.gan) == (0, 3, None) and result.logs["loss"] > 0
    _, model, _ = trained  # the same config and seed: the same weights
    from kerasrecon.training import checkpoint as ckpt

    _, fitted, _ = ckpt.load_generator(tmp_path / "fit")
    for got, want in zip(fitted.get_weights(), model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_sweep_refuses_empty_or_bad_grids_before_reconstructing():
    cases = {
        ("iters", ()): "an empty grid",
        ("sigma_first", ()): "an empty grid",
        ("iters", (2, 0)): "pnp.iters must be >= 1",
        ("sigma_first", (0.02, 0.001)): "pnp.sigma_last must be in (0, pnp.sigma_first = 0.001]",
    }
    for (name, grid), message in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            pnp.sweep(None, pnp_config(), ["a volume"], **{name: grid})  # no model call: refused first
    with pytest.raises(ConfigError, match="no held-out volumes"):
        pnp.sweep(None, pnp_config(), [])


def test_sweep_chooses_the_best_setting_on_held_out_slices_and_writes_it_into_the_run(trained, tmp_path, monkeypatch):
    """``sweep_run``: each grid point's PSNR equals a NumPy computation of the same reconstructions
    (held-out demo slices, masks seeded 5000), the best one is written into the run's config (the rest
    unchanged) and the whole grid into pnp_sweep.json; ``fit --pnp-sweep`` does the same."""
    import shutil

    from kerasrecon.data import load_volumes, split_volumes
    from kerasrecon.errors import ConfigError
    from kerasrecon.io import RunLock
    from kerasrecon.training import checkpoint as ckpt

    run = tmp_path / "run"
    shutil.copytree(trained[0], run, ignore=shutil.ignore_patterns(".lock"))
    before = ckpt.read_config(run)
    with RunLock(run, exclusive=True):  # a fit still writing the run: refused, nothing written
        with pytest.raises(ConfigError, match="in use by another kerasrecon process"):
            pnp.sweep_run(run, iters=(1,), sigma_first=(0.05,))
    assert ckpt.read_config(run) == before and not (run / pnp.SWEEP_FILE).exists()
    real_sweep, refused = pnp.sweep, []

    def sweep_while_a_fit_starts(*args, **kwargs):  # a fit started during the sweep finds the run locked
        with pytest.raises(ConfigError, match="in use by another kerasrecon process"):
            RunLock(run, exclusive=True).acquire()
        refused.append(True)
        return real_sweep(*args, **kwargs)

    monkeypatch.setattr(pnp, "sweep", sweep_while_a_fit_starts)
    result = pnp.sweep_run(run, iters=(1, 3), sigma_first=(0.05, 0.1))
    monkeypatch.setattr(pnp, "sweep", real_sweep)
    assert refused == [True]
    assert [(r["iters"], r["sigma_first"]) for r in result["rows"]] == [(1, 0.05), (1, 0.1), (3, 0.05), (3, 0.1)]
    held_out = split_volumes(load_volumes("demo"), before.data.val_fraction)[1]
    assert result["slices"] == sum(len(v) for v in held_out) == 12 and result["mask"]["seed"] == 5000
    _, model, _ = trained
    target = np.abs(ref_ifft2c(held_out[0].kspace))
    mask = make_mask("poisson", 8, target.shape[1:], seed=5000).array
    for row in result["rows"][::3]:
        setting = pnp.with_solver(before, iters=row["iters"], sigma_first=row["sigma_first"])
        recon = np.abs(pnp.solve(model, setting, held_out[0].kspace, mask))
        mse = ((recon - target) ** 2).reshape(len(target), -1).mean(1)
        want = np.mean(10 * np.log10(target.max() ** 2 / mse))  # each slice against the volume's peak
        assert row["psnr"] == pytest.approx(want, abs=1e-3)
    best = max(result["rows"], key=lambda r: r["psnr"])
    after = ckpt.read_config(run)
    assert (after.pnp.iters, after.pnp.sigma_first) == (best["iters"], best["sigma_first"])
    assert after == pnp.with_solver(before, iters=best["iters"], sigma_first=best["sigma_first"])
    assert json.loads((run / pnp.SWEEP_FILE).read_text()) == json.loads(json.dumps(result))
    # fit --pnp-sweep: the same, after training (a finished run: its weights alone), on the grid in
    # pnp.SWEEP_ITERS × pnp.SWEEP_SIGMA_FIRST
    from click.testing import CliRunner

    from kerasrecon_cli.main import cli

    monkeypatch.setattr(pnp, "SWEEP_ITERS", (1,))
    monkeypatch.setattr(pnp, "SWEEP_SIGMA_FIRST", (0.05, 0.1))
    args = ["fit", "--network", "denoiser", "--data", "demo", "--patch-size", "32", "--batch-size", "2",
            "--filters", "4", "--pretrain-steps", "1", "--pnp-init", "zf", "--pnp-sweep"]  # fmt: skip
    args += ["--out", str(tmp_path / "f")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    swept = json.loads((tmp_path / "f" / pnp.SWEEP_FILE).read_text())
    assert [(r["iters"], r["sigma_first"]) for r in swept["rows"]] == [(1, 0.05), (1, 0.1)]
    chosen = ckpt.read_config(tmp_path / "f").pnp
    assert (chosen.iters, chosen.sigma_first) == (swept["best"]["iters"], swept["best"]["sigma_first"])
    assert f"chosen on 12 held-out slices: --pnp-iters 1 --sigma-first {chosen.sigma_first:g}" in res.output


@pytest.mark.slow  # trains
def test_fit_cli_network_denoiser_starts_from_the_recipe_and_refuses_bad_mixes_in_one_line(tmp_path):
    from click.testing import CliRunner

    from kerasrecon.config import pnp_recipe
    from kerasrecon_cli.main import cli

    def fit(*args):
        return CliRunner().invoke(cli, ["fit", *map(str, args)])

    from kerasrecon.data.images import prepare_dataset

    np.save(tmp_path / "more.npy", np.random.default_rng(0).random((3, 40, 36)).astype(np.float32))
    more = str(prepare_dataset(tmp_path / "more.npy", tmp_path / "more") and tmp_path / "more")
    out = tmp_path / "run"
    small = ["--patch-size", 32, "--batch-size", 2, "--filters", 4, "--pretrain-steps", 2, "--log-every", 1]
    res = fit("--network", "denoiser", "--data", "demo", *small, "--pnp-iters", 3, "--extra-data", more, "--out", out)
    assert res.exit_code == 0, res.output
    assert "trained steps 0..2" in res.output
    recipe = pnp_recipe("demo")  # the options not given keep the recipe's values
    expected = dataclasses.replace(
        recipe,
        data=dataclasses.replace(recipe.data, patch_size=32, batch_size=2, extra_data=[more]),
        model=dataclasses.replace(recipe.model, filters=4),
        pretrain_steps=2,
        log_every=1,
        pnp=dataclasses.replace(recipe.pnp, iters=3),
    )
    assert TrainConfig.from_json((out / "config.json").read_text()) == expected
    assert (recipe.learning_rate, recipe.lr_schedule, recipe.model.levels, recipe.pnp.tv_lambda) == (
        1e-3,
        "cosine",
        2,
        1e-3,
    )
    # its config trains again with --config; a plug-and-play option changes the solver setting
    res = fit("--config", out / "config.json", "--sigma-first", 0.05, "--out", tmp_path / "again")
    assert res.exit_code == 0, res.output
    again = TrainConfig.from_json((tmp_path / "again" / "config.json").read_text())
    assert again == dataclasses.replace(expected, pnp=dataclasses.replace(expected.pnp, sigma_first=0.05))
    bad = {
        ("--sigma-max", 0.1): "--sigma-max applies to --network denoiser only",
        ("--network", "denoiser", "--steps", 5): "--steps must be 0 (a denoiser has no GAN steps; --pretrain-steps",
        ("--network", "denoiser", "--loss", "hybrid"): "--loss must be 'mse'",
        ("--network", "denoiser", "--pnp-iters", 0): "--pnp-iters must be >= 1",
        ("--config", out / "config.json", "--network", "resnet"): "is a plug-and-play config; leave out --config",
        ("--network", "denoiser", "--patch-size", 30): "--patch-size must be a multiple of 2**--levels = 4",
        ("--pnp-sweep",): "--pnp-sweep applies to --network denoiser only",
        ("--network", "denoiser", "--val-fraction", 0, "--pnp-sweep"): "--val-fraction 0 holds nothing of 'demo'",
    }
    for args, message in bad.items():
        res = fit(*args, "--out", tmp_path / "bad")
        assert res.exit_code == 2 and message in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
    res = CliRunner().invoke(cli, ["compare", "--train", "--network", "denoiser", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "train a plug-and-play model with kerasrecon fit --network denoiser" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


@pytest.mark.slow  # a TensorFlow while loop of ~1000 ADMM steps
@pytest.mark.tensorflow
def test_tv_in_the_export_graph_equals_the_numpy_solver(rng):
    """The SavedModel's TV start (export.tv_admm_graph) against baselines.tv_admm (itself checked
    against sigpy's converged solution in test_baselines): two slices that stop at different
    iterations, each with its own ρ, in one batch."""
    import tensorflow as tf

    from kerasrecon.baselines import tv_admm
    from kerasrecon.data.demo import demo_images
    from kerasrecon.export import tv_admm_graph
    from kerasrecon.kspace import from_channels, to_channels

    images = demo_images()[[50, 55], 100:148, 80:124].astype(np.complex64)
    mask = make_mask("poisson", 8, images.shape[1:], seed=0).array.astype(np.float32)
    y = np.stack([ref_fft2c(x) / np.abs(x).max() for x in images]).astype(np.complex64) * mask
    ref = [tv_admm(y[i], mask, 1e-3) for i in range(2)]
    assert ref[0][1] != ref[1][1]  # the slices stop at different iterations
    graph = tf.function(lambda y, m: tv_admm_graph(y, m, 1e-3, 1e-5, 5000))  # as in the SavedModel
    got = from_channels(graph(tf.constant(to_channels(y)), tf.constant(np.stack([mask] * 2))).numpy())
    for i in range(2):
        assert np.linalg.norm(got[i] - ref[i][0]) / np.linalg.norm(ref[i][0]) < 1e-4


@pytest.mark.slow  # SavedModels
@pytest.mark.tensorflow
@pytest.mark.parametrize("init, ensemble", [("zf", 1), ("tv", 8)])
def test_export_of_a_plug_and_play_model_equals_the_reconstructor(trained, tmp_path, init, ensemble):
    """kerasrecon export writes the whole solver into one SavedModel (TV start, denoiser and DC
    steps, self-ensemble inside each step): its images equal Reconstructor.from_run's; it has no
    multicoil signature, and reconstruct says so in one line for multi-coil input."""
    from click.testing import CliRunner

    from kerasrecon.data.demo import demo_images
    from kerasrecon_cli.main import cli

    out, _, _ = trained
    run = out
    if init == "tv":  # the same weights with a TV start
        run = tmp_path / "run_tv"
        import shutil

        shutil.copytree(out, run, ignore=shutil.ignore_patterns(".lock"))
        cfg = pnp.with_solver(TrainConfig.from_json((out / "config.json").read_text()), init="tv", tv_lambda=1e-3)
        (run / "config.json").write_text(cfg.to_json())
    res = CliRunner().invoke(cli, ["export", str(run), "--out", str(tmp_path / "exp"), "--ensemble", str(ensemble)])
    assert res.exit_code == 0, res.output
    exported = Reconstructor.load(tmp_path / "exp")
    image = demo_images()[50:52, 100:140, 90:126].astype(np.complex64)
    k = np.stack([ref_fft2c(x) for x in image]).astype(np.complex64)
    mask = make_mask("poisson", 8, k.shape[1:], seed=1).array
    want = Reconstructor.from_run(run)(k, mask, ensemble=ensemble)
    got = exported(k, mask)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
    assert exported.config.pnp.init == init
    meta = json.loads((tmp_path / "exp" / "assets" / "kerasrecon.json").read_text())
    assert list(meta["signatures"]) == ["serving_default"] and "plug-and-play" in meta["plug_and_play"]
    if init == "zf":
        np.save(tmp_path / "coils.npy", np.stack([k, k], 1))  # [S, C, H, W]
        res = CliRunner().invoke(
            cli,
            ["reconstruct", "--model", str(tmp_path / "exp"), "--input", str(tmp_path / "coils.npy"),
             "--output", str(tmp_path / "r.h5"), "-R", "8"],
        )  # fmt: skip
        assert res.exit_code == 2 and "is a plug-and-play export, which reconstructs single-coil" in res.output
        assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "r.h5").exists()
