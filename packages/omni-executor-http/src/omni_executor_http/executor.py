"""``HTTPDiffusionExecutor``: run requests on an OpenAI-compatible image server.

One pooled ``httpx.Client`` (thread-safe) serves every call; ``submit`` runs
up to ``max_connections`` requests at once. Retries follow
:mod:`omni_executor_http.retry`, driven by tenacity. A server's 4xx/5xx
answer becomes the request's error with the server's own message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from omni_core.errors import ExecutorDeadError, RequestValidationError
from omni_core.executors.base import DiffusionExecutor
from omni_core.images import decode_png_b64
from omni_core.request import DiffusionOutput, OmniDiffusionRequest
from omni_executor_http.protocol import GENERATIONS_PATH, build_generation_body
from omni_executor_http.retry import (
    MAYBE_RAN_STATUSES,
    RETRY_NOW_STATUSES,
    RetryableHTTPError,
    backoff_seconds,
    never_reached_server,
    parse_retry_after,
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
    timeout: float = 600.0
    """Seconds to wait for a response (a generation can be long)."""
    connect_timeout: float = 5.0
    max_connections: int = 64
    """Pool size, and how many requests ``submit`` runs at once."""
    max_retries: int = 4
    backoff_base: float = 0.25
    backoff_max: float = 10.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        for name in ("timeout", "connect_timeout", "backoff_base", "backoff_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_connections < 1 or self.max_retries < 0:
            raise ValueError("max_connections must be >= 1 and max_retries >= 0")


class HTTPRequestError(Exception):
    """A final (non-retryable) failure of one request."""

    def __init__(self, message: str, *, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


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

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        if self.is_shutdown:
            raise ExecutorDeadError("HTTPDiffusionExecutor is shut down")
        if len(requests) == 1:
            return [self._run(requests[0])]
        futures: list[Future[DiffusionOutput]] = [self.submit(request) for request in requests]
        return [future.result() for future in futures]

    def _execute_one(self, request: OmniDiffusionRequest) -> DiffusionOutput:
        return self._run(request)

    def _run(self, request: OmniDiffusionRequest) -> DiffusionOutput:
        started = time.perf_counter()
        try:
            body = build_generation_body(request, model=self.options.model)
        except RequestValidationError as exc:
            return DiffusionOutput.failure(request.request_id, exc)
        attempts = 0

        def wait(retry_state: tenacity.RetryCallState) -> float:
            outcome = retry_state.outcome
            error = outcome.exception() if outcome is not None else None
            retry_after = error.retry_after if isinstance(error, RetryableHTTPError) else None
            return backoff_seconds(
                retry_state.attempt_number, self.options.backoff_base, self.options.backoff_max, retry_after
            )

        def attempt() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            return self._post(body, idempotent=request.seed is not None)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.options.max_retries + 1),
            wait=wait,
            retry=tenacity.retry_if_exception_type(RetryableHTTPError),
            reraise=True,
        )
        try:
            payload = retrying(attempt)
            images = [decode_png_b64(item["b64_json"]) for item in payload["data"]]
        except RetryableHTTPError as exc:
            return DiffusionOutput.failure(
                request.request_id,
                f"{exc} (gave up after {attempts} attempts)",
                error_type="HTTPRetryExhausted",
            )
        except HTTPRequestError as exc:
            return DiffusionOutput.failure(request.request_id, str(exc), error_type=exc.error_type)
        except (KeyError, TypeError, ValueError) as exc:
            return DiffusionOutput.failure(
                request.request_id,
                f"server answered with an unexpected body: {exc!r}",
                error_type="HTTPProtocolError",
            )
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
            raise HTTPRequestError(
                f"{detail}; not retried because the server may have run it (give the request a seed "
                "to make retries safe)",
                error_type="HTTPConnectionError",
            ) from exc
        if response.status_code == 200:
            payload: dict[str, Any] = response.json()
            return payload
        message = _server_message(response)
        if response.status_code in RETRY_NOW_STATUSES or (
            response.status_code in MAYBE_RAN_STATUSES and idempotent
        ):
            raise RetryableHTTPError(
                f"HTTP {response.status_code}: {message}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        kind = "HTTPClientError" if response.status_code < 500 else "HTTPServerError"
        raise HTTPRequestError(f"HTTP {response.status_code}: {message}", error_type=kind)

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


def _server_message(response: httpx.Response) -> str:
    """The OpenAI error message if the body has one, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        param = f" (param: {error['param']})" if error.get("param") else ""
        return f"{error.get('message')}{param}"
    return str(body)[:500]
