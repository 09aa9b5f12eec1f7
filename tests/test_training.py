import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kerasrecon import losses
from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig
from kerasrecon.data.demo import load_demo
from kerasrecon.data.pipeline import training_dataset
from kerasrecon.errors import ConfigError
from kerasrecon.training import checkpoint as ckpt
from kerasrecon.training.step_tf import pretrain_values, step_values
from kerasrecon.training.trainer import TrainingDiverged, build_gan, train

ROOT = Path(__file__).resolve().parents[1]


def tiny(content="mse", **kw):
    base = dict(
        data=DataConfig(patch_size=32, batch_size=4),
        model=ModelConfig(blocks=2, filters=16),
        loss=LossConfig(content=content, vgg_weights="none"),
        seed=1,
        checkpoint_every=2,
        log_every=1,
        precision="float32",
    )  # "auto" would pick mixed precision on a GPU host and leak the policy
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def batch():
    return next(iter(training_dataset([load_demo(num_slices=8)], tiny())))


@pytest.mark.slow
@pytest.mark.parametrize("content", ["mse", "feature", "hybrid", "l1ssim"])
def test_each_loss_updates_g_and_d_every_step(batch, content):
    gan = build_gan(tiny(content))
    for _ in range(2):
        g0 = [w.copy() for w in gan.generator.get_weights()]
        d0 = [w.copy() for w in gan.discriminator.get_weights()]
        logs = step_values(gan, batch)
        assert all(np.isfinite(float(v)) for v in logs.values())
        assert any(not np.array_equal(a, b) for a, b in zip(g0, gan.generator.get_weights()))
        assert any(not np.array_equal(a, b) for a, b in zip(d0, gan.discriminator.get_weights()))


@pytest.mark.slow
def test_mse_generator_overfits_one_batch():
    # Patches with brain content (slices from the middle of the demo), seeded; the zero-initialised
    # output conv makes step 1 start at the zero-filled PSNR.
    cfg = tiny("mse", learning_rate=3e-4, data=DataConfig(patch_size=48, batch_size=4))
    batch = next(iter(training_dataset([load_demo(num_slices=30)], cfg)))
    gan = build_gan(cfg)
    first = float(pretrain_values(gan, batch)["psnr"])
    for _ in range(60):
        last = float(pretrain_values(gan, batch)["psnr"])
    assert last > first + 4.0, (first, last)


@pytest.mark.slow
def test_two_replicas_equal_one_replica():
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "helpers" / "replica_step.py"), "hybrid"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["replicas"] == [1, 2]
    assert res["g_moved"] > 1e-3 and res["d_moved"] > 1e-3  # the step did something measurable
    # In float64 (see the helper's docstring) the two differ only by summation order, ~1e-15; a real
    # bug (a per-replica mean, per-replica BatchNorm statistics) shows up at 1e-3 or more.
    assert res["max_abs_diff_g"] < 1e-10 and res["max_abs_diff_d"] < 1e-10
    for k in ("d_loss", "g_loss", "content", "adversarial"):
        assert res["values_one"][k] == pytest.approx(res["values_two"][k], rel=1e-10)
    assert "data.batch_size 3 is not divisible by the 2 replicas" in res["divisible_error"]
    # --bias-free: ScaleNorm's batch statistic is the global batch's on two replicas too.
    assert res["bias_free_g_moved"] > 1e-3 and res["bias_free_max_abs_diff_g"] < 1e-10


@pytest.mark.slow
def test_train_resume_and_checkpoint_contents(tmp_path):
    out = tmp_path / "run"
    r1 = train(tiny(steps=3, pretrain_steps=1), out)
    assert (r1.start_step, r1.step) == (0, 4)
    assert ckpt.latest_checkpoint(out)[0] == 4
    saved = ckpt.read_config(out)
    assert saved == tiny(steps=3, pretrain_steps=1)
    r2 = train(tiny(steps=5, pretrain_steps=1), out)
    assert (r2.start_step, r2.step) == (4, 6)
    assert sorted(p.name for p in (out / "checkpoints").glob("ckpt-*")) == [
        "ckpt-00000002",
        "ckpt-00000004",
        "ckpt-00000006",
    ]
    assert list((out / "tensorboard").iterdir())


@pytest.mark.slow
def test_step_values_are_read_only_at_log_and_checkpoint_steps(tmp_path, monkeypatch):
    """No host round trip per step: the loop reads the steps' values every log_every steps, at
    checkpoints and at the end (all steps since the last read, oldest first), and reports progress then."""
    from kerasrecon.training import trainer

    reads, seen, real = [], [], trainer._read_values

    def spy(pending, *args):
        reads.append([s for s, _, _ in pending])
        return real(pending, *args)

    monkeypatch.setattr(trainer, "_read_values", spy)
    result = train(
        tiny(steps=7, log_every=3, checkpoint_every=5), tmp_path / "run", progress=lambda s, t, _: seen.append(s)
    )
    assert reads == [[1, 2, 3], [4, 5], [6], [7]]
    assert seen == [0, 3, 5, 6, 7]
    assert all(isinstance(v, float) and np.isfinite(v) for v in result.logs.values())


