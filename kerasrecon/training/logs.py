"""A run's scalar logs: written by :class:`ScalarWriter`, read back as NumPy arrays by
:func:`read_scalars` (training curves in notebooks and reports).

``kerasrecon fit`` writes TensorBoard event files ``RUN/tensorboard/events.out.tfevents.*`` on every
backend (``tensorboard --logdir RUN/tensorboard`` shows them), without TensorFlow: the records are
tensorboard's ``Event`` protos in TFRecord framing (``tensorboard.summary.writer.record_writer``),
scalars as ``simple_value``, preview images as PNG (imageio). Tags: ``pretrain/{g_loss,content,psnr}`` during
the MSE warm start, ``train/{d_loss,g_loss,content,adversarial,psnr}`` in GAN steps (every
``--log-every`` steps) and ``val/psnr`` plus the preview grid on a fixed held-out batch at each
checkpoint. A resumed run appends new event files; later values of a step win. Runs of earlier
versions on JAX wrote JSON lines ``RUN/tensorboard/scalars.jsonl``; :func:`read_scalars` reads those too.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np

from kerasrecon.errors import DataError

LOG_DIR = "tensorboard"
JSONL = "scalars.jsonl"
_COUNTER = itertools.count()


def png_gray(image: np.ndarray) -> bytes:
    """8-bit grayscale PNG of a float ``[H, W]`` image in [0, 1] (imageio, scikit-image's image I/O)."""
    import imageio.v3 as iio

    pixels = np.clip(np.round(np.asarray(image, np.float64) * 255), 0, 255).astype(np.uint8)
    return iio.imwrite("<bytes>", pixels, extension=".png")


class ScalarWriter:
    """Scalar and preview-image logs of a run as TensorBoard event files (any backend, no TensorFlow).
    ``enabled=False`` (non-chief workers) writes nothing."""

    def __init__(self, log_dir, enabled: bool = True):
        self.log_dir, self.enabled = Path(log_dir), enabled
        if not enabled:
            return
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.{next(_COUNTER)}.v2"
        # O_EXCL | O_NOFOLLOW: never append to, or through, a file that is already there
        fd = os.open(self.log_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        self._file = os.fdopen(fd, "wb")
        self._records = RecordWriter(self._file)
        self._write(file_version="brain.Event:2")

    def _write(self, step=None, values=None, **fields):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        event = event_pb2.Event(wall_time=time.time(), **fields)
        if step is not None:
            event.step = int(step)
            event.summary.CopyFrom(summary_pb2.Summary(value=values))
        self._records.write(event.SerializeToString())

    def scalars(self, step: int, values: dict):
        """Log ``{tag: float}`` at ``step``."""
        if self.enabled:
            from tensorboard.compat.proto import summary_pb2

            self._write(step, [summary_pb2.Summary.Value(tag=t, simple_value=float(v)) for t, v in values.items()])

    def image(self, step: int, tag: str, images: np.ndarray):
        """Log float ``[B, H, W, 1]`` images in [0, 1] (the first 4), as TensorBoard's ``TAG/image/i``."""
        if not self.enabled:
            return
        from tensorboard.compat.proto import summary_pb2

        values = []
        for i, img in enumerate(np.asarray(images)[:4, ..., 0]):
            encoded = summary_pb2.Summary.Image(
                height=img.shape[0], width=img.shape[1], colorspace=1, encoded_image_string=png_gray(img)
            )
            values.append(summary_pb2.Summary.Value(tag=f"{tag}/image/{i}", image=encoded))
        self._write(step, values)

    def flush(self):
        if self.enabled:
            self._file.flush()


def _records(path: Path):
    """The records of a TFRecord file (length, masked CRC, data, masked CRC); a truncated last record
    (a run killed while writing) ends the file."""
    with open(path, "rb") as f:
        while len(header := f.read(12)) == 12:
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                return
            yield data


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
        from tensorboard.compat.proto import event_pb2, types_pb2
        from tensorboard.util.tensor_util import make_ndarray
    for path in files:
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("tensor") and value.tensor.dtype != types_pb2.DT_STRING:  # tf.summary.scalar
                    array = make_ndarray(value.tensor)
                    if array.size == 1:
                        series.setdefault(value.tag, {})[int(event.step)] = float(array.reshape(()))
                elif value.HasField("simple_value"):
                    series.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
    return {
        tag: (np.array(sorted(d), dtype=np.int64), np.array([d[k] for k in sorted(d)], dtype=np.float64))
        for tag, d in series.items()
    }
