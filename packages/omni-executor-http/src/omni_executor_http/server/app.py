"""The ASGI app: routes, auth, body cap, draining, metrics.

Starlette gives routing and request/response types without a second schema
layer: bodies are validated by :mod:`omni_executor_http.protocol`, which
uses core's validator, so the server rejects exactly what the runner would,
before anything reaches the model. Generation awaits ``engine.submit()``,
so concurrent HTTP requests reach the executor together and batch.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from omni_core import DiffusionEngine, DiffusionOutput, OmniDiffusionRequest, OmniError, RequestLimits
from omni_core.executors import ProgressEvent, above, at_least, declare
from omni_executor_http.output import OutputOptions, usage_for
from omni_executor_http.protocol import (
    EDIT_IMAGE_FIELDS,
    EDIT_MASK_FIELD,
    EDITS_PATH,
    GENERATIONS_PATH,
    IMAGE_CONTENT_PATH,
    MAX_JSON_DEPTH,
    APIError,
    ParsedRequest,
    form_values,
    invalid,
    parse_edit_request,
    parse_generation_request,
    parse_json_body,
)
from omni_executor_http.server.failures import api_error_for, retry_after_header
from omni_executor_http.server.image_store import DEFAULT_IMAGE_URL_TTL, ImageStore
from omni_executor_http.server.metrics import ServerMetrics
from omni_executor_http.server.playground_routes import playground_asset, playground_page
from omni_executor_http.server.streaming import (
    DONE,
    completed_events,
    error_event,
    next_item,
    preview_events,
    sse,
)
from omni_executor_http.server.uploads import UploadBudget

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
INLINE_ENCODE_PIXELS = 256 * 256
MAX_FORM_FIELDS = 64
"""Text fields one edit form may hold (OpenAI's has about 15, plus ``extra_params[name]`` ones)."""
METRICS_RPC_SECONDS = 2.0
"""How long a /metrics scrape waits for the workers' batching figures (skipped past it)."""


@dataclass
class ServerSettings:
    """What an operator configures; ``omni serve`` builds its flags from these declarations."""

    api_key: str | None = field(
        default=None,
        metadata=declare(
            help="require 'Authorization: Bearer KEY' [env: OMNI_API_KEY]", envvar="OMNI_API_KEY"
        ),
    )
    served_model_name: str = field(default="omni", metadata=declare(help="the id /v1/models reports"))
    max_body_bytes: int = field(
        default=64 * 1024, metadata=at_least(1, help="largest JSON body (and an edit form's text fields)")
    )
    limits: RequestLimits = field(default_factory=RequestLimits)
    body_timeout: float = field(default=30.0, metadata=above(0, help="seconds to send the body, then 408"))
    """Seconds a client has to send its whole body; then 408 and the connection closes."""
    max_json_depth: int = MAX_JSON_DEPTH
    """Deepest nesting a body may have (omni's bodies are flat; a deep one is an attack)."""
    max_image_bytes: int = field(
        default=8 * 1024 * 1024, metadata=at_least(1, help="largest image or mask file an edit may upload")
    )
    """Largest file an edit may upload (each image, and the mask)."""
    max_upload_bytes_in_flight: int | None = field(
        default=None,
        metadata=at_least(
            1,
            help="edit bodies read and parsed at once, in bytes; past it new ones get 429 with Retry-After "
            "[default: two maximum-size edits]",
        ),
    )
    """Edit bodies read and parsed at once (:mod:`.uploads`); ``None``: two maximum-size edits."""
    image_url_ttl: float = field(
        default=DEFAULT_IMAGE_URL_TTL,
        metadata=above(0, help="seconds an image made for response_format=url stays readable at its URL"),
    )
    """Seconds an image made for ``response_format=url`` stays readable (:mod:`.image_store`)."""
    max_stored_images: int = 1024
    max_stored_bytes: int = 256 * 1024 * 1024

    @property
    def max_edit_body_bytes(self) -> int:
        """An edit's whole multipart form: its images and mask at their cap, plus the text fields' cap."""
        return (self.limits.max_input_images + 1) * self.max_image_bytes + self.max_body_bytes

    @property
    def upload_budget_bytes(self) -> int:
        return self.max_upload_bytes_in_flight or 2 * self.max_edit_body_bytes


class ServerState:
    """Mutable state shared by the handlers and the draining server."""

    def __init__(self) -> None:
        self.draining = False
        self._inflight = 0
        self._lock = threading.Lock()

    @property
    def inflight(self) -> int:
        with self._lock:
            return self._inflight

    def enter(self) -> None:
        with self._lock:
            self._inflight += 1

    def leave(self) -> None:
        with self._lock:
            self._inflight -= 1


class AbandonedRequests:
    """Requests whose client left, until they end: the denoising steps still run for them are
    counted (``omni_abandoned_steps_total``), which is what aborting them is meant to keep near 0."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def add(self, request_id: str, future: Future[DiffusionOutput]) -> None:
        with self._lock:
            self._ids.add(request_id)
        future.add_done_callback(lambda _: self._discard(request_id))

    def _discard(self, request_id: str) -> None:
        with self._lock:
            self._ids.discard(request_id)

    def on_step(self, event: ProgressEvent) -> None:
        with self._lock:
            wasted = event.request_id in self._ids
        if wasted:
            self._metrics.abandoned_steps.inc()


def error_response(error: APIError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def create_app(
    engine: DiffusionEngine, settings: ServerSettings, state: ServerState | None = None
) -> Starlette:
    """Build the app serving ``engine``; the caller owns the engine's lifetime."""
    state = state or ServerState()
    metrics = ServerMetrics()
    metrics.watch_batching(lambda: engine.collective_rpc("describe", timeout=METRICS_RPC_SECONDS))
    abandoned = AbandonedRequests(metrics)
    engine.add_progress_listener(abandoned.on_step)
    expected_key = settings.api_key.encode("utf-8") if settings.api_key else None

    def guarded(route: str, handler: Handler, *, public: bool = False) -> Handler:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            state.enter()
            try:
                response = await _checked(request)
            finally:
                state.leave()
            metrics.requests.labels(route, str(response.status_code)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - started)
            return response

        async def _checked(request: Request) -> Response:
            try:
                if state.draining and not public:
                    raise APIError(
                        503,
                        "server is shutting down; retry on another instance",
                        code="shutting_down",
                        kind="server_error",
                    )
                if expected_key is not None and not public:
                    _check_bearer(request, expected_key)
                return await handler(request)
            except APIError as error:
                metrics.errors.labels(error.kind).inc()
                headers = retry_after_header(error)
                if error.status == 408:
                    headers = {"Connection": "close"}
                if error.status == 401:
                    headers = {"WWW-Authenticate": "Bearer"}
                return error_response(error, headers)

        return endpoint

    uploads = UploadBudget(settings.upload_budget_bytes)
    images = ImageStore(
        ttl=settings.image_url_ttl, max_images=settings.max_stored_images, max_bytes=settings.max_stored_bytes
    )

    async def generations(request: Request) -> Response:
        with client_input("generations"):
            body = await _read_json(request, settings)
            parsed = parse_generation_request(body, settings.limits, request_id=f"img-{uuid.uuid4().hex}")
        return await respond(request, parsed, "image_generation")

    async def edits(request: Request) -> Response:
        cap = edit_body_cap(request.headers.get("content-type", ""), settings)
        with client_input("edits"), uploads.reserve(_declared_length(request, cap)):
            raw = await _read_body(request, cap, settings.body_timeout)
            # Parsing the form and decoding its images are CPU work: off the event loop, so that
            # /health and every other request go on while a large or hostile upload is read.
            parsed = await run_in_threadpool(
                parse_edit_body, request.scope, raw, settings, f"img-{uuid.uuid4().hex}"
            )
        return await respond(request, parsed, "image_edit")

    def abandon(omni_request: OmniDiffusionRequest, future: Future[DiffusionOutput]) -> None:
        """The client hung up: nobody will read the images, so stop computing them."""
        abandoned.add(omni_request.request_id, future)
        aborted = engine.abort(omni_request.request_id)
        metrics.abandoned.labels("aborted" if aborted else "finished").inc()

    async def encode(image: Any, options: OutputOptions, *, preview: bool = False) -> str:
        if image.shape[0] * image.shape[1] <= INLINE_ENCODE_PIXELS:
            # Small images encode in well under a millisecond: a thread hop would cost more.
            return options.encode_b64(image, preview=preview)
        return await run_in_threadpool(functools.partial(options.encode_b64, image, preview=preview))

    async def respond(request: Request, parsed: ParsedRequest, kind: str) -> Response:
        if parsed.options.stream:
            return await respond_streaming(request, parsed, kind)
        omni_request, options = parsed.request, parsed.options
        metrics.queue_depth.inc()
        try:
            future = engine.submit(omni_request)
            output: DiffusionOutput | None = await _result_unless_client_left(request, future)
        except Exception as exc:  # noqa: BLE001 - logged by engine_failure, answered as its class
            output = engine_failure(omni_request.request_id, exc)
        finally:
            metrics.queue_depth.dec()
        if output is None:
            abandon(omni_request, future)
            return Response(status_code=499)
        if output.error is not None:
            raise api_error_for(output)
        data = []
        for image in output.output:
            if options.response_format == "url":
                image_id = images.put(await run_in_threadpool(options.encode, image), options.media_type)
                data.append({"url": f"{request.base_url}v1/images/{image_id}/content"})
            else:
                data.append({"b64_json": await encode(image, options)})
            data[-1]["revised_prompt"] = omni_request.prompt
        metrics.images.inc(len(data))
        height, width = output.output[0].shape[:2]
        return JSONResponse(
            {
                "created": int(time.time()),
                "data": data,
                "background": "opaque",
                "output_format": options.output_format,
                "quality": options.quality,
                "size": f"{width}x{height}",
                "usage": usage_for(omni_request, height, width, len(output.output)),
                "omni": {"request_id": output.request_id, "seed": output.seed, "timings": output.timings},
            }
        )

    async def respond_streaming(request: Request, parsed: ParsedRequest, kind: str) -> Response:
        """Server-Sent Events: a partial image per preview, then the completed images.

        The first event (or the outcome) is awaited before the response starts, so a request
        refused at once (overloaded, bad for this model) gets its proper status, not a 200
        stream that holds an error.
        """
        omni_request, options = parsed.request, parsed.options
        loop = asyncio.get_running_loop()
        previews: asyncio.Queue[ProgressEvent] = asyncio.Queue()

        def on_progress(event: ProgressEvent) -> None:
            if event.preview is not None:
                loop.call_soon_threadsafe(previews.put_nowait, event)

        metrics.queue_depth.inc()
        try:
            future = engine.submit(omni_request, on_progress=on_progress)
        except Exception as exc:  # noqa: BLE001 - logged by engine_failure, answered as its class
            metrics.queue_depth.dec()
            raise api_error_for(engine_failure(omni_request.request_id, exc)) from None
        waiting = asyncio.wrap_future(future)
        first = None
        while first is None:
            first = await next_item(previews, waiting, DISCONNECT_POLL_SECONDS)
            if first is None and await request.is_disconnected():
                metrics.queue_depth.dec()
                abandon(omni_request, future)
                return Response(status_code=499)
        if first is DONE and waiting.result().error is not None:
            metrics.queue_depth.dec()
            raise api_error_for(waiting.result())

        async def events() -> AsyncIterator[bytes]:
            item = first
            try:
                while isinstance(item, ProgressEvent):
                    async for chunk in preview_events(
                        kind, item, options, lambda image: encode(image, options, preview=True)
                    ):
                        yield chunk
                    item = await next_item(previews, waiting)
                output = waiting.result()
                if output.error is not None:
                    yield sse(error_event(api_error_for(output).body()))
                    return
                encoded = [await encode(image, options) for image in output.output]
                metrics.images.inc(len(encoded))
                async for chunk in completed_events(kind, output, omni_request, options, encoded):
                    yield chunk
            except BaseException:
                if not future.done():  # the client left mid-stream (the task was cancelled)
                    abandon(omni_request, future)
                raise
            finally:
                metrics.queue_depth.dec()

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def image_content(request: Request) -> Response:
        stored = images.get(request.path_params["image_id"])
        if stored is None:
            raise APIError(404, "no such image (unknown, or expired)", code="not_found")
        return Response(stored.data, media_type=stored.media_type, headers={"Cache-Control": "private"})

    async def health(request: Request) -> Response:
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503, headers={"Retry-After": "1"})
        try:
            await run_in_threadpool(engine.check_health)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            # Details (model path, worker pids) only for callers holding the key.
            trusted = expected_key is not None and _bearer_matches(request, expected_key)
            body = {"status": "unhealthy", **({"reason": str(exc)} if trusted else {})}
            logger.warning("unhealthy: %s", exc)
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ok"})

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": settings.served_model_name, "object": "model", "created": 0, "owned_by": "omni"}
                ],
            }
        )

    async def metrics_text(request: Request) -> Response:
        # Off the event loop: the batching figures are an RPC to the engine's workers.
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "method not allowed" if status == 405 else f"no route {request.url.path}"
        return error_response(
            APIError(status, message, code="not_found" if status == 404 else "method_not_allowed")
        )

    app = Starlette(
        routes=[
            Route(GENERATIONS_PATH, guarded("generations", generations), methods=["POST"]),
            Route(EDITS_PATH, guarded("edits", edits), methods=["POST"]),
            Route("/health", guarded("health", health, public=True), methods=["GET"]),
            Route("/", guarded("playground", playground_page, public=True), methods=["GET"]),
            Route(
                "/playground/{name}", guarded("playground", playground_asset, public=True), methods=["GET"]
            ),
            Route("/v1/models", guarded("models", models), methods=["GET"]),
            Route("/metrics", guarded("metrics", metrics_text), methods=["GET"]),
            Route(IMAGE_CONTENT_PATH, guarded("image_content", image_content), methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )
    app.state.omni = state
    app.state.metrics = metrics
    return app


def engine_failure(request_id: str, exc: Exception) -> DiffusionOutput:
    """A request the engine refused by raising: omni's own failures are one log line, bugs a traceback.

    An executor that is full or shut down says so with an ``OmniError``; a busy server must
    not print a traceback for every request it turns away.
    """
    if isinstance(exc, OmniError):
        logger.warning("request %s refused: %s: %s", request_id, type(exc).__name__, exc)
    else:
        logger.exception("engine failed on %s", request_id)
    return DiffusionOutput.failure(request_id, exc)


def _bearer_matches(request: Request, expected: bytes) -> bool:
    """The raw header bytes against the key's UTF-8 bytes (no Latin-1 decoding in between)."""
    header = next((value for name, value in request.headers.raw if name.lower() == b"authorization"), b"")
    scheme, _, token = header.partition(b" ")
    # compare_digest runs in time independent of where the values differ.
    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), expected)