@pytest.mark.slow
def test_resume_refuses_different_config(tmp_path):
    out = tmp_path / "run"
    train(tiny(steps=2), out)
    before = (out / "checkpoints" / "latest.json").read_text()
    with pytest.raises(ConfigError, match=r"loss.content: 'mse' -> 'hybrid'"):
        train(tiny("hybrid", steps=4), out)
    assert (out / "checkpoints" / "latest.json").read_text() == before


@pytest.mark.slow
def test_nan_guard_names_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(tiny(steps=2), out)
    monkeypatch.setattr(losses, "mse_loss", lambda t, r: tf.reduce_mean(t - r, axis=[1, 2, 3]) * np.nan)
    # Values are read at step 5 (log and checkpoint): the error names step 3, where NaN first appeared.
    with pytest.raises(TrainingDiverged, match="at step 3; .*last good checkpoint is step 2"):
        train(tiny(steps=10, log_every=5, checkpoint_every=5), out)
    step, path = ckpt.latest_checkpoint(out)
    assert step == 2 and (path / "generator.weights.h5").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "cfg_kw, match",
    [
        (dict(data=DataConfig(patch_size=512, batch_size=4)), "data.patch_size 512"),
        (dict(loss=LossConfig(content="feature", vgg_weights="/nonexistent/vgg.h5")), "loss.vgg_weights"),
    ],
)
def test_bad_options_leave_nothing(tmp_path, cfg_kw, match):
    with pytest.raises(ConfigError, match=match):
        train(tiny(**cfg_kw), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_out_not_a_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a kerasrecon run"):
        train(tiny(), tmp_path / "run")
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "kerasrecon_cli.main",
        "fit",
        "--loss",
        "mse",
        "--batch-size",
        "2",
        "--patch-size",
        "32",
        "--blocks",
        "1",
        "--filters",
        "8",
        "--checkpoint-every",
        "2",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd + ["--steps", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = out / "checkpoints" / "latest.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if latest.exists() and json.loads(latest.read_text())["step"] >= 4:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint at step >= 4 within 240 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    step, path = ckpt.latest_checkpoint(out)
    assert step >= 4
    # The checkpoint is complete and loadable.
    _, g, loaded_step = ckpt.load_generator(out)
    assert loaded_step == step
    res = subprocess.run(cmd + ["--steps", str(step + 2)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"trained steps {step}..{step + 2}" in res.stdout
    assert f"resuming {out} at step {step} (checkpoint {out / 'checkpoints' / f'ckpt-{step:08d}'})" in res.stderr
    # stdout is a pipe: plain progress lines, no carriage-return redraws of a progress bar.
    assert "\r" not in res.stdout and f"step {step + 2}/{step + 2} " in res.stdout
    assert ckpt.latest_checkpoint(out)[0] == step + 2


@pytest.mark.slow
def test_seed_fixes_initial_weights():
    """train() seeds (build_gan does not touch the global RNG): the same seed builds the same weights."""
    import keras

    def seeded(seed):
        keras.utils.set_random_seed(seed)
        return build_gan(tiny(seed=seed))

    a, b = seeded(7), seeded(7)
    for x, y in zip(
        a.generator.get_weights() + a.discriminator.get_weights(),
        b.generator.get_weights() + b.discriminator.get_weights(),
    ):
        np.testing.assert_array_equal(x, y)
    c = seeded(8)
    assert not np.array_equal(a.discriminator.get_weights()[0], c.discriminator.get_weights()[0])


@pytest.mark.slow
def test_cosine_schedule_follows_the_formula_across_resume(tmp_path):
    """--lr-schedule cosine: lr(t) = lr0 · (0.01 + 0.99 · ½(1 + cos(π t / T))), T = pretrain + GAN steps,
    and a resumed run continues the same curve (the step count lives in the checkpointed optimizer)."""
    import math

    from kerasrecon.training.checkpoint import restore_latest
    from kerasrecon.training.trainer import build_gan

    cfg = TrainConfig(
        data=DataConfig(patch_size=32, batch_size=2, val_fraction=0.05),
        model=ModelConfig(blocks=1, filters=8),
        loss=LossConfig(content="mse", vgg_weights="none"),
        steps=2,
        pretrain_steps=4,
        learning_rate=1e-3,
        lr_schedule="cosine",
        checkpoint_every=3,
        precision="float32",
    )
    train(cfg, tmp_path / "run")
    gan = build_gan(cfg)
    step = restore_latest(tmp_path / "run", gan)
    assert step == 6
    g_iters = int(gan.g_optimizer.iterations.numpy())
    assert g_iters == 6  # 4 pretrain + 2 GAN generator updates
    expected = 1e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * g_iters / 6)))
    assert float(gan.g_optimizer.learning_rate) == pytest.approx(expected, rel=1e-5)
    assert float(gan.g_optimizer.learning_rate) == pytest.approx(1e-5, rel=1e-4)
    gan.g_optimizer.iterations.assign(2)  # a third of the way: ½(1 + cos(π/3)) = 0.75
    assert float(gan.g_optimizer.learning_rate) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.75), rel=1e-5)
    # D steps only in the GAN phase (2 updates) and reads the curve at the global step 4 + its own
    assert int(gan.d_optimizer.iterations.numpy()) == 2
    assert float(gan.d_optimizer.learning_rate) == pytest.approx(expected, rel=1e-5)
    gan.d_optimizer.iterations.assign(0)  # the first GAN step: t = 4 of 6, ½(1 + cos(2π/3)) = 0.25
    assert float(gan.d_optimizer.learning_rate) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.25), rel=1e-5)


