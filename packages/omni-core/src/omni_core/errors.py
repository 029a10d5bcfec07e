"""Exception types shared by every omni package.

They subclass the builtin a caller would naturally catch (``ValueError`` for
bad input, ``RuntimeError`` for a broken engine) so that code written
against plain Python exceptions keeps working, while omni code can catch the
precise type.
"""

from __future__ import annotations


class OmniError(Exception):
    """Base class of every error omni raises on purpose."""


class ExecutorResolutionError(OmniError, ValueError):
    """``executor_class`` is a string that names no executor."""


class ExecutorNotInstalledError(ExecutorResolutionError):
    """A known shorthand whose package is not installed.

    Carries the package to install so tools (``omni executors``) can say it.
    """

    def __init__(self, message: str, *, shorthand: str, package: str) -> None:
        super().__init__(message)
        self.shorthand = shorthand
        self.package = package


class ExecutorOptionsError(OmniError, ValueError):
    """An executor option is unknown or has the wrong type."""


class RequestValidationError(OmniError, ValueError):
    """A request field is invalid; ``field`` names it, the message says the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class ModelLoadError(OmniError, RuntimeError):
    """The model could not be loaded; the message names the path or hub id."""


class ExecutorDeadError(OmniError, RuntimeError):
    """The executor can no longer run requests (a worker died, it was shut down)."""


class RequestCancelledError(OmniError, RuntimeError):
    """The request was cancelled before it finished."""
