"""The worker process: load the model once, then serve messages until told to stop.

Runs in a fresh interpreter started as ``python -m omni_executor_multiproc.worker_process FD``
(never forked: a forked copy of a parent that already touched CUDA or torch
threads is unsafe; and not multiprocessing's spawn, which re-imports the
user's ``__main__``). Talks to the parent over one duplex pipe, inherited as
file descriptor FD; everything on it is between omni's own processes on one
machine, never a network peer:

parent → worker  ``("spec", WorkerSpec)`` first, then ``("execute", batch_id, requests)``,
                 ``("rpc", call_id, method, args, kwargs)``, ``("abort", request_id)``, ``("shutdown",)``
worker → parent  ``("ready", info)``, ``("load_error", type, message_with_traceback)``, ``("heartbeat",)``,
                 ``("progress", batch_id, request_ids, step, total)``,
                 ``("result", batch_id, outputs, packed_images)`` (request mode: the whole batch),
                 ``("outputs", batch_id, outputs, packed_images)`` (step mode: requests as they finish),
                 ``("rpc_result", call_id, ok, value)``

In step mode (the runner batches by denoising step) an ``execute`` message is
handed to the runner's step loop at once, so requests sent while others run
join them at the next step; this loop keeps reading the pipe meanwhile (an
abort stops its request at its next step).

A watchdog thread exits the worker if its parent disappears, so a killed
parent never leaves workers behind.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omni_core.executors import RunnerHost


PARENT_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, sent once at spawn."""

    rank: int
    device: str
    threads: int | None
    config_fields: dict[str, Any]
    """The base config's fields (a user's config subclass need not be importable here)."""
    image_transport: str
    parent_pid: int
    heartbeat_interval: float = 1.0
    """Seconds between heartbeats, so the parent can tell a hung worker from a slow one."""


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m omni_executor_multiproc.worker_process FD``: read the spec from the pipe, then serve."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not args[0].isdigit():
        sys.exit("usage: python -m omni_executor_multiproc.worker_process FD (started by the mp executor)")
    conn = Connection(int(args[0]))
    try:
        kind, spec = conn.recv()
    except (EOFError, OSError):
        return  # the parent gave up before sending the spec
    if kind != "spec":
        sys.exit(f"omni worker: expected the spec first, got {kind!r}")
    worker_main(spec, conn)


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Load the model, report ready (or why not), then serve the parent's messages."""
    _start_parent_watchdog(spec.parent_pid)
    try:
        from omni_core.executors import RunnerHost

        host = RunnerHost(spec.config_fields, device=spec.device, threads=spec.threads)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        detail = str(exc)
        if not _explains_itself(exc):
            detail += "\n" + "".join(traceback.format_exception(exc, limit=-8)).rstrip()
        conn.send(("load_error", type(exc).__name__, detail))
        conn.close()
        return
    sender = LockedSender(conn)
    sender.send(("ready", host.describe()))
    _start_heartbeat(sender, spec.heartbeat_interval)
    WorkerLoop(spec, conn, host, sender).run()


class LockedSender:
    """The pipe's sending side, shared by the serving loop and the heartbeat thread."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self._conn.send(message)


def _start_heartbeat(sender: LockedSender, interval: float) -> None:
    """A heartbeat from a thread of its own: it keeps beating while torch computes (torch releases
    the GIL), and stops when the process is stopped or wedged, which is what the parent watches for."""

    def beat() -> None:
        while True:
            time.sleep(interval)
            try:
                sender.send(("heartbeat",))
            except (OSError, ValueError):
                return

    threading.Thread(target=beat, name="omni-heartbeat", daemon=True).start()


class WorkerLoop:
    """Serves one message at a time; a pipeline is not thread-safe, so no concurrency here."""

    def __init__(self, spec: WorkerSpec, conn: Connection, host: RunnerHost, sender: LockedSender) -> None:
        self.spec = spec
        self.conn = conn
        self.sender = sender
        self.host = host
        self.backlog: deque[tuple[Any, ...]] = deque()

    def _read_between_steps(self) -> None:
        """Handle aborts at once (the runner stops the request at this step); keep the rest."""
        while self.conn.poll(0):
            message = self.conn.recv()
            if message[0] == "abort":
                self.host.cancel(message[1])
            else:
                self.backlog.append(message)

    def run(self) -> None:
        while True:
            try:
                message = self.backlog.popleft() if self.backlog else self.conn.recv()
            except (EOFError, OSError):
                return  # parent closed the pipe or died
            kind = message[0]
            if kind == "shutdown":
                return
            if kind == "execute" and self.host.step_mode:
                self._start(message[1], message[2])
            elif kind == "execute":
                self._execute(message[1], message[2])
            elif kind == "abort":
                self.host.cancel(message[1])
            elif kind == "rpc":
                self._rpc(*message[1:])

    def _start(self, batch_id: int, requests: Sequence[Any]) -> None:
        """Step mode: the requests join the running batch; each output is sent when it is done."""
        from omni_executor_multiproc.transport import pack_images

        def on_step(request_ids: Sequence[str], step: int, total: int, previews: Any) -> None:
            self.sender.send(("progress", batch_id, list(request_ids), step, total, dict(previews)))

        def deliver(output: Any) -> None:
            images = output.output
            output.output = []
            output.timings["worker"] = output.timings.get("inference", 0.0)
            packed = pack_images([images], self.spec.image_transport)
            with contextlib.suppress(OSError, ValueError):  # the parent is gone: nothing to tell
                self.sender.send(("outputs", batch_id, [output], packed))

        self.host.start(requests, deliver, on_step=on_step)

    def _execute(self, batch_id: int, requests: Sequence[Any]) -> None:
        from omni_executor_multiproc.transport import pack_images

        def on_step(request_ids: Sequence[str], step: int, total: int, previews: Any) -> None:
            self.sender.send(("progress", batch_id, list(request_ids), step, total, dict(previews)))
            self._read_between_steps()

        started = time.perf_counter()
        try:
            outputs = self.host.execute(requests, on_step=on_step)
        except Exception as exc:  # noqa: BLE001 - the runner isolates requests; this is a last resort
            from omni_core import DiffusionOutput

            outputs = [DiffusionOutput.failure(r.request_id, exc) for r in requests]
        worker_seconds = time.perf_counter() - started
        images = []
        for output in outputs:
            images.append(output.output)
            output.output = []
            output.timings["worker"] = worker_seconds
        packed = pack_images(images, self.spec.image_transport)
        self.sender.send(("result", batch_id, outputs, packed))

    def _rpc(self, call_id: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            value = self.host.rpc(method, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - sent back to the caller
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.sender.send(("rpc_result", call_id, False, detail))
            return
        self.sender.send(("rpc_result", call_id, True, value))


def _explains_itself(exc: BaseException) -> bool:
    """omni's own errors say what is wrong; one caused by anything else carries its traceback."""
    from omni_core import OmniError

    cause: BaseException | None = exc
    while cause is not None:
        if not isinstance(cause, OmniError):
            return False
        cause = cause.__cause__
    return True


def _start_parent_watchdog(parent_pid: int) -> None:
    """Exit at once if the parent dies (re-parenting changes our ppid)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(PARENT_POLL_SECONDS)

    threading.Thread(target=watch, name="omni-parent-watchdog", daemon=True).start()
