"""``omni kafka worker``: one consumer process per device in one group, contributed through ``omni.cli``."""

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
from omni_executor_kafka.settings import KafkaSettings
from omni_executor_kafka.worker import ENV_CONFIG, ENV_OFFLOAD, ENV_SETTINGS, ENV_WORKER

SETTINGS_FIELDS = tuple(KafkaSettings.__dataclass_fields__)
"""What the workers and their clients must agree on (:class:`KafkaSettings`), as flags."""


@click.group("kafka")
def kafka_group() -> None:
    """Workers that run omni requests from Kafka topics."""


@kafka_group.command()
@declared_options(KafkaSettings, *SETTINGS_FIELDS)
@config_options("model_name_or_path", "loras", "max_loaded_loras")
@worker_process_options
@click.option("--group", default="omni-workers", show_default=True, help="the workers' consumer group")
@click.option(
    "--session-timeout",
    default=6.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="seconds after which the group gives a silent worker's partitions to the others",
)
@declared_options(OffloadSettings, "bucket", "above_bytes", "endpoint_url")
@click.option("--log-level", default="warning", show_default=True)
def worker(
    devices: str | None,
    workers: int,
    threads: int | None,
    group: str,
    session_timeout: float,
    log_level: str,
    **flags: Any,
) -> None:
    """Start one consumer per device (or --workers CPU consumers), each loading the model once."""
    try:
        settings = KafkaSettings(**values_from_flags(KafkaSettings, flags))
    except ExecutorOptionsError as exc:
        hint = flag_of(KafkaSettings, exc.field or "bootstrap_servers")
        raise click.BadParameter(exc.message, param_hint=hint) from exc
    config = config_from_flags(flags)  # checked here, rebuilt from its fields in each worker
    config_fields = {
        name: getattr(config, name) for name in ("model_name_or_path", "loras", "max_loaded_loras")
    }
    offload = values_from_flags(OffloadSettings, flags)
    env = {
        **os.environ,
        ENV_SETTINGS: json.dumps(settings.__dict__),
        ENV_CONFIG: json.dumps(config_fields),
        ENV_WORKER: json.dumps({"group": group, "session_timeout": session_timeout}),
        "OMNI_KAFKA_LOG_LEVEL": log_level,
    }
    if offload.get("bucket") is not None:
        env[ENV_OFFLOAD] = json.dumps(OffloadSettings(**offload).__dict__)
    run_worker_processes(
        lambda slot: [sys.executable, "-m", "omni_executor_kafka.worker"],
        env,
        devices=devices,
        workers=workers,
        threads=threads,
        what=f"omni kafka in group {group!r} on {settings.bootstrap_servers}",
    )
