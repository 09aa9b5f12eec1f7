"""Exceptions raised by kerasrecon, and how their messages name arguments.

The CLI turns the exceptions into a one-line message and exit code 2. A message names what the caller
passed: library code writes ``arg("data.patch_size")`` or ``arg("coil_maps")`` — the Python
argument or config field — and a front end that calls the library under :func:`argument_names`
(the CLI, with its option of each name) gets its own spelling (``--patch-size``) instead.
"""

from __future__ import annotations

import contextlib
import contextvars

_ARGUMENT_NAMES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("kerasrecon_argument_names", default=None)


def arg(name: str) -> str:
    """How an error message names the argument or config field ``name`` for the current caller: the
    name itself, or its spelling in the front end running it (see :func:`argument_names`)."""
    names = _ARGUMENT_NAMES.get()
    return names.get(name, name) if names else name


@contextlib.contextmanager
def argument_names(names: dict):
    """Within the block, :func:`arg` spells each key of ``names`` as its value (e.g. ``{"data.patch_size":
    "--patch-size"}``); the CLI runs every command under its option map."""
    token = _ARGUMENT_NAMES.set({**(_ARGUMENT_NAMES.get() or {}), **names})
    try:
        yield
    finally:
        _ARGUMENT_NAMES.reset(token)


class KerasReconError(ValueError):
    """Bad input: the message names the file/option, what was expected and what was received."""


class DataError(KerasReconError):
    """A data file or directory is missing, empty, corrupt or has the wrong layout."""


class ConfigError(KerasReconError):
    """An option or configuration value is invalid or conflicts with an existing run."""


class OutputError(ConfigError, DataError):
    """An output cannot be written as asked: a link, an overlap with an input, an existing result without
    ``--force``, or a write that failed (full disk); nothing under the output's name was changed. (Both a
    ``ConfigError`` and a ``DataError``: the commands raised either for these cases before.)"""
