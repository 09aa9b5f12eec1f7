"""Precision and XLA choices: ``--precision auto|float32|mixed_float16|mixed_bfloat16|float64`` and ``--jit``.

``auto`` picks what is fastest on the detected device: on a GPU with compute capability >= 8.0
(Ampere, Hopper) ``mixed_bfloat16`` (tensor cores, no loss scaling needed), on older GPUs
``mixed_float16`` (with dynamic loss scaling of both optimizers), on CPU ``float32``. ``--jit`` (XLA
compilation of the train step) defaults to on for GPUs and off for CPUs, where XLA's convolutions
are slower than oneDNN's. Under mixed precision the FFTs, data consistency, the generator's output
convolution and residual, the discriminator's output and all losses stay float32. ``float32`` (and
``float64``) means full-precision convolutions and matrix products on GPUs too: TensorFloat-32, which
both backends otherwise use there (10-bit mantissa), is turned off (:func:`full_precision_matmuls`).
"""

from __future__ import annotations

import keras

from kerasrecon.config import PRECISIONS
from kerasrecon.errors import ConfigError, arg


def _gpus() -> list[tuple[int, int]]:
    """Compute capabilities ``(major, minor)`` of the GPUs the Keras backend sees (empty on CPU)."""
    if keras.backend.backend() == "jax":
        import jax

        return [
            tuple(int(x) for x in str(getattr(d, "compute_capability", "0.0")).split(".")[:2])
            for d in jax.devices()
            if d.platform == "gpu"
        ]
    import tensorflow as tf

    return [
        tuple(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)))
        for g in tf.config.list_physical_devices("GPU")
    ]


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy name for ``precision`` on this machine and backend.

    ``auto``: ``mixed_bfloat16`` when every GPU has compute capability >= 8 (Ampere, Hopper),
    ``mixed_float16`` on older GPUs (TensorFlow only), ``float32`` on CPU (``mixed_bfloat16`` is
    0.71× the step time on CPUs with AVX512_BF16 or AMX, at the same quality in the runs measured, but
    it is chosen explicitly: docs/training.md). On JAX ``mixed_float16``
    is refused (no loss scaling in the JAX step): use ``mixed_bfloat16``, which needs none.
    ``float64`` is the reference precision for numerical checks (every layer and loss in float64;
    slow; TensorFlow only, as Keras on JAX computes BatchNormalization in float32 whatever the policy).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"{arg('precision')} must be one of {', '.join(PRECISIONS)}. Received: {precision!r}")
    jax_backend = keras.backend.backend() == "jax"
    if precision == "mixed_float16" and jax_backend:
        raise ConfigError(
            f"{arg('precision')} mixed_float16 is TensorFlow-only (loss scaling); "
            f"on JAX use {arg('precision')} mixed_bfloat16"
        )
    if precision == "float64" and jax_backend:
        raise ConfigError(
            f"{arg('precision')} float64 is TensorFlow-only: on JAX, Keras promotes float64 with float32 to "
            "float32 (BatchNormalization computes in float32), so it would not be a float64 reference"
        )
    if precision != "auto":
        return precision
    caps = _gpus()
    if not caps:
        return "float32"
    return "mixed_bfloat16" if min(caps) >= (8, 0) or jax_backend else "mixed_float16"


def full_precision_matmuls(policy: str) -> None:
    """Under a ``float32`` or ``float64`` policy, turn TensorFloat-32 off for this process.

    On Ampere and newer GPUs both backends compute float32 convolutions and matrix products in TF32
    by default (XLA's default precision on JAX, ``enable_tensor_float_32_execution`` on TensorFlow):
    float32 storage with a 10-bit mantissa, so ``float32`` would not mean float32 arithmetic (on an
    H200 the measured effect on singlecoil-r4's recipe was within run-to-run variation;
    docs/training.md). This sets JAX's
    ``jax_default_matmul_precision`` to ``"highest"`` or TensorFlow's TF32 execution off; on CPUs
    neither changes anything. Mixed policies are left alone: they chose reduced precision already.
    """
    if policy not in ("float32", "float64"):
        return
    if keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    else:
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)


def resolve_jit(jit: bool | None) -> bool:
    """``jit`` if given, else True on GPU machines and False on CPU-only ones (TensorFlow). The JAX
    step is always ``jax.jit``-compiled, whatever this says."""
    return bool(_gpus()) if jit is None else bool(jit)
