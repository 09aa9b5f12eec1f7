"""Exceptions raised by kerasrecon. The CLI turns them into a one-line message and exit code 2."""


class KerasReconError(ValueError):
    """Bad input: the message names the file/option, what was expected and what was received."""


class DataError(KerasReconError):
    """A data file or directory is missing, empty, corrupt or has the wrong layout."""


class ConfigError(KerasReconError):
    """An option or configuration value is invalid or conflicts with an existing run."""