@pytest.mark.slow
def test_optimizer_state_is_keyed_by_variable_path(tmp_path):
    """optimizers.npz names each Adam slot by its variable's path (not its position); 0.1's positional
    files still load; a slot this model does not have is an error, never skipped."""
    from kerasrecon.errors import DataError

    out = tmp_path / "run"
    result = train(tiny(steps=2, checkpoint_every=2), out)
    path = out / "checkpoints" / "ckpt-00000002"
    arrays = dict(np.load(path / "optimizers.npz"))
    assert "g/g_conv_in_kernel_momentum" in arrays and "d/d_conv1_kernel_velocity" in arrays
    assert arrays["g/iteration"] == 2
    live = {v.path.split("/", 1)[1]: v.numpy() for v in result.gan.g_optimizer.variables}
    np.testing.assert_array_equal(arrays["g/g_block01_conv1_kernel_momentum"], live["g_block01_conv1_kernel_momentum"])

    def restored():
        gan = build_gan(tiny())
        ckpt.restore_checkpoint(path, gan)
        return {v.path.split("/", 1)[1]: v.numpy() for v in gan.g_optimizer.variables}

    np.testing.assert_array_equal(
        restored()["g_block01_conv1_kernel_momentum"], live["g_block01_conv1_kernel_momentum"]
    )
    # The 0.1 layout (g_0, g_1, ... in the optimizer's variable order) loads to the same values.
    old = {
        f"{p}_{i}": np.asarray(v.numpy())
        for p, opt in (("g", result.gan.g_optimizer), ("d", result.gan.d_optimizer))
        for i, v in enumerate(opt.variables)
    }
    np.savez(path / "optimizers.npz", **old)
    (path / "state.json").unlink()  # no checksums: the loader accepts it as an old checkpoint
    np.testing.assert_array_equal(
        restored()["g_block01_conv1_kernel_momentum"], live["g_block01_conv1_kernel_momentum"]
    )
    # Checkpoints written while the discriminator's last layer was named d_prob resume under d_logit.
    assert "d/d_logit_kernel_momentum" in arrays
    renamed = {k.replace("d/d_logit_", "d/d_prob_"): v for k, v in arrays.items()}
    np.savez(path / "optimizers.npz", **renamed)
    gan = build_gan(tiny())
    ckpt.restore_checkpoint(path, gan)
    d_slots = {v.path.split("/", 1)[1]: v.numpy() for v in gan.d_optimizer.variables}
    np.testing.assert_array_equal(d_slots["d_logit_kernel_momentum"], arrays["d/d_logit_kernel_momentum"])
    np.savez(path / "optimizers.npz", **arrays, **{"g/g_extra_kernel_momentum": np.zeros(3)})
    with pytest.raises(DataError, match="optimizer state does not match"):
        ckpt.restore_checkpoint(path, build_gan(tiny()))


@pytest.mark.slow
def test_unet_with_shared_weights_trains_and_restores(tmp_path):
    """``--network unet --share-weights``: one nested U-Net for both cascades is trained, checkpointed
    and restored: a fresh GAN restored from the run's checkpoint holds the trained generator's weights
    and Adam state exactly."""
    import keras

    model = ModelConfig(filters=4, cascades=2, network="unet", levels=1, share_weights=True)
    cfg = tiny(steps=1, pretrain_steps=1, model=model, data=DataConfig(patch_size=16, batch_size=2))
    result = train(cfg, tmp_path / "run")
    fresh = build_gan(cfg)
    assert [lay.name for lay in fresh.generator.layers if isinstance(lay, keras.Model)] == ["g_unet"]
    ckpt.restore_checkpoint(ckpt.latest_checkpoint(tmp_path / "run")[1], fresh)
    trained, restored = result.gan.generator.get_weights(), fresh.generator.get_weights()
    assert any(np.abs(w).max() > 0 for w in trained[-2:])  # the zero-initialised output conv moved
    for a, b in zip(trained, restored):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(result.gan.g_optimizer.variables, fresh.g_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
