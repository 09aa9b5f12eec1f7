"""A run's scalar logs: written by :class:`ScalarWriter`, read back as NumPy arrays by
:func:`read_scalars` (training curves in notebooks and reports).

On the TensorFlow backend ``kerasrecon fit`` writes TensorBoard files
``RUN/tensorboard/events.out.tfevents.*`` (``tf.summary``; ``tensorboard --logdir`` shows them); on
JAX, where TensorFlow may be absent, JSON lines ``RUN/tensorboard/scalars.jsonl``
(``{"step": 100, "tag": "train/g_loss", "value": 0.01}``). Tags:
``pretrain/{g_loss,content,psnr}`` during the MSE warm start, ``train/{d_loss,g_loss,content,
adversarial,psnr}`` in GAN steps (every ``--log-every`` steps) and ``val/psnr`` on a fixed held-out
batch at each checkpoint. A resumed run appends new event files; later values of a step win.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kerasrecon.errors import DataError

LOG_DIR = "tensorboard"
JSONL = "scalars.jsonl"


class ScalarWriter:
    """Scalar (and preview image) logs of a run: TensorBoard files on the TensorFlow backend, JSON lines
    elsewhere (images are then skipped). ``enabled=False`` (non-chief workers) writes nothing."""

    def __init__(self, log_dir, enabled: bool = True):
        import keras

        self.log_dir, self.enabled = Path(log_dir), enabled
        self._tf = enabled and keras.backend.backend() == "tensorflow"
        if self._tf:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        elif enabled:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.log_dir / JSONL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
            self._file = os.fdopen(fd, "a")  # O_NOFOLLOW: a planted link cannot redirect the log

    def scalars(self, step: int, values: dict):
        """Log ``{tag: float}`` at ``step``."""
        if not self.enabled:
            return
        if self._tf:
            import tensorflow as tf

            with self._writer.as_default(step=step):
                for tag, v in values.items():
                    tf.summary.scalar(tag, v)
        else:
            for tag, v in values.items():
                self._file.write(json.dumps({"step": int(step), "tag": tag, "value": float(v)}) + "\n")

    def image(self, step: int, tag: str, images: np.ndarray):
        """Log float ``[B, H, W, 1]`` images in [0, 1] (TensorBoard only)."""
        if self.enabled and self._tf:
            import tensorflow as tf

            with self._writer.as_default(step=step):
                tf.summary.image(tag, images, max_outputs=4)

    def flush(self):
        if self.enabled:
            (self._writer if self._tf else self._file).flush()


def read_scalars(run_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalar series of a run.

    Args:
        run_dir: a ``kerasrecon fit`` run directory (or its ``tensorboard/`` folder).

    Returns:
        ``{tag: (steps int64 [N], values float64 [N])}``, steps ascending and unique.

    Raises:
        DataError: no event file and no ``scalars.jsonl`` there.
    """
    root = Path(run_dir)
    root = root / LOG_DIR if (root / LOG_DIR).is_dir() else root
    files = sorted(root.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    if not files and not (root / JSONL).is_file():
        raise DataError(
            f"{run_dir}: no TensorBoard event files (expected {LOG_DIR}/events.out.tfevents.* or {LOG_DIR}/{JSONL})"
        )
    series: dict[str, dict[int, float]] = {}
    if (root / JSONL).is_file():
        for line in (root / JSONL).read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                series.setdefault(rec["tag"], {})[int(rec["step"])] = float(rec["value"])
    if files:
        import tensorflow as tf
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("tensor") and value.tensor.dtype != tf.string.as_datatype_enum:
                    array = tf.make_ndarray(value.tensor)
                    if array.size == 1:
                        series.setdefault(value.tag, {})[int(event.step)] = float(array.reshape(()))
                elif value.HasField("simple_value"):
                    series.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
    return {
        tag: (np.array(sorted(d), dtype=np.int64), np.array([d[k] for k in sorted(d)], dtype=np.float64))
        for tag, d in series.items()
    }
