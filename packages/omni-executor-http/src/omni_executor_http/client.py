"""One image server, as every HTTP-speaking executor sees it: the POST and how its failures read.

``ImageServerClient`` wraps a pooled ``httpx.Client`` (thread-safe) for one base URL:
``generate`` posts a request (a generation's JSON or an edit's form) and either
returns the JSON answer or raises in omni's failure classes, with
:mod:`omni_executor_http.retry` deciding what may be sent again. The ``http``
executor holds one; the ``external`` executor holds one per server and adds
routing. Both turn an answer into an output with :func:`output_from_payload`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from omni_core import (
    DiffusionOutput,
    ExecutorDeadError,
    OmniDiffusionRequest,
    OmniError,
    RemoteError,
    RequestTimeoutError,
    RequestValidationError,
)
from omni_core.executors import (
    RetryPolicy,
    above,
    at_least,
    decode_png_b64,
    failure_from_fields,
    parse_retry_after,
)
from omni_executor_http.event_stream import PreviewSink, read_event_stream
from omni_executor_http.protocol import WirePayload
from omni_executor_http.retry import (
    MAYBE_RAN_STATUSES,
    RETRY_NOW_STATUSES,
    RetryableHTTPError,
    never_reached_server,
)

API_KEY_ENV = "OMNI_API_KEY"


@dataclass(frozen=True)
class ClientOptions:
    """What talking to one server takes: credentials, timeouts, pool size and the retry budget."""

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
    auth: Literal["google"] | None = None
    """``"google"``: send a Google ID token (Cloud Run, IAP) instead of an API key; ``[google]`` extra."""
    auth_audience: str | None = None
    """The token's audience; ``None``: the server's base URL (what Cloud Run expects)."""

    def __post_init__(self) -> None:
        if self.auth is not None and self.api_key is not None:
            raise ValueError("give api_key or auth='google', not both: each sets the Authorization header")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.backoff_base, self.backoff_max)


def api_key_of(options: ClientOptions) -> str | None:
    """The bearer token: the option, else the environment variable it names (not with ``auth``)."""
    if options.auth is not None:
        return None
    return options.api_key or os.environ.get(options.api_key_env) or None


RPC_PATHS = {"ping": "/health", "health": "/health", "models": "/v1/models"}
"""The GET route each ``collective_rpc`` method maps to on an omni server."""


def rpc_path(method: str, executor: str) -> str:
    if method not in RPC_PATHS:
        raise AttributeError(
            f"collective_rpc: the {executor} executor supports {sorted(RPC_PATHS)}, not {method!r}"
        )
    return RPC_PATHS[method]


class MaybeRanError(RemoteError):
    """The connection failed after the server may have started the request (not re-sent unseeded)."""


class ImageServerClient:
    """A pooled client of one OpenAI-compatible image server."""

    def __init__(self, base_url: str, options: ClientOptions, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.options = options
        auth: httpx.Auth | None = None
        headers = {}
        if options.auth == "google":
            from omni_executor_http.google_auth import GoogleIdTokenAuth

            auth = GoogleIdTokenAuth(options.auth_audience or self.base_url)
        elif api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(options.timeout, connect=options.connect_timeout),
            limits=httpx.Limits(
                max_connections=options.max_connections, max_keepalive_connections=options.max_connections
            ),
        )

    def generate(
        self, wire: WirePayload, *, idempotent: bool, on_preview: PreviewSink | None = None
    ) -> dict[str, Any]:
        """POST ``wire``; the answer, ``RetryableHTTPError`` if it may be sent again, else the failure.

        A streamed request (``wire.streamed``) is read as Server-Sent Events: each preview is
        handed to ``on_preview`` as it arrives, and the completed images become the same answer
        a plain request gets.
        """
        content: dict[str, Any] = (
            {"json": wire.json} if wire.json is not None else {"data": wire.data, "files": wire.files}
        )
        try:
            with self.http.stream("POST", wire.path, **content) as response:
                if response.status_code == 200 and wire.streamed:
                    return read_event_stream(response, on_preview)
                response.read()
        except httpx.TransportError as exc:
            detail = f"{type(exc).__name__}: {exc or 'connection failed'} ({self.base_url})"
            if never_reached_server(exc) or idempotent:
                raise RetryableHTTPError(detail) from exc
            raise MaybeRanError(
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
                f"HTTP {response.status_code} from {self.base_url}: {server_error(response).message}",
                status=response.status_code,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        raise server_error(response)

    def check_health(self, timeout: float) -> None:
        """``ExecutorDeadError`` unless ``GET /health`` answers 200 within ``timeout``."""
        try:
            response = self.http.get("/health", timeout=timeout)
        except httpx.TransportError as exc:
            raise ExecutorDeadError(f"server {self.base_url} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise ExecutorDeadError(
                f"server {self.base_url} unhealthy: HTTP {response.status_code} {response.text[:200]}"
            )

    def get_json(self, path: str, timeout: float) -> Any:
        response = self.http.get(path, timeout=timeout)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self.http.close()


def output_from_payload(request: OmniDiffusionRequest, payload: dict[str, Any]) -> DiffusionOutput:
    """The output a server's 200 answer describes (images decoded, its timings kept as ``server_*``)."""
    try:
        images = [decode_png_b64(item["b64_json"]) for item in payload["data"]]
    except (KeyError, TypeError, ValueError) as exc:
        error = RemoteError(f"server answered with an unexpected body: {exc!r}")
        return DiffusionOutput.failure(request.request_id, error)
    raw_extras = payload.get("omni")
    extras: dict[str, Any] = raw_extras if isinstance(raw_extras, dict) else {}
    seed = extras.get("seed", request.seed)
    timings: dict[str, float] = {}
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


def server_error(response: httpx.Response) -> OmniError:
    """The failure a server's error answer describes, in omni's classes.

    omni's server says its class (``error.omni``); any other OpenAI-compatible
    server is classified from its status: 400/422 name a bad field (``param``),
    408/504 a timeout, anything else is a remote error with the server's words.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    return failure_from_body(response.status_code, body, response.text[:500] or response.reason_phrase)


def failure_from_body(status: int, body: Any, text: str) -> OmniError:
    """An error body (an answer's, or a stream's ``error`` event) in omni's classes."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return RemoteError(f"HTTP {status}: {text}", retryable=False)
    message = str(error.get("message"))
    param = error.get("param") if isinstance(error.get("param"), str) else None
    omni = error.get("omni")
    if isinstance(omni, dict) and isinstance(omni.get("type"), str):
        field_name = omni.get("field") if isinstance(omni.get("field"), str) else param
        retryable = omni.get("retryable") if isinstance(omni.get("retryable"), bool) else None
        return failure_from_fields(omni["type"], message, field_name, retryable)
    if status in (400, 422):
        return RequestValidationError(param or "request", message)
    if status in (408, 504):
        return RequestTimeoutError(f"HTTP {status}: {message}")
    where = f" (param: {param})" if param else ""
    return RemoteError(f"HTTP {status}: {message}{where}", retryable=False)
