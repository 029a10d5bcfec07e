"""Queue-worker commands (``omni celery worker``, ``omni kafka worker``): one process per device.

Each process is pinned to one GPU (``CUDA_VISIBLE_DEVICES``) or, on the CPU, given an equal
share of the cores (torch's thread pools sized before torch loads); the command waits for
all of them and forwards SIGTERM/SIGINT, so a supervisor (systemd, Kubernetes, Slurm) that
stops the command stops every worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any, TypeVar

import click

from omni_core.executors.runner_host import thread_environment

CommandT = TypeVar("CommandT", bound=Callable[..., Any])


def worker_process_options(command: CommandT) -> CommandT:
    """``--devices``, ``--workers``, ``--threads``: how many worker processes, and where."""
    for option in reversed(
        (
            click.option(
                "--devices",
                default=None,
                help="GPU indices, one worker each, e.g. 0,1 [default: CPU workers]",
            ),
            click.option(
                "--workers",
                default=1,
                show_default=True,
                type=click.IntRange(1),
                help="CPU workers (without --devices)",
            ),
            click.option(
                "--threads", default=None, type=click.IntRange(1), help="torch threads per CPU worker"
            ),
        )
    ):
        command = option(command)
    return command


def worker_slots(devices: str | None, workers: int) -> list[str | None]:
    """``--devices 0,1`` → ``["0", "1"]``; without it, ``workers`` CPU slots (``None``)."""
    if devices:
        return [d.strip() for d in devices.split(",") if d.strip()]
    return [None] * workers


def run_worker_processes(
    command_for: Callable[[str], Sequence[str]],
    env: Mapping[str, str],
    *,
    devices: str | None,
    workers: int,
    threads: int | None,
    what: str,
) -> None:
    """Start one process per slot (``command_for("gpu0" | "cpu1")``), wait, exit with the worst status."""
    slots = worker_slots(devices, workers)
    processes = []
    for index, device in enumerate(slots):
        child = dict(env)
        if device is not None:
            child["CUDA_VISIBLE_DEVICES"] = device
        else:
            thread_environment(threads or max(1, (os.cpu_count() or 1) // len(slots)), child)
        label = f"gpu{device}" if device is not None else f"cpu{index}"
        processes.append(subprocess.Popen(list(command_for(label)), env=child))
    click.echo(f"{what}: {len(processes)} worker(s)", err=True)

    def forward(signum: int, frame: FrameType | None) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [process.wait() for process in processes]
    if any(codes):
        raise SystemExit(max(abs(code) for code in codes))


@contextlib.contextmanager
def process_group(command: Sequence[str], env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run a worker command in a process group of its own; on exit SIGTERM the group, SIGKILL past 30 s.

    For tests, benchmarks and scripts that start ``omni ... worker``: the command and every
    worker process it started go away together, even one its leader no longer waits for.
    """
    process = subprocess.Popen(list(command), env=dict(env), start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def omni_command(*args: str) -> list[str]:
    """``omni ARGS`` run by this interpreter (no console script needed on PATH)."""
    return [sys.executable, "-c", "from omni_core.cli.main import main; main()", *args]