def _check_bearer(request: Request, expected: bytes) -> None:
    if not _bearer_matches(request, expected):
        raise APIError(
            401, "missing or incorrect API key; send 'Authorization: Bearer <key>'", code="invalid_api_key"
        )


DISCONNECT_POLL_SECONDS = 0.25


async def _result_unless_client_left(
    request: Request, future: Future[DiffusionOutput]
) -> DiffusionOutput | None:
    """The request's output, or None as soon as its client disconnects."""
    waiting = asyncio.wrap_future(future)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_SECONDS)
        if done:
            return waiting.result()
        if await request.is_disconnected():
            waiting.cancel()
            return None


async def _read_json(request: Request, settings: ServerSettings) -> Any:
    raw = await _read_body(request, settings.max_body_bytes, settings.body_timeout)
    return parse_json_body(raw, max_depth=settings.max_json_depth)


async def _read_body(request: Request, max_bytes: int, body_timeout: float) -> bytes:
    """The whole body, refused (413) past ``max_bytes`` and (408) past ``body_timeout`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise APIError(
            413, f"request body is {declared} bytes, over the limit of {max_bytes}", code="request_too_large"
        )
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body_timeout
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - loop.time()))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise APIError(
                408,
                f"the request body did not arrive within {body_timeout:g} s "
                "(shorter than its Content-Length?)",
                code="request_timeout",
            ) from None
        size += len(chunk)
        if size > max_bytes:
            raise APIError(
                413, f"request body is over the limit of {max_bytes} bytes", code="request_too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def edit_body_cap(content_type: str, settings: ServerSettings) -> int:
    """The body cap for an edit of this content type, or a 415 before any of the body is read.

    A multipart form carries the files (up to :attr:`ServerSettings.max_edit_body_bytes`); a
    urlencoded form only text fields (``max_body_bytes``), so it can never carry the image.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return settings.max_edit_body_bytes
    if kind == "application/x-www-form-urlencoded":
        return settings.max_body_bytes
    raise APIError(
        415,
        f"edits take OpenAI's multipart form; send Content-Type multipart/form-data, not {kind[:60]!r}",
        code="unsupported_media_type",
    )


