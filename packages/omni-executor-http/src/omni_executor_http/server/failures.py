"""The one table from omni's failure classes to HTTP answers.

A failed request's ``DiffusionOutput`` names its class; this decides the
status, OpenAI's error ``type``/``code`` and whether a ``Retry-After`` goes
with it, and the body also carries the class itself (``error.omni``) so
omni's HTTP executor raises the same class on its side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omni_core import DiffusionOutput
from omni_executor_http.protocol import APIError, wire_field


@dataclass(frozen=True)
class HTTPFailure:
    status: int
    code: str
    retry_after: bool = False


FAILURE_STATUS: dict[str, HTTPFailure] = {
    "RequestValidationError": HTTPFailure(400, "invalid_value"),
    "RequestCancelledError": HTTPFailure(409, "request_cancelled"),
    "RequestTimeoutError": HTTPFailure(504, "timeout", retry_after=True),
    "OverloadedError": HTTPFailure(429, "overloaded", retry_after=True),
    "WorkerDiedError": HTTPFailure(503, "worker_died", retry_after=True),
    "ExecutorDeadError": HTTPFailure(503, "executor_dead", retry_after=True),
    "ModelLoadError": HTTPFailure(503, "model_unavailable", retry_after=True),
    "ModelError": HTTPFailure(500, "model_error"),
    "RemoteError": HTTPFailure(502, "upstream_error"),
}
UNKNOWN_FAILURE = HTTPFailure(500, "model_error")


def api_error_for(output: DiffusionOutput) -> APIError:
    """The HTTP answer for a failed output."""
    failure = FAILURE_STATUS.get(output.error_type or "", UNKNOWN_FAILURE)
    field = output.error_field
    param = wire_field(field) if field else None
    message = output.error or "generation failed"
    if param:
        message = f"{param}: {message}"  # the name the client wrote, as in param
    error = APIError(
        failure.status,
        message,
        param=param,
        code=failure.code,
        omni={"type": output.error_type, "field": field, "retryable": output.retryable},
    )
    if failure.retry_after:
        error.retry_after = output.retry_after or 1.0
    return error


def retry_after_header(error: APIError) -> dict[str, str] | None:
    """``Retry-After`` (whole seconds, at least 1) for answers that say "not now": 429, 503, 504."""
    if error.retry_after is None and error.status not in (429, 503):
        return None
    return {"Retry-After": str(max(1, math.ceil(error.retry_after or 1.0)))}
