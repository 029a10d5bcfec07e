"""``omni celery worker``: one Celery worker process per device, contributed through ``omni.cli``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from types import FrameType

import click

from omni_core import ExecutorOptionsError
from omni_core.executors import parse_lora_option, thread_environment
from omni_executor_celery.app import CelerySettings
from omni_executor_celery.worker import ENV_CONFIG, ENV_OFFLOAD, ENV_SETTINGS, OffloadSettings


@click.group("celery")
def celery_group() -> None:
    """Celery workers that run omni requests from a Redis or RabbitMQ queue."""


@celery_group.command()
@click.option(
    "--broker", "broker_url", required=True, envvar="OMNI_CELERY_BROKER", help="redis://... or amqp://..."
)
@click.option(
    "--backend",
    "result_backend",
    default=None,
    envvar="OMNI_CELERY_BACKEND",
    help="key-value result store, e.g. redis://host:6379/1 [default: the Redis broker; RabbitMQ needs one]",
)
@click.option("--model", default=None, help="diffusers model folder or hub id [default: built-in model]")
@click.option("--queue", default="omni", show_default=True)
@click.option("--devices", default=None, help="GPU indices, one worker each, e.g. 0,1 [default: CPU workers]")
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1), help="CPU workers (without --devices)"
)
@click.option("--task-time-limit", default=600.0, show_default=True, type=float)
@click.option("--visibility-timeout", default=900.0, show_default=True, type=float)
@click.option("--result-expires", default=3600.0, show_default=True, type=float)
@click.option("--s3-bucket", default=None, help="put images above --offload-above bytes in this bucket")
@click.option("--offload-above", default=1024 * 1024, show_default=True, type=click.IntRange(0))
@click.option("--s3-endpoint-url", default=None, help="S3-compatible endpoint [default: AWS]")
@click.option("--threads", default=None, type=click.IntRange(1), help="torch threads per CPU worker")
@click.option(
    "--lora",
    "loras",
    multiple=True,
    metavar="NAME=PATH[@SCALE]",
    help="a LoRA adapter requests may name with 'lora' (repeatable)",
)
@click.option("--log-level", default="warning", show_default=True)
def worker(
    broker_url: str,
    result_backend: str | None,
    model: str | None,
    queue: str,
    devices: str | None,
    workers: int,
    task_time_limit: float,
    visibility_timeout: float,
    result_expires: float,
    s3_bucket: str | None,
    offload_above: int,
    s3_endpoint_url: str | None,
    threads: int | None,
    loras: tuple[str, ...],
    log_level: str,
) -> None:
    """Start one Celery worker per device (or --workers CPU workers), each loading the model once."""
    try:
        settings = CelerySettings(
            broker_url=broker_url,
            result_backend=result_backend,
            queue=queue,
            task_time_limit=task_time_limit,
            visibility_timeout=visibility_timeout,
            result_expires=result_expires,
        )
    except ExecutorOptionsError as exc:
        raise click.BadParameter(exc.message, param_hint="--backend") from exc
    try:
        adapters = dict(map(parse_lora_option, loras))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lora") from exc
    slots = [d.strip() for d in devices.split(",") if d.strip()] if devices else [None] * workers
    base_env = {
        **os.environ,
        ENV_SETTINGS: json.dumps(settings.__dict__),
        ENV_CONFIG: json.dumps({"model_name_or_path": model, "device": None, "loras": adapters}),
    }
    if s3_bucket is not None:
        offload = OffloadSettings(bucket=s3_bucket, above_bytes=offload_above, endpoint_url=s3_endpoint_url)
        base_env[ENV_OFFLOAD] = json.dumps(offload.__dict__)
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
