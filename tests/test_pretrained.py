"""The pretrained models shipped in the package: files, loading on both backends, quality on held-out
slices against independent NumPy computations, and the ``pretrained:NAME`` spelling everywhere."""

import configparser
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import kerasrecon
from kerasrecon import pretrained as pt
from kerasrecon.api import MaskMismatchWarning, Reconstructor
from kerasrecon.errors import DataError
from kerasrecon.masks import make_mask
from kerasrecon_cli.main import cli
from tests.conftest import ref_fft2c, ref_ifft2c

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("multicoil-r4", "singlecoil-r4", "singlecoil-r8")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def psnr(x, y):
    """Peak over the target's maximum, as kerasrecon's and fastMRI's metrics define it."""
    return 10 * np.log10(y.max() ** 2 / np.mean((x - y) ** 2))


def test_registry_lists_the_three_models_and_their_files_match_sha256():
    assert tuple(kerasrecon.pretrained_models()) == NAMES
    registry = json.loads((ROOT / "kerasrecon" / "pretrained" / "registry.json").read_text())
    total = 0
    for name in NAMES:
        for f in pt.FILES:
            data = (ROOT / "kerasrecon" / "pretrained" / name / f).read_bytes()
            assert hashlib.sha256(data).hexdigest() == registry[name]["sha256"][f], (name, f)
            total += len(data)
    assert total < 6_000_000  # "a few MB in all": 5.1 MB since singlecoil-r4 has 6 cascades


def test_the_wheel_ships_every_pretrained_file():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "kerasrecon.pretrained" in cfg["options"]["packages"].split()
    globs = [g.strip() for g in cfg["options.package_data"]["kerasrecon.pretrained"].split(",")]
    here = ROOT / "kerasrecon" / "pretrained"
    for p in here.rglob("*"):
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts:
            assert any(fnmatch.fnmatch(str(p.relative_to(here)), g) for g in globs), p


def test_card_names_sources_licence_and_results():
    for name in NAMES:
        rec_card = pt.card(name)
        for needed in ("nibabel", "dipy", "MIT", "BSD-3-Clause", "scripts/pretrained.sh", "| tv |", "per volume"):
            assert needed in rec_card, (name, needed)


def test_unknown_name_is_one_line_naming_the_shipped_ones(tmp_path):
    with pytest.raises(DataError, match="no pretrained model 'nope'; shipped: multicoil-r4, singlecoil-r4"):
        Reconstructor.pretrained("nope")
    np.save(tmp_path / "x.npy", np.ones((1, 8, 8), np.complex64))
    res = run("reconstruct", "--model", "pretrained:nope", "--input", tmp_path / "x.npy", "--output", tmp_path / "o.h5")
    assert res.exit_code == 2 and "--model: no pretrained model 'nope'" in res.output
    res = run("pretrained", "nope")
    assert res.exit_code == 2 and "NAME: no pretrained model" in res.output


