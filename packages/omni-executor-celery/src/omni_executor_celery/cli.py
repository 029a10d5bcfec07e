"""``omni celery worker``: one Celery worker process per device, contributed through ``omni.cli``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from types import FrameType
from typing import Any

import click

from omni_core import ExecutorOptionsError
from omni_core.cli import config_from_flags, config_options, declared_options, flag_of, values_from_flags
from omni_core.executors import thread_environment
from omni_executor_celery.app import CelerySettings
from omni_executor_celery.worker import ENV_CONFIG, ENV_OFFLOAD, ENV_SETTINGS, OffloadSettings

SETTINGS_FIELDS = (
    "broker_url",
    "result_backend",
    "queue",
    "task_time_limit",
    "visibility_timeout",
    "result_expires",
)
"""What the workers and their clients must agree on (:class:`CelerySettings`), as flags."""


@click.group("celery")
def celery_group() -> None:
    """Celery workers that run omni requests from a Redis or RabbitMQ queue."""


@celery_group.command()
@declared_options(CelerySettings, *SETTINGS_FIELDS)
@config_options("model_name_or_path", "loras", "max_loaded_loras")
@click.option("--devices", default=None, help="GPU indices, one worker each, e.g. 0,1 [default: CPU workers]")
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1), help="CPU workers (without --devices)"
)
@declared_options(OffloadSettings, "bucket", "above_bytes", "endpoint_url")
@click.option("--threads", default=None, type=click.IntRange(1), help="torch threads per CPU worker")
@click.option("--log-level", default="warning", show_default=True)
def worker(devices: str | None, workers: int, threads: int | None, log_level: str, **flags: Any) -> None:
    """Start one Celery worker per device (or --workers CPU workers), each loading the model once."""
    try:
        settings = CelerySettings(**values_from_flags(CelerySettings, flags))
    except ExecutorOptionsError as exc:
        raise click.BadParameter(
            exc.message, param_hint=flag_of(CelerySettings, exc.field or "broker_url")
        ) from exc
    config = config_from_flags(flags)  # checked here, rebuilt from its fields in each worker
    config_fields = {
        name: getattr(config, name) for name in ("model_name_or_path", "loras", "max_loaded_loras")
    }
    offload = values_from_flags(OffloadSettings, flags)
    queue = settings.queue
    slots = [d.strip() for d in devices.split(",") if d.strip()] if devices else [None] * workers
    base_env = {
        **os.environ,
        ENV_SETTINGS: json.dumps(settings.__dict__),
        ENV_CONFIG: json.dumps(config_fields),
    }
    if offload.get("bucket") is not None:
        base_env[ENV_OFFLOAD] = json.dumps(OffloadSettings(**offload).__dict__)
    processes = []
    for index, device in enumerate(slots):
        env = dict(base_env)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        else:
            thread_environment(threads or max(1, (os.cpu_count() or 1) // len(slots)), env)
        # Unique per start: two worker commands on one host must not share a node name
        # (RabbitMQ refuses the second one's remote-control queue).
        slot = f"gpu{device}" if device is not None else f"cpu{index}"
        name = f"omni-{slot}-{os.getpid()}@%h"
        command = [
            sys.executable, "-m", "celery", "-A", "omni_executor_celery.worker:app", "worker",
            "--pool", "threads", "--concurrency", "1", "--prefetch-multiplier", "1",
            "-Q", queue, "-n", name, "--without-gossip", "--without-mingle", "--loglevel", log_level,
        ]  # fmt: skip
        processes.append(subprocess.Popen(command, env=env))
    click.echo(f"omni celery: {len(processes)} worker(s) on queue {queue!r}", err=True)

    def forward(signum: int, frame: FrameType | None) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [process.wait() for process in processes]
    if any(codes):
        raise SystemExit(max(abs(code) for code in codes))
