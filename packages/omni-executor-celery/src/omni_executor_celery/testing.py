"""Helpers for tests and benchmarks that run real ``omni celery worker`` processes (omni's own use them).

Brokers come from :mod:`omni_executor_celery.brokers`; workers here are the real command, one
process group each, so a test can SIGKILL one worker process and watch its task come back.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.cli.workers import omni_command, process_group
from omni_core.errors import ExecutorDeadError
from omni_executor_celery.worker import ENV_RUN_LOG

READY_SECONDS = 120.0


@contextmanager
def celery_workers(
    broker_url: str,
    backend_url: str,
    model: Path,
    *,
    workers: int = 1,
    run_log: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``omni celery worker`` with ``workers`` one-thread CPU workers; stopped (then killed) on exit."""
    env = dict(os.environ)
    if run_log is not None:
        env[ENV_RUN_LOG] = str(run_log)
    command = omni_command(
        "celery", "worker", "--broker", broker_url, "--backend", backend_url, "--model", str(model),
        "--workers", str(workers), "--threads", "1", *extra_args,
    )  # fmt: skip
    with process_group(command, env) as process:
        yield process


def celery_config(model: Path, broker_url: str, backend_url: str, **options: object) -> OmniDiffusionConfig:
    return OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="celery",
        executor_options={"broker_url": broker_url, "result_backend": backend_url, **options},
    )


def wait_for_workers(engine: DiffusionEngine, count: int = 1, seconds: float = READY_SECONDS) -> None:
    """Until ``count`` workers answer a ping (they load the model before consuming)."""
    deadline = time.monotonic() + seconds
    replies: list[object] = []
    while time.monotonic() < deadline:
        try:
            engine.executor.check_health()
            replies = engine.executor.collective_rpc("ping", timeout=1.0)
            if len(replies) >= count:
                return
        except ExecutorDeadError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{count} celery worker(s) did not answer within {seconds:g} s (got {replies})")


def request(seed: int, steps: int = 2, size: int = 64) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt="a 7", height=size, width=size, num_inference_steps=steps, seed=seed)