def _declared_length(request: Request, cap: int) -> int:
    """The bytes an upload will hold: its Content-Length (at most ``cap``), or ``cap`` without one."""
    declared = request.headers.get("content-length", "")
    return (
        min(int(declared), cap) if declared.isascii() and declared.isdigit() and len(declared) < 19 else cap
    )


@contextmanager
def client_input(route: str) -> Iterator[None]:
    """Where only a client's bytes are read: any failure there is the input's, a 400 and one log line.

    The parsers raise :class:`APIError` for every case they know; anything else they raise
    (a library's unexpected exception on bytes nobody foresaw) is still about the input,
    so the client gets a 400 saying so, never a 500 with a traceback in the log.
    """
    try:
        yield
    except APIError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.warning("%s: unreadable input: %s: %.200s", route, type(exc).__name__, exc)
        raise APIError(
            400,
            f"the request could not be read ({type(exc).__name__}); check it against the Images API",
            code="invalid_request",
        ) from None


def parse_edit_body(
    scope: MutableMapping[str, Any], raw: bytes, settings: ServerSettings, request_id: str
) -> ParsedRequest:
    """An edit body (already read under its cap) as an omni request; runs in a worker thread."""
    fields, images, mask = asyncio.run(_edit_form(scope, raw, settings))
    del raw
    return parse_edit_request(form_values(fields), images, mask, settings.limits, request_id=request_id)


