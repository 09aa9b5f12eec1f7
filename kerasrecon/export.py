"""Export a trained generator as a TensorFlow SavedModel that needs nothing but TensorFlow.

Signatures (dynamic batch and image size):

* ``serving_default(kspace_real, kspace_imag, mask)``: k-space float32 ``[B, H, W]`` (real and
  imaginary parts, centred orthonormal convention) and mask float32 ``[B, H, W]`` or ``[H, W]`` →
  ``image`` float32 ``[B, H, W]`` (magnitude, original scale) and ``complex_image`` float32
  ``[B, H, W, 2]``. Inside the graph: masking, zero-filling, per-slice normalisation by
  ``1 / max|zero_filled|``, the generator, data consistency, and undoing the normalisation.
* ``from_zero_filled(zero_filled)``: a zero-filled complex image float32 ``[B, H, W, 2]`` → ``image``
  and ``complex_image`` (same normalisation; no data consistency, as there is no k-space).

Metadata: ``assets/kerasrecon.json`` and the string variable ``metadata_json`` of the loaded object:
kerasrecon and TensorFlow versions, the training config, step, normalisation, k-space convention and
the signature documentation.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from kerasrecon import __version__
from kerasrecon.errors import ConfigError
from kerasrecon.kspace import from_channels, ifft2c, to_channels

METADATA_FILE = "kerasrecon.json"
NORMALISATION = "per slice: x / max|zero_filled| before the generator, multiplied back after"
CONVENTION = "centred orthonormal 2-D DFT over the last two axes: fftshift(fft2(ifftshift(x)), norm='ortho')"
SIGNATURES = {
    "serving_default": "kspace_real, kspace_imag float32 [B,H,W]; mask float32 [B,H,W] or [H,W] "
                       "-> image float32 [B,H,W] (magnitude), complex_image float32 [B,H,W,2]",
    "from_zero_filled": "zero_filled float32 [B,H,W,2] -> image float32 [B,H,W], complex_image float32 [B,H,W,2]",
}
EPS = 1e-8


class ReconModule(tf.Module):
    """k-space → image reconstruction with the generator, DC and normalisation inside the graph."""

    def __init__(self, generator, metadata: dict):
        super().__init__(name="kerasrecon")
        self.generator = generator
        # A string Variable is saved with the module (a constant would not be), so bare TensorFlow
        # reads it as ``tf.saved_model.load(path).metadata_json.numpy()``.
        self.metadata_json = tf.Variable(json.dumps(metadata, sort_keys=True), trainable=False, name="metadata_json")

    def _run(self, zero_filled, masked_kspace, mask):
        peak = tf.reduce_max(tf.abs(zero_filled), axis=[1, 2], keepdims=True)
        scale = tf.cast(1.0 / tf.maximum(peak, EPS), tf.complex64)
        out = self.generator({"zero_filled": to_channels(zero_filled * scale),
                              "masked_kspace": to_channels(masked_kspace * scale), "mask": mask}, training=False)
        recon = from_channels(out) / scale
        return {"image": tf.abs(recon), "complex_image": to_channels(recon)}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.float32, name="kspace_real"),
                                  tf.TensorSpec([None, None, None], tf.float32, name="kspace_imag"),
                                  tf.TensorSpec(None, tf.float32, name="mask")])
    def serve(self, kspace_real, kspace_imag, mask):
        kspace = tf.complex(kspace_real, kspace_imag)
        tf.debugging.assert_rank_in(mask, [2, 3], message="mask must be [H, W] or [B, H, W]")
        mask = tf.broadcast_to(mask, tf.shape(kspace_real))
        masked = kspace * tf.cast(mask, tf.complex64)
        return self._run(ifft2c(masked), masked, mask)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2], tf.float32, name="zero_filled")])
    def from_zero_filled(self, zero_filled):
        zf = from_channels(zero_filled)
        zeros = tf.zeros(tf.shape(zero_filled)[:3], tf.float32)
        return self._run(zf, tf.zeros_like(zf), zeros)  # an empty mask makes DC the identity


def export_run(run_dir, out, force: bool = False) -> Path:
    """Export a run's newest generator to a SavedModel at ``out``.

    Args:
        run_dir: a ``kerasrecon fit`` output directory.
        out: export directory; must not exist or be empty unless ``force``.
        force: replace a non-empty ``out``.

    Returns:
        ``out`` as a Path.
    """
    from kerasrecon.training.checkpoint import load_generator

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"--out {out}: exists and is not empty; pass --force to replace it")
    cfg, generator, step = load_generator(run_dir)
    metadata = {
        "kerasrecon_version": __version__, "tensorflow_version": tf.__version__, "run": str(run_dir), "step": step,
        "train_config": cfg.to_dict(), "normalisation": NORMALISATION, "kspace_convention": CONVENTION,
        "signatures": SIGNATURES,
    }
    module = ReconModule(generator, metadata)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve,
                                                          "from_zero_filled": module.from_zero_filled})
        (tmp / "assets").mkdir(exist_ok=True)
        (tmp / "assets" / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_export(path):
    """Load an exported SavedModel; returns ``(loaded object, metadata dict)``. Raises on a foreign one."""
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise ConfigError(f"--model {path}: not a SavedModel directory (no saved_model.pb)")
    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in loaded.signatures or not hasattr(loaded, "metadata_json"):
        raise ConfigError(f"--model {path}: not a kerasrecon export (signatures: {sorted(loaded.signatures)})")
    return loaded, json.loads(loaded.metadata_json.numpy().decode())
