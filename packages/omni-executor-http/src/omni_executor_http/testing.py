"""Helpers for tests that need a real `omni serve` on 127.0.0.1 (used by omni's own tests)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, process: subprocess.Popen[str], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    model: Path,
    *args: str,
    env: dict[str, str] | None = None,
    tmp: Path,
    executor: str = "inproc",
    port: int | None = None,
) -> ServerProcess:
    """Start `omni serve` on 127.0.0.1 (a free port unless given); returns before it is ready."""
    omni = shutil.which("omni")
    assert omni, "omni console script missing"
    port = port or free_port()
    log = tmp / f"serve-{port}.log"
    command = [
        omni, "serve", "--model", str(model), "--executor", executor, "--port", str(port),
        "--log-level", "warning", *args,
    ]  # fmt: skip
    with log.open("a") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
        )
    return ServerProcess(process, f"http://127.0.0.1:{port}", log)


def wait_until_healthy(server: ServerProcess, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"omni serve exited with {server.process.returncode}:\n{server.logs()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"omni serve did not become healthy:\n{server.logs()}")
        time.sleep(0.1)


def stop_server(server: ServerProcess) -> None:
    """SIGTERM (graceful drain), then SIGKILL if it does not exit in 30 s."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def run_server(
    model: Path, *args: str, env: dict[str, str] | None = None, tmp: Path, executor: str = "inproc"
) -> Iterator[ServerProcess]:
    """Start `omni serve` as a subprocess on a free loopback port; yield once /health answers."""
    with run_servers(model, 1, *args, env=env, tmp=tmp, executor=executor) as (server,):
        yield server


@contextmanager
def run_servers(
    model: Path,
    count: int,
    *args: str,
    env: dict[str, str] | None = None,
    tmp: Path,
    executor: str = "inproc",
) -> Iterator[list[ServerProcess]]:
    """``count`` servers started at once (they load their models side by side); stopped on exit."""
    servers = [start_server(model, *args, env=env, tmp=tmp, executor=executor) for _ in range(count)]
    try:
        for server in servers:
            wait_until_healthy(server)
        yield servers
    finally:
        for server in servers:
            stop_server(server)


def fake_google_id_token(audience: str, seconds: int = 3600) -> str:
    """An unsigned JWT shaped like Google's ID tokens (google-auth reads its expiry, verifies nothing)."""

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {"aud": audience, "iss": "https://accounts.google.com", "iat": now, "exp": now + seconds}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


@contextmanager
def fake_google_metadata_server(token: str) -> Iterator[tuple[str, list[str]]]:
    """Google's metadata server as google-auth speaks to it, on 127.0.0.1: the only faked part.

    Yields ``(host:port, audiences asked for)``; point ``GCE_METADATA_HOST`` and
    ``GCE_METADATA_IP`` at it. Every answer carries ``Metadata-Flavor: Google``; the identity
    endpoint returns ``token``.
    """
    audiences: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = b"", "text/plain"
            path = urllib.parse.urlsplit(self.path)
            if path.path.endswith("/service-accounts/default/identity"):
                audiences.extend(urllib.parse.parse_qs(path.query).get("audience", []))
                body = token.encode()
            elif path.path.endswith("/service-accounts/default/"):  # the account, as JSON
                account = {
                    "email": "omni@example.iam.gserviceaccount.com",
                    "aliases": ["default"],
                    "scopes": [],
                }
                body, kind = json.dumps(account).encode(), "application/json"
            self.send_response(200)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", audiences
    finally:
        server.shutdown()
        server.server_close()