def test_changed_file_is_refused(tmp_path, monkeypatch):
    shutil.copytree(pt.HERE, tmp_path / "p", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    monkeypatch.setattr(pt, "HERE", tmp_path / "p")
    monkeypatch.setattr(pt, "REGISTRY", tmp_path / "p" / "registry.json")
    w = tmp_path / "p" / "singlecoil-r4" / "generator.weights.h5"
    data = bytearray(w.read_bytes())
    data[-100] ^= 1
    w.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match its recorded SHA-256"):
        Reconstructor.pretrained("singlecoil-r4")
    (tmp_path / "p" / "singlecoil-r8" / "card.md").unlink()
    with pytest.raises(DataError, match="card.md is missing"):
        pt.card("singlecoil-r8")
    # a damaged registry is one line naming it, whatever the damage
    registry = tmp_path / "p" / "registry.json"
    entry = json.loads(registry.read_text())["singlecoil-r4"]
    for text in ("{not json", "[]", json.dumps({"singlecoil-r4": {**entry, "step": "many"}})):
        registry.write_text(text)
        with pytest.raises(DataError, match="registry.json") as exc:
            pt.pretrained_models()
        assert "\n" not in str(exc.value)


@pytest.fixture(scope="module")
def held_out():
    """Two of the demo's held-out slices (the last 12 of 60), realistic simulation as in the cards."""
    from kerasrecon.data.demo import demo_images
    from kerasrecon.data.simulate import Simulation, simulate_kspace

    images = demo_images()
    k = simulate_kspace(images, Simulation(phase="smooth", noise=0.01, seed=0))[[50, 55]]
    return k, np.abs(ref_ifft2c(k.astype(np.complex128)))  # target: the noisy fully sampled image


@pytest.fixture(scope="module")
def held_out_small():
    """The same two held-out slices at a third of the resolution, 124×101 (plug-and-play solves TV on
    each slice: small is fast)."""
    from kerasrecon.data.demo import demo_images
    from kerasrecon.data.simulate import Simulation, simulate_kspace

    images = demo_images()[[50, 55], ::3, ::3]
    k = simulate_kspace(images, Simulation(phase="smooth", noise=0.01, seed=0))
    return k, np.abs(ref_ifft2c(k.astype(np.complex128)))


def beats_zero_filling(name, k, target, r):
    """``name``'s reconstruction of ``k`` with its own mask (no warning), asserted 2 dB above zero-filling
    on every slice."""
    mask = make_mask("poisson", r, k.shape[1:], seed=0)
    rec = Reconstructor.pretrained(name)
    assert rec.card.startswith(f"# pretrained:{name}") and rec.source == f"pretrained:{name}"
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaskMismatchWarning)  # its own mask: no warning
        out = rec(k, mask)
    zero_filled = np.abs(ref_ifft2c(k * mask.array))
    for i in range(len(k)):  # the cards: +5.0 dB (R = 4) and +10.8 dB (R = 8) on the 12 held-out slices
        assert psnr(out[i], target[i]) > psnr(zero_filled[i], target[i]) + 2, i
    return rec, out


# Held-out demo slices 50 and 55 as ``held_out`` simulates them, R = 4 Poisson seed 0: PSNR (dB, this
# file's psnr) of the zero-filled image and of TV solved to convergence at λ 3e-5 (the λ of the sweep on
# the template's training slices, the card's) by kerasrecon.baselines.solve("tv", ...): 2560 and 3240
# iterations, 34 s on 2 cores. Recorded so that the suite does not pay for the solves; the zero-filled
# values check that the data are those they were solved on.
SLICES_50_55 = {"zero_filled": (29.989, 29.751), "tv": (40.085, 39.555)}


@pytest.mark.slow  # a shipped model on two whole 370×301 slices, once and as the self-ensemble ×8: seconds
def test_singlecoil_r4_beats_zero_filling_and_converged_tv_on_held_out_demo_slices(held_out):
    """The model against zero-filling, and with its self-ensemble (the card's ×8 row) against converged
    TV (``SLICES_50_55``), slice by slice."""
    k, target = held_out
    rec, _ = beats_zero_filling("singlecoil-r4", k, target, 4)
    mask = make_mask("poisson", 4, k.shape[1:], seed=0)
    zero_filled = np.abs(ref_ifft2c(k * mask.array))
    for i in range(len(k)):
        assert psnr(zero_filled[i], target[i]) == pytest.approx(SLICES_50_55["zero_filled"][i], abs=0.01)
    out = rec(k, mask, ensemble=8)
    for i in range(len(k)):  # the card, 12 held-out slices ×8: TV 39.94, the model 40.35 dB (here 40.31, 40.01)
        assert psnr(out[i], target[i]) > SLICES_50_55["tv"][i] + 0.1, (i, psnr(out[i], target[i]))


@pytest.mark.slow  # two converged TV solves on 370×301 slices: about 35 s
@pytest.mark.skipif(not os.environ.get("KERASRECON_SLOW_BASELINES"), reason="set KERASRECON_SLOW_BASELINES=1")
def test_recorded_tv_of_the_held_out_demo_slices_is_what_the_solver_converges_to(held_out):
    """``SLICES_50_55`` recomputed: the solves it records, run again."""
    from kerasrecon.baselines import solve

    k, target = held_out
    mask = make_mask("poisson", 4, k.shape[1:], seed=0).array
    tv = np.abs(solve("tv", k * mask, mask, 3e-5))
    for i in range(len(k)):
        assert psnr(tv[i], target[i]) == pytest.approx(SLICES_50_55["tv"][i], abs=0.01)


