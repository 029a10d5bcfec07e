"""Real brokers on loopback for tests, benchmarks and trying omni out: Redis and RabbitMQ.

Each starts the Debian package's server on free 127.0.0.1 ports with its data in
a temporary directory, waits until it answers, and stops it (and RabbitMQ's
epmd) afterwards. A missing server raises :class:`BrokerMissing` carrying the
install command, so tests can skip (or fail under CI) saying what to run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL = "apt-get install -y redis-server rabbitmq-server"
START_SECONDS = 60.0


class BrokerMissing(RuntimeError):
    """The broker's server is not installed here."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}"
            )
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {START_SECONDS:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _first_existing(*paths: str | None) -> str | None:
    return next((path for path in paths if path and Path(path).exists()), None)


@contextmanager
def redis_server(directory: Path, port: int | None = None) -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a fresh redis-server; nothing persisted.

    ``port``: a given one (to bring a stopped broker back where its clients expect it).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise BrokerMissing(f"redis-server is not installed; run: {INSTALL}")
    port = port or free_port()
    log = directory / f"redis-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory)],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_port(port, process, "redis-server", log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


@contextmanager
def rabbitmq_server(directory: Path) -> Iterator[str]:
    """``amqp://guest:guest@127.0.0.1:PORT//`` of a fresh rabbitmq-server node in ``directory``."""
    # Debian's /usr/sbin wrapper switches to the rabbitmq user (who cannot enter a private
    # temporary directory); the script behind it runs the node as the caller.
    binary = _first_existing("/usr/lib/rabbitmq/bin/rabbitmq-server", shutil.which("rabbitmq-server"))
    if binary is None:
        raise BrokerMissing(f"rabbitmq-server is not installed; run: {INSTALL}")
    port, dist_port, epmd_port = free_port(), free_port(), free_port()
    node = f"omni{port}@localhost"
    base = directory / f"rabbitmq-{port}"
    base.mkdir()
    (base / "enabled_plugins").write_text("[].\n")
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_DIST_PORT": str(dist_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_FEATURE_FLAGS_FILE": str(base / "feature_flags"),
        "RABBITMQ_PID_FILE": str(base / "pid"),
        "RABBITMQ_SERVER_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "HOME": str(base),
    }
    log = base / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [binary], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_port(port, process, "rabbitmq-server", log)
        yield f"amqp://guest:guest@127.0.0.1:{port}//"
    finally:
        ctl = _first_existing("/usr/lib/rabbitmq/bin/rabbitmqctl", shutil.which("rabbitmqctl"))
        if ctl is not None:
            subprocess.run([ctl, "-n", node, "stop"], env=env, capture_output=True, timeout=60, check=False)
        _stop(process)
        subprocess.run(["epmd", "-port", str(epmd_port), "-kill"], env=env, capture_output=True, check=False)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
