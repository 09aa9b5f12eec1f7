import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# GPU hosts: TensorFlow (cuBLAS/cuDNN) and XLA use TF32 for float32 matmuls and convolutions on Ampere and
# newer by default (~1e-3 relative error); tolerances here are float32's. Set before any import, so
# subprocesses started by tests inherit it.
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
# JAX's persistent compilation cache, shared by every JAX process the suite starts: a program that
# another test already compiled (the same step, shapes and flags) is loaded instead of compiled again
# (a tiny `fit` on JAX: ~45 s cold, ~12 s warm on 2 cores). The cache key is the whole program, so a
# hit is the same executable. Every program is cached, however quickly it compiled.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"kerasrecon-tests-jax-cache-{os.getuid()}")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# XLA's code generation without LLVM's expensive passes (jax_disable_most_optimizations: backend
# optimisation level 0). Compiling, not running, is most of a JAX test's time here: a tiny GAN step
# compiles in about half the time, and runs in milliseconds either way. XLA's HLO passes (what is
# computed, and its fusions) are unchanged: only LLVM's optimisation of the machine code is skipped.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def random_complex(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def centred_dft_matrix(n: int, inverse: bool = False) -> np.ndarray:
    """The centred orthonormal DFT as an explicit matrix (complex128 ``[n, n]``), written from its
    definition rather than with ``np.fft``: ``F[k, j] = exp(∓2πi (k - c)(j - c) / n) / √n`` with the
    DC index ``c = n // 2`` (sign − forward, + inverse)."""
    idx = np.arange(n) - n // 2
    sign = 1.0 if inverse else -1.0
    return np.exp(sign * 2j * np.pi * np.outer(idx, idx) / n) / np.sqrt(n)


def _ref_dft2(x, inverse: bool):
    x = np.asarray(x)
    fh, fw = centred_dft_matrix(x.shape[-2], inverse), centred_dft_matrix(x.shape[-1], inverse)
    return fh @ x @ fw.T


def ref_fft2c(x):
    """Independent reference: centred orthonormal 2-D DFT over the last two axes, as matrix products
    ``F_H · x · F_Wᵀ`` with :func:`centred_dft_matrix` (complex128)."""
    return _ref_dft2(x, inverse=False)


def ref_ifft2c(k):
    """Independent reference: centred orthonormal inverse 2-D DFT (``F_Hᴴ · k · conj(F_W)``), complex128."""
    return _ref_dft2(k, inverse=True)


@pytest.fixture(autouse=True)
def _float32_policy_after_each_test():
    """kerasrecon passes dtype policies to its builders and never leaves a global one set; this guard
    keeps a test that sets one itself (or a regression) from leaking mixed precision into later tests
    on a GPU host, where ``--precision auto`` means mixed precision."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


# Fixtures that train a model or write a SavedModel. Every test that uses one belongs to the slow tier
# (``make test``), never to the unit tier (``make test-fast``: ``-m "not slow"``, no training).
TRAINING_FIXTURES = {
    "run",
    "start",
    "stepped",
    "reference",
    "trained",
    "foreign_savedmodel",
    "runs",
    "run_dir",
    "export_dir",
    "exported",
}


def pytest_collection_modifyitems(config, items):
    import keras

    tf_only = pytest.mark.skip(reason=f"needs the TensorFlow backend (this run: {keras.backend.backend()})")
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if "tensorflow" in item.keywords and keras.backend.backend() != "tensorflow":
            item.add_marker(tf_only)
