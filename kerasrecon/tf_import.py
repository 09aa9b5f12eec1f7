"""TensorFlow's import without its start-up lines, for the CLI and for Python users alike.

TensorFlow 2.21 logs through absl before ``absl::InitializeLog()`` runs ("All log messages before
absl::InitializeLog()...", oneDNN, "Could not find cuda drivers"), and those lines ignore every
environment variable (``TF_CPP_MIN_LOG_LEVEL`` included). They are written while ``tensorflow``'s
``__init__`` runs, so ``import kerasrecon`` installs :class:`QuietTensorFlow`, an import hook that
runs that one module with file descriptor 2 pointed at a temporary file, written back only if the
import fails — whoever imports TensorFlow (Keras, kerasrecon, the user). It does nothing once
TensorFlow is imported, and nothing when ``KERASRECON_TF_LOGS=1`` (the CLI's ``--verbose`` sets it).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import os
import sys
import tempfile

LOGS_VARIABLE = "KERASRECON_TF_LOGS"


def keras_backend() -> str:
    """The Keras backend this process uses, found without importing Keras (which would import
    TensorFlow): ``KERAS_BACKEND``, else ``$KERAS_HOME/keras.json``, else ``tensorflow``."""
    if "keras" in sys.modules and hasattr(sys.modules["keras"], "backend"):
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    try:
        with open(os.path.join(home, "keras.json")) as f:
            backend = json.load(f).get("backend", "tensorflow")
        return backend if isinstance(backend, str) else "tensorflow"
    except (OSError, ValueError, AttributeError):  # Keras itself falls back to its default then
        return "tensorflow"


def _verbose() -> bool:
    return os.environ.get(LOGS_VARIABLE, "") not in ("", "0")


class _QuietLoader(importlib.abc.Loader):
    """Runs ``tensorflow/__init__`` with fd 2 captured (the real loader does the work)."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable file descriptor 2 (some embedded interpreters)
            return self._loader.exec_module(module)
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                self._loader.exec_module(module)
            except Exception:
                os.dup2(saved, 2)
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))
                raise
            finally:  # also on a signal (KeyboardInterrupt, the CLI's SIGTERM): fd 2 comes back first
                os.dup2(saved, 2)
                os.close(saved)

    def __getattr__(self, name):  # resource readers and the like: the real loader's
        return getattr(self._loader, name)


class QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Meta-path hook for the top-level ``tensorflow`` module only; removes itself when used."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or _verbose():
            return None
        uninstall()
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Put the hook first on ``sys.meta_path`` unless TensorFlow is already imported (idempotent)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlow())


def uninstall() -> None:
    """Remove the hook (TensorFlow's import then prints what it prints)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, QuietTensorFlow)]


def import_tensorflow_quietly(verbose: bool = False) -> None:
    """Import TensorFlow now (on the TensorFlow backend, when not yet imported): quietly, or with its
    start-up lines when ``verbose`` (which also keeps them for this process)."""
    if verbose:
        os.environ[LOGS_VARIABLE] = "1"
    if "tensorflow" in sys.modules or keras_backend() != "tensorflow":
        return
    if not verbose:
        install()
    import tensorflow  # noqa: F401


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """A meta-path finder under which ``import tensorflow`` fails (see :func:`tensorflow_hidden`)."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@contextlib.contextmanager
def tensorflow_hidden():
    """Within the block ``import tensorflow`` fails as if it were not installed (code that imports it
    only when it is available, such as ``keras.utils.set_random_seed``, then leaves it alone)."""
    finder = _NoTensorFlow()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
