"""Losses of the GAN, in ``keras.ops`` (any Keras backend). All return per-example values ``[B]``
float32; the training step reduces them over the *global* batch (sum / global batch size) so that
gradients summed over replicas equal single-device gradients on the same global batch.

* ``mse``: mean over pixels of ``(|ŷ| - |y|)²``.
* ``feature``: mean squared difference of VGG19 ``block5_conv4`` activations (φ5,4, SRGAN's "VGG54"),
  each feature map multiplied by ``VGG_FEATURE_SCALE = 1/12.75``. Magnitudes (≈ [0, 1] after
  normalisation) are scaled by ``VGG_INPUT_SCALE = 255``, replicated to 3 channels and put through
  ``keras.applications.vgg19.preprocess_input`` (caffe: BGR, ImageNet mean subtracted).
* ``hybrid``: ``α·mse + β·feature``.
* ``ssim``: ``1 − SSIM`` as fastMRI's ``SSIMLoss`` (and E2E-VarNet's training loss): 7×7 uniform
  window, K1 = 0.01, K2 = 0.03, sample covariance (×49/48), data range = the target's maximum per
  example, mean over the window positions inside the image — the value of skimage's
  ``structural_similarity`` with those settings (tested).
* ``l1ssim``: ``0.1·L1 + 0.9·(1 − SSIM)`` (ATOMMIC's weighting).
* adversarial: ``BCE(D(ŷ), 1)``; discriminator: ``BCE(D(y), 1) + BCE(D(ŷ), 0)``, computed from D's
  logit z (``D = sigmoid(z)``): ``BCE(z, 1) = softplus(−z)``, ``BCE(z, 0) = softplus(z)``. The same
  cross-entropy as on probabilities, but it keeps its gradient when D is sure: on clipped
  probabilities, a saturated sigmoid (``|z| > ~17`` rounds to 0 or 1 in float32) has zero gradient,
  and a discriminator that got there once stayed there for good (measured: d_loss frozen at 15.94,
  adversarial 0, from the first 20 GAN steps of a run at lr 1e-3).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras
from keras import ops

from kerasrecon.config import VGG_LOSSES, LossConfig
from kerasrecon.errors import ConfigError, arg
from kerasrecon.models.conv import Conv2D, chunked_kernel_grad
from kerasrecon.models.generator import wide_dtype

log = logging.getLogger(__name__)

VGG_FEATURE_SCALE = 1 / 12.75  # SRGAN φ5,4 rescaling
VGG_INPUT_SCALE = 255.0  # VGG19 expects 0..255 pixel values before preprocess_input
VGG_LAYER = "block5_conv4"
VGG_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


def keras_cache_file() -> Path:
    """Where Keras caches the ImageNet VGG19 no-top weights (``$KERAS_HOME/models/...``)."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(home) / "models" / VGG_NOTOP_FILE


def build_vgg_features(weights: str = "imagenet", dtype=None) -> keras.Model:
    """Frozen VGG19 up to ``block5_conv4``.

    Args:
        weights: ``imagenet`` (Keras cache, downloaded if online), a path to ``VGG_NOTOP_FILE``, or
            ``none`` (random weights; for tests and smoke runs only, logs a warning).
        dtype: Keras dtype policy to build it in (``keras.applications`` takes none, so the global
            policy is set for the build and restored afterwards); default: the global policy.

    Returns:
        ``keras.Model`` float32 ``[B, H, W, 3]`` (preprocessed) -> ``[B, H/16, W/16, 512]``.

    Raises:
        ConfigError: weights cannot be found or loaded; names ``--vgg-weights``.
    """
    previous = keras.config.dtype_policy()
    if dtype is not None:
        keras.config.set_dtype_policy(dtype)
    try:
        return _build_vgg(weights)
    finally:
        keras.config.set_dtype_policy(previous)