@pytest.mark.slow  # three converged TV solves per slice
def test_singlecoil_r8_beats_zero_filling_and_converged_tv_on_held_out_demo_slices(held_out_small):
    """The plug-and-play model against zero-filling and against TV run to convergence
    (``baselines.tv_admm``, which tests/test_baselines.py checks against sigpy's 20 000-iteration
    solution) at the λ of both sweeps (1e-4 on the demo's training slices, 1e-3 on the real training
    volumes), slice by slice."""
    from kerasrecon.baselines import solve

    k, target = held_out_small
    rec, out = beats_zero_filling("singlecoil-r8", k, target, 8)
    assert rec.config.pnp is not None and rec.config.pnp.init == "tv"
    mask = make_mask("poisson", 8, k.shape[1:], seed=0).array
    for lam in (1e-4, 1e-3):
        tv = np.abs(solve("tv", k * mask, mask, lam))
        for i in range(len(k)):
            assert psnr(out[i], target[i]) > psnr(tv[i], target[i]) + 0.3, (lam, i)


# Held-out demo slice 52 through 8 coils, as the test below simulates it, R = 4 Poisson seed 0: PSNR (dB,
# this file's psnr) of the zero-filled image and of SENSE-TV solved to convergence at λ 1e-4 (the λ of the
# sweep on the real training split) by kerasrecon.baselines.solve("tv", ..., maps=maps): sigpy's PDHG
# under the default stopping rule, 2820 iterations, 150 s on 2 cores. Recorded so that the suite does not
# pay for the solve; the zero-filled value checks that the data are those it was solved on.
# Ten times as many iterations (28 200) give 41.181 dB: the recorded value is converged to 0.06 dB.
SLICE_52 = {"zero_filled": 30.517, "sense_tv": 41.233}


@pytest.mark.slow  # a shipped model on a whole 370×301 slice through 8 coils: seconds
def test_multicoil_r4_beats_zero_filling_and_converged_sense_tv_on_a_held_out_demo_slice():
    """A held-out slice of the demo template through 8 coils, simulated as the card's table simulates
    it (``data prepare demo --coils 8 --phase smooth --noise 0.005 --coil-maps acs --acs-lines 24``), its
    own mask: the model against zero-filling and against converged SENSE-TV (``SLICE_52``), all scored
    against the SENSE combination (NumPy) of the fully sampled coil images with the same ACS maps."""
    from kerasrecon.coils import acs_maps_np
    from kerasrecon.data.demo import demo_images
    from kerasrecon.data.simulate import Simulation, simulate_kspace

    k = simulate_kspace(demo_images()[[52]], Simulation(phase="smooth", noise=0.005, seed=0, coils=8))  # [1, 8, H, W]
    maps = acs_maps_np(k, 24)
    target = np.abs(np.sum(np.conj(maps) * ref_ifft2c(k.astype(np.complex128)), axis=1))[0]
    mask = make_mask("poisson", 4, k.shape[-2:], seed=0)
    zero_filled = np.abs(np.sum(np.conj(maps) * ref_ifft2c(k * mask.array), axis=1))[0]
    assert psnr(zero_filled, target) == pytest.approx(SLICE_52["zero_filled"], abs=0.01)  # the same data
    rec = Reconstructor.pretrained("multicoil-r4")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaskMismatchWarning)  # its own mask: no warning
        out = rec(k, mask, maps=maps)[0]
    # the card, 12 held-out slices: zero-filled 30.42, SENSE-TV 40.89, the model 41.76 dB
    assert psnr(out, target) > SLICE_52["zero_filled"] + 5
    assert psnr(out, target) > SLICE_52["sense_tv"] + 0.3, psnr(out, target)


