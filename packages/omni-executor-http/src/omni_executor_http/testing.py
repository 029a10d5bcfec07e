"""Helpers for tests that need a real `omni serve` on 127.0.0.1 (used by omni's own tests)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
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


@contextmanager
def run_server(
    model: Path, *args: str, env: dict[str, str] | None = None, tmp: Path, executor: str = "inproc"
) -> Iterator[ServerProcess]:
    """Start `omni serve` as a subprocess on a free loopback port; yield once /health answers.

    Stops it with SIGTERM (graceful drain), then SIGKILL if it does not exit in 30 s.
    """
    omni = shutil.which("omni")
    assert omni, "omni console script missing"
    port = free_port()
    log = tmp / f"serve-{port}.log"
    command = [
        omni,
        "serve",
        "--model",
        str(model),
        "--executor",
        executor,
        "--port",
        str(port),
        "--log-level",
        "warning",
        *args,
    ]
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"omni serve exited with {process.returncode}:\n{server.logs()}")
            try:
                if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"omni serve did not become healthy:\n{server.logs()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
