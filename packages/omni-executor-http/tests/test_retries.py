"""Retry policy against real loopback servers that misbehave on purpose (wire-level fakes)."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.images import encode_png_b64

PNG = encode_png_b64(np.full((8, 8, 3), 7, dtype=np.uint8))


class Script:
    """Answers the n-th call with the n-th (status, headers) and then 200s."""

    def __init__(self, failures: list[tuple[int, dict[str, str]]]) -> None:
        self.failures = failures
        self.calls: list[float] = []

    async def handle(self, request: Request) -> JSONResponse:
        self.calls.append(time.monotonic())
        index = len(self.calls) - 1
        if index < len(self.failures):
            status, headers = self.failures[index]
            body = {
                "error": {
                    "message": f"try later ({status})",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
            return JSONResponse(body, status_code=status, headers=headers)
        return JSONResponse({"created": 0, "data": [{"b64_json": PNG}]})


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def engine_for(url: str, **options: Any) -> DiffusionEngine:
    return DiffusionEngine(
        OmniDiffusionConfig(
            executor_class="http", executor_options={"base_url": url, "backoff_base": 0.01, **options}
        )
    )


@pytest.mark.parametrize("status", [503, 429])
def test_retries_503_and_429_honouring_retry_after(status: int) -> None:
    script = Script([(status, {"Retry-After": "0.4"}), (status, {})])
    app = Starlette(routes=[Route("/v1/images/generations", script.handle, methods=["POST"])])
    with serve(app) as url, engine_for(url) as engine:
        output = engine.step([OmniDiffusionRequest(prompt="x")])[0]
    assert output.ok, output.error
    assert output.timings["attempts"] == 3
    assert len(script.calls) == 3
    assert script.calls[1] - script.calls[0] >= 0.4  # waited as long as the server asked
    assert output.output[0].shape == (8, 8, 3)


def test_gives_up_after_max_retries_with_the_servers_message() -> None:
    script = Script([(503, {})] * 10)
    app = Starlette(routes=[Route("/v1/images/generations", script.handle, methods=["POST"])])
    with serve(app) as url, engine_for(url, max_retries=2) as engine:
        output = engine.step([OmniDiffusionRequest(prompt="x")])[0]
    assert len(script.calls) == 3
    assert output.error is not None
    assert "HTTP 503: try later (503)" in output.error
    assert "gave up after 3 attempts" in output.error


def test_500_and_400_are_not_retried() -> None:
    script = Script([(500, {}), (400, {})])
    app = Starlette(routes=[Route("/v1/images/generations", script.handle, methods=["POST"])])
    with serve(app) as url, engine_for(url) as engine:
        first = engine.step([OmniDiffusionRequest(prompt="x", seed=1)])[0]
        second = engine.step([OmniDiffusionRequest(prompt="x", seed=1)])[0]
    # A foreign server's 500 is a remote error; its 400 names the request as the bad part.
    assert (first.error_type, second.error_type) == ("RemoteError", "RequestValidationError")
    assert (first.retryable, second.retryable) == (False, False)
    assert len(script.calls) == 2


class DropConnection(socketserver.BaseRequestHandler):
    """Reads the request, then closes the socket without answering: the server 'died'."""

    connections = 0

    def handle(self) -> None:
        type(self).connections += 1
        self.request.recv(65536)
        self.request.close()


@contextmanager
def dropping_server() -> Iterator[str]:
    DropConnection.connections = 0
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), DropConnection)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_the_server_may_have_run_is_not_resent_without_a_seed() -> None:
    with dropping_server() as url, engine_for(url, max_retries=3) as engine:
        output = engine.step([OmniDiffusionRequest(prompt="x")])[0]
    assert DropConnection.connections == 1
    assert (output.error_type, output.retryable) == ("RemoteError", False)
    assert output.error is not None
    assert "give the request a seed" in output.error


def test_a_seeded_request_is_idempotent_and_is_resent() -> None:
    with dropping_server() as url, engine_for(url, max_retries=3) as engine:
        output = engine.step([OmniDiffusionRequest(prompt="x", seed=5)])[0]
    assert DropConnection.connections == 4
    assert (output.error_type, output.retryable) == ("RemoteError", True)