@pytest.mark.slow  # sigpy's SENSE-TV on a 370×301 slice through 8 coils: 2–3 minutes
@pytest.mark.skipif(not os.environ.get("KERASRECON_SLOW_BASELINES"), reason="set KERASRECON_SLOW_BASELINES=1")
def test_recorded_sense_tv_of_the_held_out_demo_slice_is_what_sigpy_converges_to():
    """``SLICE_52`` recomputed: the solve it records, run again."""
    pytest.importorskip("sigpy")
    from kerasrecon.baselines import solve
    from kerasrecon.coils import acs_maps_np
    from kerasrecon.data.demo import demo_images
    from kerasrecon.data.simulate import Simulation, simulate_kspace

    k = simulate_kspace(demo_images()[[52]], Simulation(phase="smooth", noise=0.005, seed=0, coils=8))
    maps = acs_maps_np(k, 24)
    target = np.abs(np.sum(np.conj(maps) * ref_ifft2c(k.astype(np.complex128)), axis=1))[0]
    mask = make_mask("poisson", 4, k.shape[-2:], seed=0).array
    tv = np.abs(solve("tv", k * mask, mask, 1e-4, maps=maps))[0]
    assert psnr(tv, target) == pytest.approx(SLICE_52["sense_tv"], abs=0.01)


@pytest.mark.slow  # a shipped model on whole slices: seconds
def test_other_acceleration_or_kind_works_with_one_warning(held_out):
    k, target = held_out
    rec = Reconstructor.pretrained("singlecoil-r4")
    mask = make_mask("poisson", 8, k.shape[1:], seed=0)
    with pytest.warns(MaskMismatchWarning, match="at R = 8.*trained at R = 4") as caught:
        out = rec(k[:1], mask)
        rec(k[:1], mask)
    assert len([w for w in caught if w.category is MaskMismatchWarning]) == 1
    assert np.all(np.isfinite(out))
    lines = make_mask("random", 4, k.shape[1:], seed=0)
    with pytest.warns(MaskMismatchWarning, match="with random masks"):
        rec(k[:1], lines)  # a Mask object carries its kind


@pytest.mark.slow  # a shipped model on whole slices: seconds
def test_multicoil_model_is_called_like_a_run(rng):
    from kerasrecon.coils import birdcage_maps
    from kerasrecon.data.demo import demo_images

    image = demo_images()[52, 100:228, 80:208].astype(np.complex64)  # a held-out slice, 128×128
    maps = birdcage_maps(8, 128, 128)
    coil_k = ref_fft2c(maps * image)[None].astype(np.complex64)  # [1, 8, H, W]
    mask = make_mask("poisson", 4, (128, 128), seed=0)
    rec = Reconstructor.pretrained("multicoil-r4")
    out = rec(coil_k, mask, maps=maps[None].astype(np.complex64))
    zero_filled = np.abs(np.sum(np.conj(maps) * ref_ifft2c(coil_k[0] * mask.array), axis=0))
    assert out.shape == (1, 128, 128)
    assert psnr(out[0], np.abs(image)) > psnr(zero_filled, np.abs(image)) + 3


@pytest.mark.slow  # a shipped model on whole slices: seconds
def test_multicoil_model_takes_the_maps_a_user_brings():
    """Trained with ACS maps, the model given the true maps, sigpy's ESPIRiT maps or the true maps
    turned by a constant or a linear phase (each a valid set of maps for the same data) is within
    0.5 dB of its result with ACS maps. Before the graph fixed the maps' convention, a constant phase
    gave back the zero-filled image and the true maps cost 4 dB on the whole demo slice."""
    pytest.importorskip("sigpy")
    from kerasrecon.coils import acs_maps_np, birdcage_maps, espirit_maps
    from kerasrecon.data.demo import demo_images

    image = demo_images()[52, ::3, ::3].astype(np.complex64)  # a held-out slice, whole, 124×101
    h, w = image.shape
    true = birdcage_maps(8, h, w)
    coil_k = ref_fft2c(true * image).astype(np.complex64)  # [8, H, W]
    mask = make_mask("poisson", 4, (h, w), seed=0)
    x = np.mgrid[:h, :w][1] / w
    given = {
        "true": true,
        "espirit": espirit_maps(coil_k, calib_width=24),
        "acs": acs_maps_np(coil_k, 24),
        "constant phase": true * np.exp(2.0j),
        "linear phase": true * np.exp(3j * x),
    }
    rec = Reconstructor.pretrained("multicoil-r4")
    zero_filled = psnr(np.abs(np.sum(np.conj(true) * ref_ifft2c(coil_k * mask.array), axis=0)), np.abs(image))
    got = {
        k: psnr(rec(coil_k[None], mask, maps=m[None].astype(np.complex64))[0], np.abs(image)) for k, m in given.items()
    }
    assert got["acs"] > zero_filled + 3, (zero_filled, got)
    for name, value in got.items():
        assert value > got["acs"] - 0.5, (name, got)