async def _edit_form(
    scope: MutableMapping[str, Any], raw: bytes, settings: ServerSettings
) -> tuple[list[tuple[str, str]], list[bytes], bytes | None]:
    """An edit's form, parsed from the already capped body: text fields, images, mask.

    Starlette's parser (python-multipart) reads a replay of ``raw``, so the size cap
    above is the one that held; file and field counts are capped too.
    """
    replayed = False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if replayed:
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": raw, "more_body": False}

    fields: list[tuple[str, str]] = []
    images: list[bytes] = []
    mask: bytes | None = None
    try:
        async with Request(scope, replay).form(
            max_files=settings.limits.max_input_images + 1,
            max_fields=MAX_FORM_FIELDS,
            max_part_size=settings.max_body_bytes,
        ) as form:
            items = form.multi_items()
            if len(items) > MAX_FORM_FIELDS + settings.limits.max_input_images + 1:
                raise invalid(None, f"the form has {len(items)} fields, over the limit", "invalid_form")
            for name, value in items:
                if not isinstance(value, UploadFile):
                    if name in EDIT_IMAGE_FIELDS or name == EDIT_MASK_FIELD:
                        raise invalid(name, f"{name} must be a file part (an image), not a text field")
                    fields.append((name, value))
                    continue
                data = await value.read()
                if len(data) > settings.max_image_bytes:
                    raise APIError(
                        413,
                        f"{name}: the file is {len(data)} bytes, over the limit of "
                        f"{settings.max_image_bytes}",
                        param=name,
                        code="request_too_large",
                    )
                if name in EDIT_IMAGE_FIELDS:
                    images.append(data)
                elif name == EDIT_MASK_FIELD and mask is None:
                    mask = data
                else:
                    raise invalid(name, f"unexpected file field {name!r}; send image (or image[]) and mask")
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
        raise invalid(None, f"malformed multipart form: {detail}", "invalid_form") from None
    return fields, images, mask
