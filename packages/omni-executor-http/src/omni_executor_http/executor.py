"""``HTTPDiffusionExecutor``: run requests on an OpenAI-compatible image server.

One pooled ``httpx.Client`` (thread-safe) serves every call; ``submit`` runs
up to ``max_connections`` requests at once. Which failures are re-sent is
:mod:`omni_executor_http.retry`; when, core's :mod:`omni_core.retry`. A
server's error answer becomes the request's error in omni's failure class:
omni's own server states it, any other server is classified by status.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx

from omni_core import (
    DiffusionOutput,
    ExecutorDeadError,
    OmniDiffusionRequest,
    OmniError,
    OverloadedError,
    RemoteError,
    RequestTimeoutError,
    RequestValidationError,
)
from omni_core.executors import (
    DiffusionExecutor,
    above,
    at_least,
    call_with_retries,
    decode_png_b64,
    failure_from_fields,
    parse_retry_after,
)
from omni_executor_http.protocol import GENERATIONS_PATH, build_generation_body
from omni_executor_http.retry import (
    MAYBE_RAN_STATUSES,
    RETRY_NOW_STATUSES,
    RetryableHTTPError,
    never_reached_server,
)

API_KEY_ENV = "OMNI_API_KEY"


@dataclass(frozen=True)
class HTTPOptions:
    """Options of the HTTP executor (``config.executor_options``)."""

    base_url: str = "http://127.0.0.1:8000"
    """Server root; ``/v1/images/generations`` is appended."""
    api_key: str | None = None
    """Bearer token; ``None`` reads the environment variable ``api_key_env``."""
    api_key_env: str = API_KEY_ENV
    model: str | None = None
    """Sent as OpenAI's ``model`` field when set (omni's server ignores it)."""
    timeout: float = field(default=600.0, metadata=above(0))
    """Seconds to wait for a response (a generation can be long)."""
    connect_timeout: float = field(default=5.0, metadata=above(0))
    max_connections: int = field(default=64, metadata=at_least(1))
    """Pool size, and how many requests ``submit`` runs at once."""
    max_retries: int = field(default=4, metadata=at_least(0))
    backoff_base: float = field(default=0.25, metadata=above(0))
    backoff_max: float = field(default=10.0, metadata=above(0))

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")


class HTTPDiffusionExecutor(DiffusionExecutor):
    """Client of ``POST /v1/images/generations`` on omni's server or any compatible one."""

    options_class = HTTPOptions
    options: HTTPOptions

    def _init_executor(self) -> None:
        options = self.options
        api_key = options.api_key or os.environ.get(options.api_key_env) or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_concurrent_submits = options.max_connections
        self.client = httpx.Client(
            base_url=options.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(options.timeout, connect=options.connect_timeout),
            limits=httpx.Limits(
                max_connections=options.max_connections, max_keepalive_connections=options.max_connections
            ),
        )

    # ------------------------------------------------------------ requests

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        return self._run_on_pool(self._run, request)

    def _run(self, request: OmniDiffusionRequest) -> DiffusionOutput:
        started = time.perf_counter()
        try:
            body = build_generation_body(request, model=self.options.model)
            payload, attempts = call_with_retries(
                lambda: self._post(body, idempotent=request.seed is not None),
                max_retries=self.options.max_retries,
                base=self.options.backoff_base,
                cap=self.options.backoff_max,
            )
            images = [decode_png_b64(item["b64_json"]) for item in payload["data"]]
        except RetryableHTTPError as exc:
            return DiffusionOutput.failure(request.request_id, _exhausted(exc))
        except OmniError as exc:
            return DiffusionOutput.failure(request.request_id, exc)
        except (KeyError, TypeError, ValueError) as exc:
            error = RemoteError(f"server answered with an unexpected body: {exc!r}")
            return DiffusionOutput.failure(request.request_id, error)
        raw_extras = payload.get("omni")
        extras: dict[str, Any] = raw_extras if isinstance(raw_extras, dict) else {}
        seed = extras.get("seed", request.seed)
        timings = {"total": time.perf_counter() - started, "attempts": float(attempts)}
        server_timings = extras.get("timings")
        if isinstance(server_timings, dict):
            timings.update(
                {f"server_{k}": float(v) for k, v in server_timings.items() if isinstance(v, (int, float))}
            )
        return DiffusionOutput(
            request_id=request.request_id,
            output=images,
            seed=seed if isinstance(seed, int) else request.seed,
            timings=timings,
        )

    def _post(self, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        try:
            response = self.client.post(GENERATIONS_PATH, json=body)
        except httpx.TransportError as exc:
            detail = f"{type(exc).__name__}: {exc or 'connection failed'} ({self.options.base_url})"
            if never_reached_server(exc) or idempotent:
                raise RetryableHTTPError(detail) from exc
            raise RemoteError(
                f"{detail}; not retried because the server may have run it (give the request a seed "
                "to make retries safe)"
            ) from exc
        if response.status_code == 200:
            payload: dict[str, Any] = response.json()
            return payload
        if response.status_code in RETRY_NOW_STATUSES or (
            response.status_code in MAYBE_RAN_STATUSES and idempotent
        ):
            raise RetryableHTTPError(
                f"HTTP {response.status_code}: {_server_error(response).message}",
                status=response.status_code,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        raise _server_error(response)

    # ------------------------------------------------------ rpc, health, stop

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        paths = {"ping": "/health", "health": "/health", "models": "/v1/models"}
        if method not in paths:
            raise AttributeError(
                f"collective_rpc: the HTTP executor supports {sorted(paths)}, not {method!r}"
            )
        response = self.client.get(paths[method], timeout=timeout or self.options.timeout)
        response.raise_for_status()
        return [response.json()]

    def check_health(self) -> None:
        if self.is_shutdown:
            raise ExecutorDeadError("HTTPDiffusionExecutor is shut down")
        try:
            response = self.client.get("/health", timeout=self.options.connect_timeout + 5)
        except httpx.TransportError as exc:
            raise ExecutorDeadError(f"server {self.options.base_url} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise ExecutorDeadError(
                f"server {self.options.base_url} unhealthy: HTTP {response.status_code} {response.text[:200]}"
            )

    def shutdown(self) -> None:
        self.client.close()


def _server_error(response: httpx.Response) -> OmniError:
    """The failure a server's error answer describes, in omni's classes.

    omni's server says its class (``error.omni``); any other OpenAI-compatible
    server is classified from its status: 400/422 name a bad field (``param``),
    408/504 a timeout, anything else is a remote error with the server's words.
    """
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = response.text[:500] or response.reason_phrase
        return RemoteError(f"HTTP {status}: {text}", retryable=False)
    message = str(error.get("message"))
    param = error.get("param") if isinstance(error.get("param"), str) else None
    omni = error.get("omni")
    if isinstance(omni, dict) and isinstance(omni.get("type"), str):
        field = omni.get("field") if isinstance(omni.get("field"), str) else param
        retryable = omni.get("retryable") if isinstance(omni.get("retryable"), bool) else None
        return failure_from_fields(omni["type"], message, field, retryable)
    if status in (400, 422):
        return RequestValidationError(param or "request", message)
    if status in (408, 504):
        return RequestTimeoutError(f"HTTP {status}: {message}")
    where = f" (param: {param})" if param else ""
    return RemoteError(f"HTTP {status}: {message}{where}", retryable=False)


def _exhausted(exc: RetryableHTTPError) -> OmniError:
    message = f"{exc} (gave up after {exc.attempts} attempts)"
    if exc.status in RETRY_NOW_STATUSES:
        return OverloadedError(message, retry_after=exc.retry_after)
    return RemoteError(message, retryable=True)