@pytest.mark.slow  # a JAX subprocess
@pytest.mark.tensorflow  # this process against a JAX subprocess: nothing to compare in the JAX rerun
def test_same_reconstruction_on_jax(held_out, held_out_small, tmp_path):
    """singlecoil-r4 (a generator) and singlecoil-r8 (plug-and-play: NumPy TV, then the denoiser) give
    the same images on JAX as here."""
    cases = {"singlecoil-r4": (held_out[0][:1], 4), "singlecoil-r8": (held_out_small[0][:1], 8)}
    for name, (k, r) in cases.items():
        np.save(tmp_path / f"{name}_k.npy", k)
        np.save(tmp_path / f"{name}_m.npy", make_mask("poisson", r, k.shape[1:], seed=0).array)
    code = (
        "import numpy as np, kerasrecon, keras; assert keras.backend.backend() == 'jax'\n"
        f"for name in {list(cases)!r}:\n"
        "    rec = kerasrecon.Reconstructor.pretrained(name)\n"
        f"    k, m = (np.load(rf'{tmp_path}/{{name}}_{{x}}.npy') for x in 'km')\n"
        f"    np.save(rf'{tmp_path}/{{name}}_jax.npy', rec(k, m))"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    for name in cases:
        ours = Reconstructor.pretrained(name)(np.load(tmp_path / f"{name}_k.npy"), np.load(tmp_path / f"{name}_m.npy"))
        np.testing.assert_allclose(np.load(tmp_path / f"{name}_jax.npy"), ours, atol=2e-4 * ours.max())


@pytest.mark.slow  # a shipped model on whole slices: seconds
def test_cli_lists_prints_card_and_reconstructs(held_out, tmp_path):
    res = run("pretrained")
    assert res.exit_code == 0 and [line.split()[0] for line in res.output.splitlines()] == [
        f"pretrained:{n}" for n in NAMES
    ]
    res = run("pretrained", "singlecoil-r8")
    assert res.exit_code == 0 and res.output.startswith("# pretrained:singlecoil-r8")
    k, _ = held_out
    np.save(tmp_path / "k.npy", k[:1])
    model = "pretrained:singlecoil-r4"
    res = run("reconstruct", "--model", model, "--input", tmp_path / "k.npy", "--output", tmp_path / "o.h5")
    assert res.exit_code == 0, res.output
    import h5py

    with h5py.File(tmp_path / "o.h5") as f:
        got = f["reconstruction"][()]
        assert json.loads(f.attrs["model"])["step"] == pt.get("singlecoil-r4").step
    mask = make_mask("poisson", 4, k.shape[1:], seed=0)  # the model's training mask kind, R and seed
    rec = Reconstructor.pretrained("singlecoil-r4")
    np.testing.assert_allclose(got, rec(k[:1], mask), rtol=1e-5, atol=1e-6)
    res = run("reconstruct", "--model", model, "--input", tmp_path / "k.npy", "--output", tmp_path / "e.h5",
              "--ensemble", "2")  # fmt: skip
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "e.h5") as f:
        np.testing.assert_allclose(f["reconstruction"][()], rec(k[:1], mask, ensemble=2), rtol=1e-5, atol=1e-6)
        assert json.loads(f.attrs["model"])["ensemble"] == 2
    res = run("reconstruct", "--model", model, "--input", tmp_path / "k.npy", "--output", tmp_path / "x.h5",
              "--ensemble", "3")  # fmt: skip
    assert res.exit_code == 2 and "--ensemble" in res.output and not (tmp_path / "x.h5").exists()


