"""The parent's view of one worker process: its process, pipe and captured output.

Workers start from a clean interpreter (``python -m omni_executor_multiproc.worker_process``),
not with multiprocessing's spawn, which re-imports the user's ``__main__``: a
script without an ``if __name__ == "__main__":`` guard, a script piped into
``python -`` and a notebook cell all work. The pipe is a socket pair whose
child end the worker inherits as a file descriptor. The worker's stdout and
stderr are forwarded, line by line and prefixed with its rank, to this
process's ``sys.stderr`` (so a notebook shows them too), and the last lines
are kept so that a worker that dies while loading says why.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import Pipe
from typing import IO, Any

from omni_core import OmniDiffusionConfig
from omni_core.executors import thread_environment, worker_config_fields
from omni_executor_multiproc.layout import WorkerPlacement
from omni_executor_multiproc.worker import WorkerSpec

JOIN_SECONDS = 5.0
OUTPUT_TAIL_LINES = 30


class WorkerStartError(RuntimeError):
    """The worker died or reported an error before it was ready."""


class WorkerOutput:
    """Forwards a worker's output to ``sys.stderr`` and keeps its last lines."""

    def __init__(self, stream: IO[bytes], label: str) -> None:
        self.label = label
        self.tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
        self._thread = threading.Thread(
            target=self._pump, args=(stream,), name=f"{label}-output", daemon=True
        )
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.tail.append(line)
                with contextlib.suppress(Exception):  # a closed or odd sys.stderr must not kill the pump
                    print(f"({self.label}) {line}", file=sys.stderr, flush=True)

    def last_lines(self, wait: float = 2.0) -> str:
        """The worker's last output lines (waits briefly for the pipe to drain after an exit)."""
        self._thread.join(timeout=wait)
        return "\n".join(self.tail)


class WorkerHandle:
    """Starts, talks to and stops one worker process."""

    def __init__(
        self,
        placement: WorkerPlacement,
        config: OmniDiffusionConfig,
        image_transport: str,
        restarts: int = 0,
        heartbeat_interval: float = 1.0,
    ) -> None:
        self.placement = placement
        self.restarts = restarts
        self.info: dict[str, Any] = {}
        self.alive = False
        self.last_seen = time.monotonic()
        """When the worker last sent anything (heartbeats included)."""
        self.last_progress = time.monotonic()
        """When it last finished a denoising step or was handed a batch."""
        self.hung: str | None = None
        """Why the parent declared it hung (then it is killed)."""
        self._send_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.conn, child_conn = Pipe(duplex=True)
        env = dict(os.environ)
        thread_environment(placement.threads, env)
        env["PYTHONUNBUFFERED"] = "1"
        fd = child_conn.fileno()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "omni_executor_multiproc.worker_process", str(fd)],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        child_conn.close()
        assert self.process.stdout is not None
        self.output = WorkerOutput(self.process.stdout, f"omni-worker rank={placement.rank} pid={self.pid}")
        spec = WorkerSpec(
            rank=placement.rank,
            device=placement.device,
            threads=placement.threads,
            config_fields=worker_config_fields(config),
            image_transport=image_transport,
            parent_pid=os.getpid(),
            heartbeat_interval=heartbeat_interval,
        )
        with contextlib.suppress(OSError):  # a worker that died at once is reported by wait_ready
            self.send(("spec", spec))

    @property
    def rank(self) -> int:
        return self.placement.rank

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.poll()

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, deadline: float) -> dict[str, Any]:
        """Block until the worker loaded its model; raise :class:`WorkerStartError` otherwise."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerStartError(f"worker {self.rank} was not ready before the startup timeout")
            try:
                if not self.conn.poll(min(remaining, 0.5)):
                    if not self.is_alive():
                        raise WorkerStartError(self._died_while_loading())
                    continue
                message = self.conn.recv()
            except (EOFError, OSError):
                raise WorkerStartError(self._died_while_loading()) from None
            if message[0] == "ready":
                self.info = message[1]
                # Silence is counted from now, not from the spawn: a load longer than hang_timeout
                # would otherwise get a fresh worker killed as hung the moment it is ready.
                self.last_seen = self.last_progress = time.monotonic()
                self.alive = True
                return self.info
            if message[0] == "load_error":
                raise WorkerStartError(f"{message[1]}: {message[2]}")

    def _died_while_loading(self) -> str:
        how = self.describe_exit()
        output = self.output.last_lines()
        said = f"; its last output:\n{output}" if output else " without printing anything"
        return f"worker {self.rank} {how} while loading{said}"

    def start_reader(
        self, on_message: Callable[[WorkerHandle, Any], None], on_exit: Callable[[WorkerHandle], None]
    ) -> None:
        def read() -> None:
            while True:
                try:
                    message = self.conn.recv()
                except (EOFError, OSError):
                    break
                self.last_seen = time.monotonic()
                if message[0] == "progress":
                    self.last_progress = self.last_seen
                if message[0] != "heartbeat":
                    on_message(self, message)
            on_exit(self)

        self._reader = threading.Thread(target=read, name=f"omni-reader-{self.rank}", daemon=True)
        self._reader.start()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.conn.send(message)

    def kill_hung(self, reason: str) -> None:
        """Declare the worker hung and kill it; its reader then reports the exit."""
        self.hung = reason
        with contextlib.suppress(OSError):
            self.process.kill()

    def describe_exit(self) -> str:
        """'exited with code 1' / 'was killed by signal SIGKILL', after reaping the process."""
        try:
            code = self.process.wait(timeout=JOIN_SECONDS)
        except subprocess.TimeoutExpired:
            return "stopped responding"
        if self.hung is not None:
            return f"hung ({self.hung}) and was killed"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by signal {name} (exit code {code})"
        return f"exited with code {code}"

    def stop(self) -> None:
        """Ask politely, then terminate, then kill; always reaps the process."""
        if self.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.send(("shutdown",))
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=JOIN_SECONDS)
        if self.is_alive():
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=JOIN_SECONDS)
        if self.is_alive():
            self.process.kill()
            self.process.wait()
        self.alive = False
        self.conn.close()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=JOIN_SECONDS)
        self.output.last_lines(wait=JOIN_SECONDS)
