"""Exceptions raised by kerasrecon. The CLI turns them into a one-line message and exit code 2."""


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
