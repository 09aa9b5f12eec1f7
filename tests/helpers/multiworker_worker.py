"""One worker of the multi-worker test: TF_CONFIG comes from the environment.

argv: RUN_DIR DUMP.npz STEPS. Trains with --strategy multiworker and dumps this worker's final G and D
weights to DUMP.npz (the library writes checkpoints from the chief only).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig  # noqa: E402
from kerasrecon.training.trainer import train  # noqa: E402


def config(strategy):
    return TrainConfig(
        data=DataConfig(patch_size=32, batch_size=4),
        model=ModelConfig(blocks=1, filters=8),
        loss=LossConfig(content="mse"),
        steps=int(sys.argv[3]),
        checkpoint_every=1,
        log_every=1,
        learning_rate=1e-3,
        seed=4,
        strategy=strategy,
    )


if __name__ == "__main__":
    strategy = os.environ.get("KERASRECON_TEST_STRATEGY", "multiworker")
    result = train(config(strategy), sys.argv[1])
    weights = result.gan.generator.get_weights() + result.gan.discriminator.get_weights()
    np.savez(sys.argv[2], *weights, step=result.step)
