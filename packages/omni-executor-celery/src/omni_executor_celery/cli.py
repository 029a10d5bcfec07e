"""``omni celery worker``: one Celery worker process per device, contributed through ``omni.cli``."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from omni_core import ExecutorOptionsError
from omni_core.cli import config_from_flags, config_options, declared_options, flag_of, values_from_flags
from omni_core.cli.workers import run_worker_processes, worker_process_options
from omni_core.executors import OffloadSettings
from omni_executor_celery.app import CelerySettings
from omni_executor_celery.worker import ENV_CONFIG, ENV_OFFLOAD, ENV_SETTINGS

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
@worker_process_options
@declared_options(OffloadSettings, "bucket", "above_bytes", "endpoint_url")
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
    env = {**os.environ, ENV_SETTINGS: json.dumps(settings.__dict__), ENV_CONFIG: json.dumps(config_fields)}
    if offload.get("bucket") is not None:
        env[ENV_OFFLOAD] = json.dumps(OffloadSettings(**offload).__dict__)

    def command(slot: str) -> list[str]:
        # Unique per start: two worker commands on one host must not share a node name
        # (RabbitMQ refuses the second one's remote-control queue).
        name = f"omni-{slot}-{os.getpid()}@%h"
        return [
            sys.executable, "-m", "celery", "-A", "omni_executor_celery.worker:app", "worker",
            "--pool", "threads", "--concurrency", "1", "--prefetch-multiplier", "1",
            "-Q", queue, "-n", name, "--without-gossip", "--without-mingle", "--loglevel", log_level,
        ]  # fmt: skip

    run_worker_processes(
        command,
        env,
        devices=devices,
        workers=workers,
        threads=threads,
        what=f"omni celery on queue {queue!r}",
    )