def _build_vgg(weights: str) -> keras.Model:
    # The input in the (build-time global) policy's wide dtype: keras.applications declares a float32
    # Input, which would round a float64 reference's VGG input to float32.
    shape = (None, None, 3)
    inp = keras.Input(shape, dtype=wide_dtype())
    if weights == "none":
        log.warning(f"{arg('loss.vgg_weights')} none: the feature loss uses a RANDOM VGG19; results are not meaningful")
        vgg = keras.applications.VGG19(include_top=False, weights=None, input_tensor=inp)
    elif weights == "imagenet":
        import contextlib
        import io
        import sys

        # Keras prints "Downloading data from https://..." before it tries: held back, so an offline
        # failure is the one line below, and replayed when the download worked.
        held = io.StringIO()
        try:
            with contextlib.redirect_stdout(held):
                vgg = keras.applications.VGG19(include_top=False, weights="imagenet", input_tensor=inp)
            sys.stdout.write(held.getvalue())
        except Exception as exc:  # Keras raises a bare Exception("URL fetch failure on ...") offline
            raise ConfigError(
                f"{arg('loss.vgg_weights')} imagenet: {VGG_NOTOP_FILE} is not in the Keras cache "
                f"({keras_cache_file()}) and could not be downloaded ({str(exc).splitlines()[0][:80]}); "
                f"pass {arg('loss.vgg_weights')}=PATH to that file"
            ) from None
    else:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(
                f"{arg('loss.vgg_weights')} {weights}: file not found (expected {VGG_NOTOP_FILE}, 'imagenet' or 'none')"
            )
        vgg = keras.applications.VGG19(include_top=False, weights=None, input_tensor=inp)
        try:
            vgg.load_weights(str(path))
        except Exception as exc:
            raise ConfigError(
                f"{arg('loss.vgg_weights')} {weights}: cannot load VGG19 no-top weights ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0][:120]})"
            ) from None
    features = keras.Model(inp, vgg.get_layer(VGG_LAYER).output, name="vgg19_phi54")
    if chunked_kernel_grad():  # JAX on one CPU device: the deep 2×2-6×6 layers run as matrix products
        features = Conv2D.replacing(features)
    features.trainable = False
    return features


def describe_vgg_weights(weights: str) -> str:
    """One sentence saying which VGG19 weights ``--vgg-weights weights`` means, for tables and notebooks.

    ``imagenet`` and a path name the file and its SHA-256 (when the file exists), so a reader can tell
    exactly which weights produced a feature-loss result; ``none`` says the features are random.
    """
    from kerasrecon.io import sha256_file

    if weights == "none":
        return (
            f"random VGG19 ({arg('loss.vgg_weights')} none): the feature term is a pipeline check, not the thesis' loss"
        )
    path = keras_cache_file() if weights == "imagenet" else Path(weights)
    where = "the Keras cache" if weights == "imagenet" else "a local file"
    if not path.is_file():
        return f"ImageNet VGG19 ({VGG_NOTOP_FILE}) from {where}, {path}: not present here"
    return f"ImageNet VGG19 ({VGG_NOTOP_FILE}) from {where}, {path}, sha256 {sha256_file(path)[:16]}…"


def vgg_preprocess(magnitude):
    """float32 ``[B, H, W, 1]`` magnitude (≈ [0, 1]) -> VGG19 input ``[B, H, W, 3]``."""
    rgb = ops.repeat(magnitude * VGG_INPUT_SCALE, 3, axis=-1)
    return keras.applications.vgg19.preprocess_input(rgb)


def mse_loss(target, recon):
    """Per-example pixel MSE. target, recon: float32 ``[B, H, W, 1]`` magnitudes -> ``[B]``."""
    return ops.mean(ops.square(ops.subtract(target, recon)), axis=(1, 2, 3))


SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03
L1SSIM_WEIGHTS = (0.1, 0.9)  # (L1, 1 − SSIM)


def ssim_loss(target, recon):
    """Per-example ``1 − SSIM`` (fastMRI's ``SSIMLoss``). target, recon: ``[B, H, W, 1]`` magnitudes
    (H, W >= 7) -> ``[B]`` float32 (float64 for float64 inputs)."""
    dtype = wide_dtype(recon.dtype)
    t, r = ops.cast(target, dtype), ops.cast(recon, dtype)
    data_range = ops.max(t, axis=(1, 2, 3), keepdims=True)
    c1, c2 = ops.square(SSIM_K1 * data_range), ops.square(SSIM_K2 * data_range)

    def mean(x):  # the window mean at every position where the window fits
        return ops.average_pool(x, SSIM_WINDOW, strides=1, padding="valid")

    ux, uy = mean(t), mean(r)
    n = SSIM_WINDOW * SSIM_WINDOW
    cov = n / (n - 1)
    vx, vy = cov * (mean(t * t) - ux * ux), cov * (mean(r * r) - uy * uy)
    vxy = cov * (mean(t * r) - ux * uy)
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return 1.0 - ops.mean(s, axis=(1, 2, 3))


