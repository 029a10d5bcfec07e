"""The local Lambda service: Invoke API for callers, Runtime API for the environments.

One uvicorn server (starlette app) listens on several loopback sockets: the
Invoke API port that boto3's ``endpoint_url`` points to, and one Runtime API
port per execution environment. Which socket a request came in on tells the
app who is calling.

What it reproduces of Lambda, because callers depend on it: per-function
concurrency (429 ``TooManyRequestsException`` with a ``Reason`` and
``Retry-After`` when every environment is busy), per-invocation timeout (the
process is killed and replaced; the caller gets ``Unhandled`` /
``Sandbox.Timedout``), the 6 MB limits both ways (413
``RequestTooLargeException``; ``Function.ResponseSizeTooLarge``), 404
``ResourceNotFoundException``, ``X-Amz-Function-Error``, ``LogType=Tail``,
``Event`` (202, queued) and ``DryRun`` (204) invocations.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omni_executor_lambda.local.environments import (
    EnvironmentGoneError,
    ExecutionEnvironment,
    Invocation,
    LogSink,
    error_payload,
)
from omni_executor_lambda.local.functions import LATEST, LocalFunction, split_function_name
from omni_executor_lambda.protocol import EVENT_REQUEST_LIMIT, SYNC_REQUEST_LIMIT, SYNC_RESPONSE_LIMIT

logger = logging.getLogger("omni_executor_lambda.local")

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
THROTTLE_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"


def _log_to_logger(label: str, text: str) -> None:
    for line in text.rstrip("\n").splitlines():
        logger.info("[%s] %s", label, line)


class _Function:
    """A function's configuration, environments and queue of Event invocations."""

    def __init__(self, config: LocalFunction, environments: list[ExecutionEnvironment]) -> None:
        self.config = config
        self.environments = environments
        self.events: asyncio.Queue[Invocation] | None = None

    def reserve(self, invocation: Invocation) -> ExecutionEnvironment | None:
        """An environment for ``invocation``: a warm idle one, else a cold one, else None (throttle)."""
        idle = [env for env in self.environments if not env.busy]
        if not idle:
            return None
        environment = next((env for env in idle if env.warm), idle[0])
        environment.invocation = invocation
        return environment


