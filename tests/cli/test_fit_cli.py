import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kerasrecon_cli.main import cli

ROOT = Path(__file__).resolve().parents[2]

TINY = ["--batch-size", "2", "--patch-size", "32", "--blocks", "1", "--filters", "8", "--vgg-weights", "none"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.slow
def test_fit_cli_trains_and_records_config(tmp_path):
    out = tmp_path / "run"
    res = run(
        "fit",
        "--loss",
        "hybrid",
        "--steps",
        2,
        "--pretrain-steps",
        1,
        "-R",
        6,
        "--mask",
        "random",
        "--mask-seed",
        3,
        "--checkpoint-every",
        2,
        "--out",
        out,
        *TINY,
    )
    assert res.exit_code == 0, res.output
    assert "trained steps 0..3" in res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["loss"]["content"] == "hybrid" and cfg["mask"] == {
        "kind": "random",
        "acceleration": 6.0,
        "seed": 3,
        "per_sample": False,
        "bank_size": 64,
        "center_fraction": None,
    }
    assert cfg["steps"] == 2 and cfg["pretrain_steps"] == 1 and cfg["model"]["blocks"] == 1


@pytest.mark.slow
def test_fit_learned_dc_trains_each_cascades_step(tmp_path):
    """--learned-dc: η starts at 1 (hard DC) and the optimizer moves it (the gradient reaches it
    through the FFTs); the run resumes and reconstructs with its learned η."""
    import h5py
    import numpy as np

    out = tmp_path / "run"
    args = ["fit", "--loss", "mse", "--pretrain-steps", 3, "--steps", 0, "--cascades", 2, "--learned-dc"]
    res = run(*args, "--lr", "1e-2", "--checkpoint-every", 3, "--out", out, *TINY)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["model"]["learned_dc"] is True
    etas = []
    with h5py.File(next(out.glob("checkpoints/ckpt-*")) / "generator.weights.h5") as f:
        f.visititems(lambda name, obj: etas.append(float(obj[()])) if getattr(obj, "shape", None) == () else None)
    assert len(etas) == 2 and all(e != 1.0 and abs(e - 1.0) < 0.2 for e in etas), etas
    from kerasrecon import Reconstructor

    k = (np.random.default_rng(0).standard_normal((1, 32, 32)) + 0j).astype(np.complex64)
    assert np.all(np.isfinite(Reconstructor.from_run(out)(k, np.ones((32, 32)))))


@pytest.mark.slow
def test_fit_init_from_copies_the_source_generator_and_adds_cg_dc(tmp_path):
    """--init-from RUN: step 0 is the source's generator (every source weight copied by name); the
    weights --cg-iters adds (one μ per cascade) start at CG_MU_INIT. With a learning rate of 1e-30 the
    fine-tuned run's trainable weights equal the source's after its steps (BatchNorm's moving
    statistics, which training updates without the optimizer, are left out)."""
    import numpy as np

    from kerasrecon.models.generator import CG_MU_INIT
    from kerasrecon.training.checkpoint import load_generator

    src, out = tmp_path / "src", tmp_path / "tuned"
    base = ["fit", "--loss", "mse", "--steps", 0, "--cascades", 2, "--checkpoint-every", 2, *TINY]
    assert run(*base, "--pretrain-steps", 2, "--lr", "1e-2", "--out", src).exit_code == 0
    res = run(*base, "--pretrain-steps", 2, "--lr", "1e-30", "--cg-iters", 2, "--init-from", src, "--out", out)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["init_from"] == str(src)
    a = {v.path: np.asarray(v) for v in load_generator(src)[1].weights}
    b = {v.path: np.asarray(v) for v in load_generator(out)[1].weights}
    mus = {k: v for k, v in b.items() if k.endswith("log_mu")}
    assert len(mus) == 2 and all(abs(np.exp(v) - CG_MU_INIT) < 1e-6 for v in mus.values()), mus
    assert set(b) - set(mus) == set(a)
    trainable = [k for k in a if "moving" not in k]
    assert len(trainable) > 10
    for k in trainable:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-6, err_msg=k)
    assert any(not np.allclose(a[k], 0) for k in trainable)  # the source trained: not a fresh init
    # Resuming never reads the source again: it may be gone.
    import shutil

    shutil.rmtree(src)
    res = run(*base, "--pretrain-steps", 2, "--lr", "1e-30", "--cg-iters", 2, "--init-from", src, "--out", out)
    assert res.exit_code == 0, res.output


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, match",
    [
        (["--loss", "l1"], "Invalid value for '--loss'"),
        (["--strategy", "tpu"], "Invalid value for '--strategy'"),
        (["--patch-size", "1000"], "--patch-size 1000 is larger"),
        (["--acceleration", "0.5"], "--acceleration must be >= 1"),
        (["--data", "/nonexistent"], "--data /nonexistent: not a directory"),
        (["--vgg-weights", "/no/such.h5", "--loss", "feature"], "--vgg-weights /no/such.h5: file not found"),
        (["--cg-iters", "-1"], "--cg-iters must be in [0, 50]"),
        (["--cg-iters", "3", "--learned-dc"], "--cg-iters learns its own data-consistency weight μ"),
        (["--cg-iters", "3", "--noise-lambda", "0.1"], "cannot be combined with --noise-lambda"),
        (["--init-from", "/nonexistent"], "--init-from /nonexistent: not a directory"),
        (["--extra-data", "/nonexistent"], "--extra-data /nonexistent: not a directory"),
        (["--extra-data", "demo"], "--extra-data must name other datasets; it names 'demo' twice"),
        (["--init-from", "pretrained:nope"], "--init-from: no pretrained model 'nope'"),
        (  # the shipped model has 5 cascades of 4 blocks × 32 filters; TINY is 1 block × 8
            ["--init-from", "pretrained:singlecoil-r4"],
            "--init-from pretrained:singlecoil-r4: its generator weight g1_conv_in/kernel (3, 3, 2, 32) does not fit",
        ),
    ],
)
def test_fit_cli_bad_options(tmp_path, args, match):
    res = run("fit", "--steps", 1, "--out", tmp_path / "run", *TINY, *args)
    assert res.exit_code == 2, res.output
    assert match in res.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_fit_extra_data_is_checked_like_data_before_out_is_made(tmp_path):
    """An --extra-data dataset's training volumes meet --data's checks: slices smaller than the patch
    and a coil count unlike --data's are one line each, and --out is not created."""
    import numpy as np

    from kerasrecon.data.images import prepare_dataset
    from kerasrecon.data.simulate import Simulation

    np.save(tmp_path / "small.npy", np.ones((4, 16, 16), np.float32))
    prepare_dataset(tmp_path / "small.npy", tmp_path / "small")
    prepare_dataset(tmp_path / "small.npy", tmp_path / "coils", simulation=Simulation(coils=2), acs_lines=8)
    cases = [
        ("small", [], "--patch-size 32 is larger than the images of small (16×16)"),
        ("coils", ["--patch-size", "16"], "the training volumes mix coil counts (single-coil, 2 coils)"),
    ]
    for name, args, match in cases:
        res = run("fit", "--steps", 1, "--out", tmp_path / "run", *TINY, *args, "--extra-data", tmp_path / name)
        assert res.exit_code == 2 and match in res.output, res.output
        assert not (tmp_path / "run").exists()