def l1ssim_loss(target, recon):
    """Per-example ``0.1·mean|ŷ − y| + 0.9·(1 − SSIM)``: ``[B, H, W, 1]`` -> ``[B]``."""
    w_l1, w_ssim = L1SSIM_WEIGHTS
    l1 = ops.mean(ops.abs(ops.subtract(target, recon)), axis=(1, 2, 3))
    return w_l1 * ops.cast(l1, wide_dtype(recon.dtype)) + w_ssim * ssim_loss(target, recon)


def feature_loss(target, recon, vgg):
    """Per-example VGG54 feature MSE (features ×1/12.75). Magnitudes ``[B, H, W, 1]`` -> ``[B]``."""
    f_target, f_recon = (vgg(vgg_preprocess(x), training=False) for x in (target, recon))
    f_target, f_recon = (ops.cast(f, wide_dtype(f.dtype)) * VGG_FEATURE_SCALE for f in (f_target, f_recon))
    return ops.mean(ops.square(ops.subtract(f_target, f_recon)), axis=(1, 2, 3))


class ContentLoss:
    """``mse`` | ``feature`` | ``hybrid`` | ``ssim`` | ``l1ssim`` content loss as one callable.

    Args:
        kind: str, one of ``CONTENT_LOSSES``.
        vgg: feature extractor from ``build_vgg_features`` (required for feature/hybrid).
        mse_weight: α for hybrid (default ``LossConfig.mse_weight``).
        feature_weight: β for hybrid (default ``LossConfig.feature_weight``).

    Call: ``(target [B, H, W, 1], recon [B, H, W, 1]) -> [B]`` float32.
    """

    def __init__(
        self,
        kind: str,
        vgg=None,
        mse_weight: float = LossConfig.mse_weight,
        feature_weight: float = LossConfig.feature_weight,
    ):
        if kind not in CONTENT_LOSSES:
            raise ConfigError(f"{arg('loss.content')} must be one of {sorted(CONTENT_LOSSES)}. Received: {kind!r}")
        if kind in VGG_LOSSES and vgg is None:
            raise ConfigError(f"{arg('loss.content')} {kind} needs VGG19 features ({arg('loss.vgg_weights')})")
        self.kind, self.vgg = kind, vgg
        self.mse_weight, self.feature_weight = mse_weight, feature_weight

    def __call__(self, target, recon):
        return CONTENT_LOSSES[self.kind](self, target, recon)


CONTENT_LOSSES = {
    "mse": lambda c, t, r: mse_loss(t, r),
    "feature": lambda c, t, r: feature_loss(t, r, c.vgg),
    "hybrid": lambda c, t, r: c.mse_weight * mse_loss(t, r) + c.feature_weight * feature_loss(t, r, c.vgg),
    "ssim": lambda c, t, r: ssim_loss(t, r),
    "l1ssim": lambda c, t, r: l1ssim_loss(t, r),
}


def bce(logit, label: float):
    """Per-example binary cross-entropy of ``sigmoid(logit)`` against a constant label, from the logit
    ``[B, 1]`` (stable for any logit: ``label·softplus(−z) + (1 − label)·softplus(z)``) -> ``[B]``."""
    z = ops.reshape(ops.cast(logit, wide_dtype(logit.dtype)), (-1,))
    return label * ops.softplus(-z) + (1 - label) * ops.softplus(z)


def adversarial_loss(fake_logit):
    """Generator's adversarial term ``BCE(D(ŷ), 1)``: D's logits ``[B, 1]`` -> ``[B]`` (unweighted)."""
    return bce(fake_logit, 1.0)


def discriminator_loss(real_logit, fake_logit):
    """``BCE(D(y), 1) + BCE(D(ŷ), 0)``: D's logits, two ``[B, 1]`` -> ``[B]``."""
    return bce(real_logit, 1.0) + bce(fake_logit, 0.0)