class LocalLambdaService:
    """Serve ``functions`` on 127.0.0.1; use as a context manager, or ``serve_forever()`` from the CLI."""

    def __init__(
        self,
        functions: Sequence[LocalFunction],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        retry_after_seconds: int = 1,
        log_sink: LogSink | None = None,
    ) -> None:
        names = [function.name for function in functions]
        if len(set(names)) != len(names):
            raise ValueError(f"function names must be unique, got {names}")
        self.region = region
        self.retry_after_seconds = retry_after_seconds
        self._log_sink = log_sink or _log_to_logger
        self._sockets = [_listen(host, port)]
        self.host, self.port = self._sockets[0].getsockname()[:2]
        self.functions: dict[str, _Function] = {}
        self._environments_by_port: dict[int, ExecutionEnvironment] = {}
        for config in functions:
            environments = []
            for index in range(config.concurrency):
                runtime_socket = _listen("127.0.0.1", 0)
                self._sockets.append(runtime_socket)
                env_port = runtime_socket.getsockname()[1]
                environment = ExecutionEnvironment(config, index, env_port, region, self._log_sink)
                environments.append(environment)
                self._environments_by_port[env_port] = environment
            self.functions[config.name] = _Function(config, environments)
        self.invocations = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.app = Starlette(
            routes=[
                Route("/2015-03-31/functions/{name}/invocations", self._invoke, methods=["POST"]),
                Route("/2018-06-01/runtime/invocation/next", self._next, methods=["GET"]),
                Route(
                    "/2018-06-01/runtime/invocation/{request_id}/response", self._response, methods=["POST"]
                ),
                Route("/2018-06-01/runtime/invocation/{request_id}/error", self._error, methods=["POST"]),
                Route("/2018-06-01/runtime/init/error", self._init_error, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )

    @property
    def endpoint_url(self) -> str:
        """What to pass to boto3 (or the executor's ``endpoint_url``)."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------- running

    def _uvicorn(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, access_log=False
        )
        self._server = uvicorn.Server(config)
        return self._server

    def serve_forever(self) -> None:
        """Run in this thread until SIGINT/SIGTERM (the CLI)."""
        self._uvicorn().run(sockets=self._sockets)

    def start(self) -> LocalLambdaService:
        """Run in a background thread; returns once it accepts connections."""
        server = self._uvicorn()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": self._sockets}, name="omni-lambda-local", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local Lambda service did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Kill every environment and stop serving."""
        if self._loop is not None and self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._kill_all(), self._loop).result(timeout=30)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> LocalLambdaService:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        for function in self.functions.values():
            function.events = asyncio.Queue()
            self._spawn(self._drain_events(function))
        try:
            yield
        finally:
            await self._kill_all()
            for task in list(self._background):
                task.cancel()

    async def _kill_all(self) -> None:
        await asyncio.gather(
            *(env.kill() for function in self.functions.values() for env in function.environments)
        )

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----------------------------------------------------------- Invoke API

    async def _invoke(self, request: Request) -> Response:
        if request.scope["server"][1] != self.port:
            return _aws_error(
                404, "ResourceNotFoundException", "the Invoke API is on the service's main port"
            )
        name, qualifier_in_name = split_function_name(request.path_params["name"])
        qualifier = request.query_params.get("Qualifier") or qualifier_in_name
        function = self.functions.get(name)
        if function is None or qualifier not in (None, LATEST):
            arn = f"arn:aws:lambda:{self.region}:000000000000:function:{name}"
            return _aws_error(
                404,
                "ResourceNotFoundException",
                f"Function not found: {arn}{':' + qualifier if qualifier else ''}",
            )
        invocation_type = request.headers.get("x-amz-invocation-type", "RequestResponse")
        if invocation_type not in INVOCATION_TYPES:
            return _aws_error(
                400,
                "InvalidParameterValueException",
                f"Invalid value for InvocationType: {invocation_type!r}; use one of {list(INVOCATION_TYPES)}",
            )
        limit = EVENT_REQUEST_LIMIT if invocation_type == "Event" else SYNC_REQUEST_LIMIT
        body = await _read_capped(request, limit)
        if body is None:
            return _aws_error(
                413,
                "RequestTooLargeException",
                f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
            )
        if body:
            try:
                json.loads(body)
            except (ValueError, RecursionError):  # also: integers past int()'s limit, deep nesting
                return _aws_error(
                    400, "InvalidRequestContentException", "Could not parse request body into json"
                )
        if invocation_type == "DryRun":
            return Response(status_code=204, headers={"x-amzn-RequestId": str(uuid.uuid4())})
        invocation = Invocation(payload=body or b"{}", client_context=_client_context(request))
        self.invocations += 1
        if invocation_type == "Event":
            assert function.events is not None
            function.events.put_nowait(invocation)
            return Response(status_code=202, headers={"x-amzn-RequestId": invocation.request_id})
        environment = function.reserve(invocation)
        if environment is None:
            return _aws_error(
                429,
                "TooManyRequestsException",
                "Rate Exceeded.",
                extra={"Reason": THROTTLE_REASON},
                headers={"Retry-After": str(self.retry_after_seconds)},
            )
        tail = request.headers.get("x-amz-log-type") == "Tail"
        result = await environment.run(invocation, log_tail=tail)
        headers = {
            "x-amzn-RequestId": invocation.request_id,
            "X-Amz-Executed-Version": LATEST,
        }
        if result.function_error:
            headers["X-Amz-Function-Error"] = result.function_error
        if tail:
            headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail.encode()).decode()
        return Response(result.payload, status_code=200, headers=headers, media_type="application/json")

    async def _drain_events(self, function: _Function) -> None:
        """Event invocations wait in a queue for a free environment, as on Lambda."""
        assert function.events is not None
        while True:
            invocation = await function.events.get()
            while (environment := function.reserve(invocation)) is None:
                await asyncio.sleep(0.05)
            self._spawn(self._run_event(environment, invocation))

    async def _run_event(self, environment: ExecutionEnvironment, invocation: Invocation) -> None:
        result = await environment.run(invocation)
        if result.function_error:
            logger.warning("Event invocation %s failed: %s", invocation.request_id, result.payload[:500])

    # ---------------------------------------------------------- Runtime API

    def _environment(self, request: Request) -> ExecutionEnvironment | None:
        return self._environments_by_port.get(request.scope["server"][1])

    async def _next(self, request: Request) -> Response:
        environment = self._environment(request)
        if environment is None:
            return _aws_error(404, "NotFound", "the Runtime API is on the environments' ports")
        try:
            invocation = await environment.next_invocation()
        except EnvironmentGoneError:
            return JSONResponse({"errorMessage": "environment replaced"}, status_code=410)
        config = environment.function
        deadline_ms = int((time.time() + config.timeout) * 1000)
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": config.arn(self.region),
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
        }
        if invocation.client_context:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        return Response(invocation.payload, headers=headers, media_type="application/json")

    async def _response(self, request: Request) -> Response:
        environment = self._environment(request)
        if environment is None:
            return _aws_error(404, "NotFound", "the Runtime API is on the environments' ports")
        request_id = request.path_params["request_id"]
        body = await _read_capped(request, SYNC_RESPONSE_LIMIT)
        if body is None:
            environment.complete(
                request_id,
                json.dumps(
                    {
                        "errorType": "Function.ResponseSizeTooLarge",
                        "errorMessage": "Response payload size exceeded maximum allowed payload size "
                        f"({SYNC_RESPONSE_LIMIT} bytes).",
                    }
                ).encode(),
                "Unhandled",
            )
            return JSONResponse(
                {"errorMessage": "Response payload too large", "errorType": "RequestEntityTooLarge"},
                status_code=413,
            )
        if not environment.complete(request_id, body, None):
            return JSONResponse({"errorMessage": f"unknown request id {request_id}"}, status_code=400)
        return JSONResponse({"status": "OK"}, status_code=202)

    async def _error(self, request: Request) -> Response:
        environment = self._environment(request)
        if environment is None:
            return _aws_error(404, "NotFound", "the Runtime API is on the environments' ports")
        request_id = request.path_params["request_id"]
        body = await _read_capped(request, SYNC_RESPONSE_LIMIT) or error_payload(
            request_id, "Runtime.Unknown", "the runtime reported an error without a body"
        )
        if not environment.complete(request_id, body, "Unhandled"):
            return JSONResponse({"errorMessage": f"unknown request id {request_id}"}, status_code=400)
        return JSONResponse({"status": "OK"}, status_code=202)

    async def _init_error(self, request: Request) -> Response:
        environment = self._environment(request)
        if environment is None:
            return _aws_error(404, "NotFound", "the Runtime API is on the environments' ports")
        body = await _read_capped(request, SYNC_RESPONSE_LIMIT) or b"{}"
        environment.fail_init(body)
        return JSONResponse({"status": "OK"}, status_code=202)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket whose connections send at once (accepted sockets inherit TCP_NODELAY).

    Without it, a response written in two parts waits for the peer's delayed ACK
    (Nagle), adding ~40 ms to each hop of every invocation.
    """
    sock = socket.create_server((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _client_context(request: Request) -> str | None:
    encoded = request.headers.get("x-amz-client-context")
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except ValueError:
        return None


def _aws_error(
    status: int,
    error_type: str,
    message: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error as AWS's REST-JSON services send it (botocore reads the type from the header)."""
    return JSONResponse(
        {"Type": "User", "message": message, **(extra or {})},
        status_code=status,
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})},
    )
