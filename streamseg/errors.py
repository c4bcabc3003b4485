"""Errors a user can cause and fix: reported as one line and exit code 2."""


class UserError(Exception):
    """A mistake in the user's input (URI, file, config, model): one clear line, no traceback."""

    exit_code = 2


class ConfigError(UserError):
    """The config file or a command-line override is invalid."""


class SourceError(UserError):
    """A source URI cannot be opened or read."""


class SinkError(UserError):
    """A sink URI cannot be opened or written."""


class ModelError(UserError):
    """A model card or its ONNX file is wrong or inconsistent."""


class BackendError(UserError):
    """An engine backend is unavailable or cannot run the model as asked."""
