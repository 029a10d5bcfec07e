"""omni's failure vocabulary, shared by every package and every wire format.

Each class subclasses the builtin a caller would naturally catch
(``ValueError`` for bad input, ``RuntimeError`` for a broken engine,
``TimeoutError`` for a timeout) so code written against plain Python
exceptions keeps working, while omni code can catch the precise type.

A request's failure crosses process and network boundaries as three plain
values on :class:`~omni_core.request.DiffusionOutput`: ``error_type`` (one of
the class names in :data:`FAILURE_CLASSES`), ``error_field`` (the request
field at fault, if any) and ``retryable`` (whether sending the same request
again can help). :func:`failure_from_fields` turns them back into the
matching exception, so ``raise_for_error`` raises the class the executor
raised, whichever executor and wire it came through.
"""

from __future__ import annotations

from typing import ClassVar

MAX_FIELD_NAME_CHARS = 200
"""A field name longer than this (only a client's unknown key can be) is cut when echoed back."""


def encodable(text: str) -> str:
    """``text`` with lone surrogates (``"\\ud800"``, valid in a Python str, invalid in UTF-8) escaped.

    Errors echo names and values a client sent; one that cannot be encoded would turn a
    400 into a 500 at JSON encoding time. Every :class:`OmniError` passes its text here.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class OmniError(Exception):
    """Base class of every error omni raises on purpose.

    ``retryable`` says whether the same request may succeed if sent again
    (later, or to another instance); a class sets the default, an instance
    may override it (a remote error is retryable only for some statuses).
    """

    default_retryable: ClassVar[bool] = False

    def __init__(self, message: str = "", *, field: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(encodable(message))
        self.field = None if field is None else encodable(field)
        self.retryable = self.default_retryable if retryable is None else retryable

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


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
    """An executor option is unknown, has the wrong type or is out of range."""


class ConfigError(OmniError, ValueError, TypeError):
    """A config field is out of its declared range or of the wrong type; ``field`` names it.

    Both a ``ValueError`` and a ``TypeError``: code written against either keeps working.
    """


class ModelLoadError(OmniError, RuntimeError):
    """The model could not be loaded; the message names the path or hub id."""


# ---------------------------------------------------------- request failures


class RequestValidationError(OmniError, ValueError):
    """A request field is invalid; ``field`` names it, ``reason`` says what is wrong and the fix.

    The two travel apart (``DiffusionOutput.error_field`` and ``error``) and are joined
    only where a person reads them (``str(exc)`` is ``"field: reason"``), so no layer
    has to add the field to a message or strip it off again.
    """

    field: str

    def __init__(self, field: str, message: str) -> None:
        field = encodable(field)
        if len(field) > MAX_FIELD_NAME_CHARS:  # a client-chosen name (an unknown key) echoed back
            field = field[: MAX_FIELD_NAME_CHARS - 3] + "..."
        super().__init__(message, field=field, retryable=False)

    @property
    def reason(self) -> str:
        return self.message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class RequestCancelledError(OmniError, RuntimeError):
    """The request was cancelled (aborted, or preempted) before it finished."""


class RequestTimeoutError(OmniError, TimeoutError):
    """The request ran out of time (its deadline, or a remote's time limit)."""

    default_retryable = True


class OverloadedError(OmniError, RuntimeError):
    """The executor or server is full; retry later (``retry_after`` seconds, if known)."""

    default_retryable = True

    def __init__(
        self,
        message: str = "",
        *,
        field: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, field=field, retryable=retryable)
        self.retry_after = retry_after


class WorkerDiedError(OmniError, RuntimeError):
    """The worker running the request died; the executor goes on with the others."""

    default_retryable = True


class ExecutorDeadError(OmniError, RuntimeError):
    """The executor can no longer run requests (shut down, or every worker is gone)."""


class ModelError(OmniError, RuntimeError):
    """The pipeline raised while running the request; the message holds its error."""


class RemoteError(OmniError, RuntimeError):
    """A remote service (HTTP server, Lambda) failed the request; ``retryable`` says if that may pass."""


FAILURE_CLASSES: dict[str, type[OmniError]] = {
    cls.__name__: cls
    for cls in (
        RequestValidationError,
        RequestCancelledError,
        RequestTimeoutError,
        OverloadedError,
        WorkerDiedError,
        ExecutorDeadError,
        ModelError,
        RemoteError,
        ModelLoadError,
    )
}
"""Every class a request's failure can carry, by the name the wire uses."""


def classify_exception(error: BaseException) -> OmniError:
    """``error`` as a member of the vocabulary: omni's own as is, anything else as a :class:`ModelError`."""
    if isinstance(error, OmniError) and type(error).__name__ in FAILURE_CLASSES:
        return error
    if isinstance(error, OmniError):  # a subclass: report the vocabulary class it belongs to
        for cls in FAILURE_CLASSES.values():
            if isinstance(error, cls):
                return failure_from_fields(cls.__name__, str(error), error.field, error.retryable)
    detail = str(error) or repr(error)
    return ModelError(f"{type(error).__name__}: {detail}")


def failure_from_fields(
    error_type: str | None, message: str, field: str | None = None, retryable: bool | None = None
) -> OmniError:
    """The exception that ``error_type``/``error_field``/``retryable`` describe.

    An unknown ``error_type`` (from an older or foreign peer) becomes a
    :class:`RemoteError` whose message keeps the type name.
    """
    cls = FAILURE_CLASSES.get(error_type or "")
    if cls is None:
        label = f"{error_type}: " if error_type else ""
        return RemoteError(f"{label}{message}", field=field, retryable=bool(retryable))
    if cls is RequestValidationError:
        return RequestValidationError(field or "request", message)
    return cls(message, field=field, retryable=retryable)
