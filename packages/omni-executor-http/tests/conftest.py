"""Fixtures: the shared tiny model, and real `omni serve` processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from omni_core.testing import isolated_omni_cache, tiny_model

__all__ = ["isolated_omni_cache", "tiny_model"]


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
    model: Path, *args: str, env: dict[str, str] | None = None, tmp: Path
) -> Iterator[ServerProcess]:
    """Start `omni serve` (in-process executor) and wait until /health answers."""
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
        "inproc",
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


@pytest.fixture(scope="session")
def server_factory(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., object]:
    def factory(*args: str, model: Path | None = None, env: dict[str, str] | None = None) -> object:
        return run_server(model or tiny_model, *args, env=env, tmp=tmp_path_factory.mktemp("serve"))

    return factory


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with small, explicit limits so the limit tests are cheap."""
    with run_server(
        tiny_model,
        "--max-body-bytes",
        "4096",
        "--max-steps",
        "50",
        "--max-prompt-length",
        "100",
        "--max-image-pixels",
        str(256 * 256),
        tmp=tmp_path_factory.mktemp("serve"),
    ) as process:
        yield process