def test_fit_cli_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run("fit", "--steps", 1, "--out", blocker / "run", *TINY)
    assert res.exit_code == 2 and "--out" in res.output and blocker.read_text() == "x"


def test_fit_help_explains_defaults():
    res = run("fit", "--help")
    assert res.exit_code == 0
    for text in ["--loss", "hybrid", "100000", "--vgg-weights", "--strategy", "--pretrain-steps"]:
        assert text in res.output


@pytest.mark.slow
def test_fit_on_prepared_dataset(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    (tmp_path / "src").mkdir()
    for name in ("a", "b"):
        np.save(tmp_path / "src" / f"{name}.npy", rng.random((3, 40, 36)).astype(np.float32))
    assert run("data", "prepare", tmp_path / "src", tmp_path / "data").exit_code == 0
    res = run(
        "fit",
        "--data",
        tmp_path / "data",
        "--steps",
        1,
        "--checkpoint-every",
        1,
        "--out",
        tmp_path / "run",
        *TINY,
        "--loss",
        "mse",
        "--extra-data",
        "demo",
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["extra_data"] == ["demo"]
    res = run("evaluate", "--model", tmp_path / "run", "--out", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    import csv

    rows = list(csv.DictReader(open(tmp_path / "ev" / "slices.csv")))
    # --data's held-out volume alone (not the demo set trained on beside it)
    assert {r["volume"] for r in rows} == {"b"} and len(rows) == 2 * 3  # zero_filled + mse, 3 slices


def test_fit_defaults_are_the_config_defaults():
    """Every fit option's default comes from TrainConfig: parsing no options gives TrainConfig()."""
    from kerasrecon.config import TrainConfig
    from kerasrecon_cli.main import config_from_options, fit

    ctx = fit.make_context("fit", ["--out", "unused"])
    params = {k: v for k, v in ctx.params.items() if k not in ("out", "force")}
    assert config_from_options(params) == TrainConfig()
    ctx = fit.make_context(
        "fit",
        [
            "--out",
            "x",
            "--mask-per-sample",
            "--mask-bank-size",
            "7",
            "--cascades",
            "2",
            "--sampling",
            "slice",
            "--lr-schedule",
            "cosine",
        ],
    )
    cfg = config_from_options({k: v for k, v in ctx.params.items() if k not in ("out", "force")})
    assert (cfg.mask.bank_size, cfg.model.cascades, cfg.data.sampling, cfg.lr_schedule) == (7, 2, "slice", "cosine")


def test_fit_help_text_matches_train_config():
    """What a user reads in `fit --help` (defaults and choice lists) is TrainConfig and config.py's lists."""
    import re

    from click.testing import CliRunner

    from kerasrecon import config as C
    from kerasrecon.masks import MASK_KINDS
    from kerasrecon_cli.main import cli

    text = " ".join(CliRunner().invoke(cli, ["fit", "--help"], terminal_width=400).output.split())
    fit = cli.commands["fit"]
    ctx = fit.make_context("fit", ["--out", "x"])
    records = [p.get_help_record(ctx) for p in fit.get_params(ctx)]  # the rows `fit --help` prints
    shown = {}
    for opts, help_text in filter(None, records):
        m = re.search(r"\[default: ([^\]]+)\]", help_text)
        if m:
            assert " ".join(help_text.split()) in text
            shown[re.findall(r"--[a-z0-9-]+", opts)[0]] = m.group(1)
    d = C.TrainConfig()
    expected = {  # option -> the TrainConfig field it sets (written out by hand: the mapping under test)
        "--data": d.data.data,
        "--loss": d.loss.content,
        "--acceleration": d.mask.acceleration,
        "--mask": d.mask.kind,
        "--mask-seed": d.mask.seed,
        "--mask-bank-size": d.mask.bank_size,
        "--steps": d.steps,
        "--pretrain-steps": d.pretrain_steps,
        "--batch-size": d.data.batch_size,
        "--patch-size": d.data.patch_size,
        "--blocks": d.model.blocks,
        "--filters": d.model.filters,
        "--alpha": d.loss.mse_weight,
        "--beta": d.loss.feature_weight,
        "--adv-weight": d.loss.adv_weight,
        "--vgg-weights": d.loss.vgg_weights,
        "--lr": d.learning_rate,
        "--lr-schedule": d.lr_schedule,
        "--beta1": d.beta_1,
        "--seed": d.seed,
        "--val-fraction": d.data.val_fraction,
        "--sampling": d.data.sampling,
        "--cascades": d.model.cascades,
        "--cg-iters": d.model.cg_iters,
        "--network": d.model.network,
        "--levels": d.model.levels,
        "--zoom": d.data.zoom,
        "--strategy": d.strategy,
        "--precision": d.precision,
        "--collective-timeout": d.collective_timeout_s,
        "--checkpoint-every": d.checkpoint_every,
        "--log-every": d.log_every,
        "--sigma-max": C.PnPConfig().sigma_max,  # fit --network denoiser: PnPConfig's fields
        "--pnp-iters": C.PnPConfig().iters,
        "--sigma-first": C.PnPConfig().sigma_first,
        "--sigma-last": C.PnPConfig().sigma_last,
        "--tv-lambda": C.PnPConfig().tv_lambda,
        "--pnp-init": C.PnPConfig().init,
    }
    assert set(shown) == set(expected), set(shown) ^ set(expected)
    for opt, value in expected.items():
        assert shown[opt] == str(value), (opt, shown[opt], value)
    choice_lists = (
        C.CONTENT_LOSS_NAMES,
        MASK_KINDS,
        C.LR_SCHEDULES,
        C.SAMPLINGS,
        C.STRATEGIES,
        C.PRECISIONS,
        (*C.NETWORKS, C.DENOISER),
        C.PNP_INITS,
    )
    for choices in choice_lists:
        assert "[" + "|".join(choices) + "]" in text, choices


@pytest.mark.slow
def test_acquisition_filter_in_prepare_and_evaluate(tmp_path):
    """--acquisition keeps fastMRI files/volumes of one acquisition, as fastMRI's evaluation does;
    a value nobody has is a one-line error naming what the data holds."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    (tmp_path / "src").mkdir()
    for name, acq in [("a", "CORPD_FBK"), ("b", "CORPDFS_FBK"), ("c", "CORPD_FBK"), ("d", "CORPDFS_FBK")]:
        with h5py.File(tmp_path / "src" / f"{name}.h5", "w") as f:
            f.create_dataset(
                "kspace",
                data=(rng.standard_normal((2, 48, 40)) + 1j * rng.standard_normal((2, 48, 40))).astype(np.complex64),
            )
            f.attrs["acquisition"] = acq
    res = run("data", "prepare", tmp_path / "src", tmp_path / "pd", "--crop", 32, 32, "--acquisition", "CORPD_FBK")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "pd").glob("*.h5")) == ["a.h5", "c.h5"]
    res = run("data", "prepare", tmp_path / "src", tmp_path / "none", "--acquisition", "AXT2")
    assert res.exit_code == 2 and "CORPDFS_FBK, CORPD_FBK" in res.output and not (tmp_path / "none").exists()
    assert run("data", "prepare", tmp_path / "src", tmp_path / "all", "--crop", 32, 32).exit_code == 0
    res = run(
        "fit",
        "--data",
        tmp_path / "all",
        "--steps",
        1,
        "--checkpoint-every",
        1,
        "--out",
        tmp_path / "run",
        "--val-fraction",
        0.5,
        *TINY,
    )
    assert res.exit_code == 0, res.output
    import csv

    res = run(
        "evaluate",
        "--model",
        tmp_path / "run",
        "--split",
        "all",
        "--acquisition",
        "CORPDFS_FBK",
        "--out",
        tmp_path / "ev",
    )
    assert res.exit_code == 0, res.output
    assert {r["volume"] for r in csv.DictReader(open(tmp_path / "ev" / "slices.csv"))} == {"b", "d"}
    res = run("evaluate", "--model", tmp_path / "run", "--acquisition", "AXT2", "--out", tmp_path / "ev2")
    assert res.exit_code == 2 and "--acquisition AXT2: no volume has it" in res.output
    res = run(
        "compare",
        tmp_path / "run",
        "--split",
        "all",
        "--acquisition",
        "CORPD_FBK",
        "--no-figures",
        "--out",
        tmp_path / "cmp",
    )
    assert res.exit_code == 0, res.output
    assert {r["volume"] for r in csv.DictReader(open(tmp_path / "cmp" / "slices.csv"))} == {"a", "c"}


@pytest.mark.slow
def test_fit_config_reproduces_a_run_with_options_overriding(tmp_path):
    """--config RUN/config.json starts from that config; options given on the command line win."""
    src = json.loads(
        (ROOT / "kerasrecon" / "pretrained" / "singlecoil-r4" / "config.json").read_text()
    )  # a real run's config
    src["data"]["extra_data"], src["init_from"] = [], None  # its training machine's paths (fine-tuned there)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(src))
    out = tmp_path / "run"
    # The overrides include a tiny network: the real one (5 cascades) takes 20 s to trace for one step.
    small = ["--cascades", 1, "--blocks", 1, "--filters", 8, "--patch-size", 32, "--batch-size", 2]
    small += ["--mask-bank-size", 2]
    res = run("fit", "--config", path, "--data", "demo", "--pretrain-steps", 1, "-R", 6, *small, "--out", out)
    assert res.exit_code == 0, res.output
    got = json.loads((out / "config.json").read_text())
    expected = json.loads(json.dumps(src))
    expected["data"]["data"], expected["pretrain_steps"], expected["mask"]["acceleration"] = "demo", 1, 6.0
    expected["model"].update(cascades=1, blocks=1, filters=8)
    expected["data"].update(patch_size=32, batch_size=2)
    expected["mask"]["bank_size"] = 2
    expected["model"].setdefault("learned_dc", False)
    expected["data"].setdefault("augment", False)  # fields added since the pretrained run, at their defaults
    expected["data"].setdefault("zoom", 1.0)
    expected["data"].setdefault("extra_data", [])
    expected.setdefault("pnp", None)
    expected.setdefault("init_from", None)
    expected["model"].update(
        {"network": "resnet", "levels": 3, "share_weights": False, "bias_free": False, "cg_iters": 0}
        | expected["model"]
    )
    assert got == expected
    path.write_text(json.dumps({**src, "steps": "many"}))
    res = run("fit", "--config", path, "--out", tmp_path / "run2")
    assert res.exit_code == 2 and "--config " in res.output and "steps" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "run2").exists()


def test_fit_config_pretrained_needs_data_and_names_what_is_wrong(tmp_path):
    """--config pretrained:NAME without --data, with an unknown name, or a missing file: one line, exit 2,
    nothing written."""
    out = tmp_path / "run"
    cases = [
        (["--config", "pretrained:singlecoil-r4"], "--config pretrained:singlecoil-r4 needs --data"),
        (["--config", "pretrained:nope", "--data", "demo"], "--config: no pretrained model 'nope'"),
        (["--config", tmp_path / "missing.json", "--data", "demo"], "missing.json: not a file"),
    ]
    for args, needle in cases:
        res = run("fit", *args, "--out", out)
        assert res.exit_code == 2 and needle in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_pretrained_recipe_is_the_shipped_config_without_its_training_paths():
    """kerasrecon.pretrained.recipe: every field of the shipped config.json (read here as plain JSON),
    except the training machine's extra datasets and fine-tuning source."""
    from kerasrecon.pretrained import recipe

    for name in ("singlecoil-r4", "singlecoil-r8", "multicoil-r4"):
        raw = json.loads((ROOT / "kerasrecon" / "pretrained" / name / "config.json").read_text())
        got = recipe(name).to_dict()
        assert got["data"]["extra_data"] == [] and got["init_from"] is None
        raw["data"]["extra_data"], raw["init_from"] = [], None
        for part in ("data", "model", "mask", "loss"):
            assert {k: got[part][k] for k in raw.get(part, {})} == raw.get(part, {}), (name, part)
        assert {k: got[k] for k in raw if not isinstance(raw[k], dict) and k != "pnp"} == {
            k: v for k, v in raw.items() if not isinstance(v, dict) and k != "pnp"
        }
    assert json.loads((ROOT / "kerasrecon/pretrained/multicoil-r4/config.json").read_text())["init_from"]


@pytest.mark.slow
def test_fit_config_pretrained_starts_from_its_recipe(tmp_path):
    """--config pretrained:NAME --data D: the run's config is the model's, with D and the options given."""
    src = json.loads((ROOT / "kerasrecon" / "pretrained" / "singlecoil-r4" / "config.json").read_text())
    small = ["--cascades", 1, "--blocks", 1, "--filters", 8, "--patch-size", 32, "--batch-size", 2]
    out = tmp_path / "run"
    res = run(
        "fit", "--config", "pretrained:singlecoil-r4", "--data", "demo", "--pretrain-steps", 1, *small, "--out", out
    )
    assert res.exit_code == 0, res.output
    got = json.loads((out / "config.json").read_text())
    assert got["data"]["data"] == "demo" and got["pretrain_steps"] == 1 and got["model"]["cascades"] == 1
    assert got["mask"] == {**src["mask"], **{k: got["mask"][k] for k in got["mask"].keys() - src["mask"].keys()}}
    assert (got["lr_schedule"], got["learning_rate"]) == (src["lr_schedule"], src["learning_rate"])
    assert got["data"]["augment"] is True and got["data"]["extra_data"] == [] and got["init_from"] is None
