import numpy as np
import pytest

from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig
from kerasrecon.data.demo import load_demo
from kerasrecon.data.pipeline import training_dataset
from kerasrecon.errors import ConfigError
from kerasrecon.training.precision import resolve_jit, resolve_precision
from kerasrecon.training.step_tf import step_values
from kerasrecon.training.trainer import build_gan


def cfg(precision):
    return TrainConfig(
        data=DataConfig(patch_size=32, batch_size=2),
        model=ModelConfig(blocks=1, filters=8),
        loss=LossConfig(content="hybrid", vgg_weights="none"),
        precision=precision,
        seed=2,
    )


def seeded_gan(precision):
    """build_gan does not seed (train() does): seed here so every precision starts from the same weights."""
    import keras

    keras.utils.set_random_seed(2)
    return build_gan(cfg(precision))


@pytest.fixture(scope="module")
def batch():
    return next(iter(training_dataset([load_demo(num_slices=30)], cfg("float32"))))


@pytest.fixture(scope="module")
def reference(batch):
    return {k: float(v) for k, v in step_values(seeded_gan("float32"), batch).items()}


@pytest.mark.parametrize("precision, rtol", [("mixed_bfloat16", 0.1), ("mixed_float16", 0.05)])
def test_mixed_precision_step_close_to_float32(batch, reference, precision, rtol):
    import keras

    gan = seeded_gan(precision)
    assert keras.mixed_precision.global_policy().name == "float32"  # the models carry the policy, not the process
    assert gan.generator.get_layer("g_block01_conv1").dtype_policy.name == precision
    assert gan.generator.output.dtype == "float32" and gan.discriminator.output.dtype == "float32"
    if precision == "mixed_float16":
        assert isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
    values = {k: float(v) for k, v in step_values(gan, batch).items()}
    assert all(np.isfinite(v) for v in values.values())
    # The first step's losses come from the same initial weights: they differ only by rounding.
    for k in ("d_loss", "content"):
        assert values[k] == pytest.approx(reference[k], rel=rtol), (k, values[k], reference[k])


def test_jit_step_matches_eager_graph(batch, reference):
    import tensorflow as tf

    gan = seeded_gan("float32")
    values = {k: float(v) for k, v in tf.function(lambda b: step_values(gan, b), jit_compile=True)(batch).items()}
    for k in ("d_loss", "content", "g_loss"):
        assert values[k] == pytest.approx(reference[k], rel=1e-3)


@pytest.mark.tensorflow
def test_auto_choices_per_device(monkeypatch):
    """The choice logic with the device list replaced, so the test means the same on CPU and GPU hosts."""
    from kerasrecon.training import precision

    monkeypatch.setattr(precision, "_gpus", lambda: [])
    assert resolve_precision("auto") == "float32"
    assert resolve_jit(None) is False and resolve_jit(True) is True
    monkeypatch.setattr(precision, "_gpus", lambda: [(9, 0)])
    assert resolve_precision("auto") == "mixed_bfloat16" and resolve_jit(None) is True and resolve_jit(False) is False
    monkeypatch.setattr(precision, "_gpus", lambda: [(9, 0), (7, 5)])  # the oldest GPU decides
    assert resolve_precision("auto") == "mixed_float16"
    assert resolve_precision("float32") == "float32"
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_precision("float8")


@pytest.mark.tensorflow
def test_float64_reaches_the_outputs_and_the_slope_is_exact():
    """--precision float64, the reference arithmetic of the backend test: everything float64 on TF."""
    import keras

    from kerasrecon.models.discriminator import LeakyReLU, build_discriminator
    from kerasrecon.models.generator import build_generator

    assert resolve_precision("float64") == "float64"
    g, d = build_generator(blocks=1, filters=4, dtype="float64"), build_discriminator(16, dtype="float64")
    rng = np.random.default_rng(0)
    x = {
        "zero_filled": rng.normal(size=(1, 16, 16, 2)),
        "masked_kspace": np.zeros((1, 16, 16, 2)),
        "mask": np.zeros((1, 16, 16)),
    }
    out = g(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float64"
    assert keras.backend.standardize_dtype(d(rng.random((2, 16, 16, 1))).dtype) == "float64"
    assert {w.dtype for w in g.weights + d.weights} == {"float64"}
    v = np.array([-1.0, 3.0])  # 0.2 in float64, not float32's 0.2000000030 (tf.nn.leaky_relu's attribute)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(LeakyReLU(negative_slope=0.2, dtype="float64")(v)), [-0.2, 3.0]
    )
    assert keras.backend.standardize_dtype(keras.config.dtype_policy().name) == "float32"  # nothing global


def test_float64_is_refused_on_jax(monkeypatch):
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ConfigError, match="float64 is TensorFlow-only"):
        resolve_precision("float64")


@pytest.mark.tensorflow
def test_float32_turns_tensor_float_32_off_on_both_backends(monkeypatch):
    """--precision float32 is full float32 on GPUs too: TensorFlow's TF32 execution off, JAX's default
    matmul/convolution precision "highest"; mixed policies leave both as they were."""
    import jax
    import tensorflow as tf

    from kerasrecon.training import precision

    before_tf = tf.config.experimental.tensor_float_32_execution_enabled()
    before_jax = jax.config.jax_default_matmul_precision
    try:
        tf.config.experimental.enable_tensor_float_32_execution(True)
        precision.full_precision_matmuls("mixed_bfloat16")
        assert tf.config.experimental.tensor_float_32_execution_enabled()
        build_gan(cfg("float32"))  # a float32 run turns it off
        assert not tf.config.experimental.tensor_float_32_execution_enabled()
        monkeypatch.setattr(precision.keras.backend, "backend", lambda: "jax")
        jax.config.update("jax_default_matmul_precision", None)
        precision.full_precision_matmuls("mixed_bfloat16")
        assert jax.config.jax_default_matmul_precision is None
        precision.full_precision_matmuls("float32")
        assert jax.config.jax_default_matmul_precision == "highest"
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before_tf)
        jax.config.update("jax_default_matmul_precision", before_jax)