@pytest.mark.slow
@pytest.mark.tensorflow
def test_singlecoil_r8_exports_its_whole_solver(held_out_small, tmp_path):
    """The plug-and-play model's SavedModel (TV start, denoiser steps) serves the images the package gives."""
    res = run("export", "pretrained:singlecoil-r8", "--out", tmp_path / "exp")
    assert res.exit_code == 0, res.output
    k, _ = held_out_small
    mask = make_mask("poisson", 8, k.shape[1:], seed=0)
    served = Reconstructor.from_export(tmp_path / "exp")(k[:1], mask)
    ours = Reconstructor.pretrained("singlecoil-r8")(k[:1], mask)
    np.testing.assert_allclose(served, ours, rtol=1e-3, atol=1e-4 * ours.max())


@pytest.mark.slow
def test_export_evaluate_and_compare_take_pretrained_names(held_out, tmp_path):
    res = run("export", "pretrained:singlecoil-r4", "--out", tmp_path / "exp")
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "exp" / "assets" / "kerasrecon.json").read_text())
    assert meta["run"] == "pretrained:singlecoil-r4" and meta["step"] == pt.get("singlecoil-r4").step
    k, _ = held_out
    mask = make_mask("poisson", 4, k.shape[1:], seed=0)
    served = Reconstructor.from_export(tmp_path / "exp")(k[:1], mask)
    ours = Reconstructor.pretrained("singlecoil-r4")(k[:1], mask)
    np.testing.assert_allclose(served, ours, rtol=1e-4, atol=1e-4 * ours.max())
    np.save(tmp_path / "k.npy", k[:1])
    res = run("reconstruct", "--model", tmp_path / "exp", "--input", tmp_path / "k.npy", "--output",
              tmp_path / "o.h5", "--ensemble", "8")  # fmt: skip
    assert res.exit_code == 2 and "--ensemble 8" in res.output and "SavedModel export" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "o.h5").exists()
    # Two held-out demo slices as a prepared dataset: evaluate and compare score them, not all twelve.
    from kerasrecon.data.demo import demo_images
    from kerasrecon.data.images import prepare_dataset

    np.savez(tmp_path / "two.npz", images=demo_images()[[50, 55], ::3, ::3])  # PnP solves TV per slice: small ones
    prepare_dataset(tmp_path / "two.npz", tmp_path / "two")
    data = ["--data", tmp_path / "two", "--split", "all"]
    res = run("evaluate", "--model", "pretrained:singlecoil-r8", *data, "--out", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["meta"]["run"] == "pretrained:singlecoil-r8" and summary["meta"]["mask"]["acceleration"] == 8
    # Baselines: the λ sweep needs training data of the same simulation, which a pretrained model's are
    # not (they are not on this machine): one line naming the option; a single λ needs none.
    res = run(
        "evaluate",
        "--model",
        "pretrained:singlecoil-r4",
        *data,
        "--out",
        tmp_path / "b1",
        "--baselines",
        "tv",
    )
    assert res.exit_code == 2 and "pass --baseline-tune-data DATA" in res.output
    res = run(
        "evaluate", "--model", "pretrained:singlecoil-r4", *data, "--out", tmp_path / "b2",
        "--baselines", "tv", "--baseline-lambdas", "1e-2", "--baseline-iters", "20",
    )  # fmt: skip
    assert res.exit_code == 0 and "tv: λ = 0.01" in res.output, res.output
    args = ["compare", "pretrained:singlecoil-r4", "pretrained:singlecoil-r8", *data, "-R", "4"]
    res = run(*args, "--no-figures", "--out", tmp_path / "cmp", "--ensemble", "2")
    assert res.exit_code == 0, res.output
    table = (tmp_path / "cmp" / "table.md").read_text()
    assert "| pretrained:singlecoil-r4 |" in table and "| pretrained:singlecoil-r8 |" in table
    assert "pretrained:singlecoil-r4 ×2, pretrained:singlecoil-r8 ×2" in table
    runs = json.loads((tmp_path / "cmp" / "summary.json").read_text())["meta"]["runs"]
    assert [r["ensemble"] for r in runs] == [2, 2]
