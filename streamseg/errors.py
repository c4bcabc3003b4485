"""Errors a user can cause and fix: reported as one line and exit code 2 (and failures of
third-party tools, reported the same way with exit code 1)."""

import contextlib
import logging


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


class ToolFailure(UserError):
    """A third-party quantizer or converter (ONNX Runtime's quantizer, NNCF, OpenVINO, the float16
    converter) failed on a model: reported as one line like a user mistake, naming the model, the
    step and the library and its version, but with exit code 1 (the run failed, not the user)."""

    exit_code = 1


def library_version(name: str) -> str:
    """`name version` of an installed distribution (`name` alone when its version cannot be read)."""
    from importlib import metadata

    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


@contextlib.contextmanager
def third_party(model: str, step: str, library: str):
    """`with third_party(model, step, library):` turns an exception raised inside a third-party
    library into a ToolFailure of one line; the traceback goes to the debug log. UserErrors pass."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        logging.getLogger("streamseg").debug("%s: %s failed", model, step, exc_info=True)
        text = " ".join(str(error).split()) or "no message"
        raise ToolFailure(
            f"{model}: {step} failed inside {library_version(library)}: {type(error).__name__}: {text[:300]}"
        ) from None
