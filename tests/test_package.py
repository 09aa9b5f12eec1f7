"""Package metadata: the version, the changelog and the typing marker agree."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kerasrecon

ROOT = Path(__file__).resolve().parents[1]


def test_changelog_names_the_current_version_and_the_package_is_typed():
    newest = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M).group(1)
    assert newest == kerasrecon.__version__
    assert (ROOT / "kerasrecon" / "py.typed").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("logs", ["", "1"])
def test_tensorflow_start_up_lines_are_held_back_for_python_users(logs):
    """After ``import kerasrecon``, TensorFlow's import (here by Keras) prints none of its absl/oneDNN
    start-up lines; KERASRECON_TF_LOGS=1 keeps them."""
    env = dict(os.environ, KERASRECON_TF_LOGS=logs, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="0")
    code = "import kerasrecon, keras, tensorflow as tf; assert tf.constant(1.0).numpy() == 1.0"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    start_up = "oneDNN custom operations" in res.stderr or "absl::InitializeLog" in res.stderr
    assert start_up == bool(logs), res.stderr[-2000:]
