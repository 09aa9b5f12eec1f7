"""Read a run's TensorBoard scalars back as NumPy arrays (training curves in notebooks and reports).

``kerasrecon fit`` writes ``RUN/tensorboard/events.out.tfevents.*`` with ``tf.summary.scalar``:
``pretrain/{g_loss,content,psnr}`` during the MSE warm start, ``train/{d_loss,g_loss,content,
adversarial,psnr}`` in GAN steps (every ``--log-every`` steps) and ``val/psnr`` on a fixed held-out
batch at each checkpoint. A resumed run appends new event files; later values of a step win.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasrecon.errors import DataError

LOG_DIR = "tensorboard"


def read_scalars(run_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalar series of a run.

    Args:
        run_dir: a ``kerasrecon fit`` run directory (or its ``tensorboard/`` folder).

    Returns:
        ``{tag: (steps int64 [N], values float64 [N])}``, steps ascending and unique.

    Raises:
        DataError: no event file there.
    """
    import tensorflow as tf

    root = Path(run_dir)
    root = root / LOG_DIR if (root / LOG_DIR).is_dir() else root
    files = sorted(root.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise DataError(f"{run_dir}: no TensorBoard event files (expected {LOG_DIR}/events.out.tfevents.*)")
    series: dict[str, dict[int, float]] = {}
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("tensor") and value.tensor.dtype != tf.string.as_datatype_enum:
                    array = tf.make_ndarray(value.tensor)
                    if array.size == 1:
                        series.setdefault(value.tag, {})[int(event.step)] = float(array.reshape(()))
                elif value.HasField("simple_value"):
                    series.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
    return {tag: (np.array(sorted(d), dtype=np.int64), np.array([d[k] for k in sorted(d)], dtype=np.float64))
            for tag, d in series.items()}
