"""The parent's view of one worker process: its process, pipe and in-flight work."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from omni_core.config import OmniDiffusionConfig
from omni_executor_multiproc.batching import Pending
from omni_executor_multiproc.layout import WorkerPlacement
from omni_executor_multiproc.worker import WorkerSpec, worker_main

JOIN_SECONDS = 5.0


class WorkerStartError(RuntimeError):
    """The worker died or reported an error before it was ready."""


class WorkerHandle:
    """Starts, talks to and stops one spawned worker."""

    def __init__(
        self,
        placement: WorkerPlacement,
        config: OmniDiffusionConfig,
        image_transport: str,
        restarts: int = 0,
    ) -> None:
        self.placement = placement
        self.restarts = restarts
        self.inflight: dict[int, list[Pending]] = {}
        self.info: dict[str, Any] = {}
        self.alive = False
        self._send_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe(duplex=True)
        spec = WorkerSpec(
            rank=placement.rank,
            device=placement.device,
            threads=placement.threads,
            config=config,
            image_transport=image_transport,
            parent_pid=os.getpid(),
        )
        self.process: BaseProcess = context.Process(
            target=worker_main,
            args=(spec, child_conn),
            name=f"omni-worker-{placement.rank}",
            daemon=True,
        )
        self.process.start()
        child_conn.close()

    @property
    def rank(self) -> int:
        return self.placement.rank

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def load(self) -> int:
        """Requests in flight on this worker (least-loaded placement uses it)."""
        return sum(len(batch) for batch in self.inflight.values())

    def wait_ready(self, deadline: float) -> dict[str, Any]:
        """Block until the worker loaded its model; raise :class:`WorkerStartError` otherwise."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerStartError(f"worker {self.rank} was not ready before the startup timeout")
            try:
                if not self.conn.poll(min(remaining, 0.5)):
                    if not self.process.is_alive():
                        raise WorkerStartError(f"worker {self.rank} {self.describe_exit()} while loading")
                    continue
                message = self.conn.recv()
            except (EOFError, OSError) as exc:
                raise WorkerStartError(f"worker {self.rank} {self.describe_exit()} while loading") from exc
            if message[0] == "ready":
                self.info = message[1]
                self.alive = True
                return self.info
            if message[0] == "load_error":
                raise WorkerStartError(f"{message[1]}: {message[2]}")

    def start_reader(
        self, on_message: Callable[[WorkerHandle, Any], None], on_exit: Callable[[WorkerHandle], None]
    ) -> None:
        def read() -> None:
            while True:
                try:
                    message = self.conn.recv()
                except (EOFError, OSError):
                    break
                on_message(self, message)
            on_exit(self)

        self._reader = threading.Thread(target=read, name=f"omni-reader-{self.rank}", daemon=True)
        self._reader.start()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.conn.send(message)

    def describe_exit(self) -> str:
        """'exited with code 1' / 'was killed by signal SIGKILL', after reaping the process."""
        self.process.join(timeout=JOIN_SECONDS)
        code = self.process.exitcode
        if code is None:
            return "stopped responding"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by signal {name} (exit code {code})"
        return f"exited with code {code}"

    def stop(self) -> None:
        """Ask politely, then terminate, then kill; always reaps the process."""
        if self.process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.send(("shutdown",))
            self.process.join(timeout=JOIN_SECONDS)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=JOIN_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.alive = False
        self.conn.close()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=JOIN_SECONDS)
