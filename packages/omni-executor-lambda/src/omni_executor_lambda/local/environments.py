"""Execution environments: one ``awslambdaric`` process each, serving one invocation at a time.

Each environment has its own Runtime API port, so the service knows which
process asked for work and which one to kill when an invocation times out.
Like Lambda, an environment is started on first need (a cold start), kept
warm between invocations, and replaced after a timeout or a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_executor_lambda.local.bootstrap import SERVICE_PID_VARIABLE
from omni_executor_lambda.local.functions import LATEST, LocalFunction

LOG_TAIL_BYTES = 4096
# Variables an environment inherits from the service (the rest of Lambda's environment is built here);
# AWS credentials stand in for the function's execution role.
INHERITED_VARIABLES = (
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "SYSTEMROOT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)

LogSink = Callable[[str, str], None]
"""``(environment label, text)`` for everything an environment prints."""


class EnvironmentGoneError(Exception):
    """The process behind a pending ``/next`` was killed or exited."""


@dataclass(frozen=True)
class InvocationResult:
    """What the caller gets: the payload, with ``function_error`` set for an error."""

    payload: bytes
    function_error: str | None = None
    log_tail: str = ""


def error_payload(request_id: str, error_type: str, message: str) -> bytes:
    """A Lambda-shaped error body for failures the runtime could not report itself."""
    return json.dumps(
        {"errorType": error_type, "errorMessage": f"RequestId: {request_id} Error: {message}"}
    ).encode()


@dataclass
class Invocation:
    payload: bytes
    client_context: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    delivered: asyncio.Event = field(default_factory=asyncio.Event)
    result: asyncio.Future[tuple[bytes, str | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    deadline: float = 0.0
    started: float = 0.0
    log: bytearray = field(default_factory=bytearray)

    def resolve(self, payload: bytes, function_error: str | None = None) -> None:
        if not self.result.done():
            self.result.set_result((payload, function_error))


class ExecutionEnvironment:
    def __init__(
        self, function: LocalFunction, index: int, port: int, region: str, log_sink: LogSink
    ) -> None:
        self.function = function
        self.index = index
        self.port = port
        self.region = region
        self.label = f"{function.name}/{index}"
        self._log_sink = log_sink
        self.process: asyncio.subprocess.Process | None = None
        self.invocation: Invocation | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.init_error: bytes | None = None

    # ------------------------------------------------------------- state

    @property
    def busy(self) -> bool:
        return self.invocation is not None

    @property
    def warm(self) -> bool:
        return self.process is not None and self.process.returncode is None

    # ---------------------------------------------------------- lifecycle

    def environ(self) -> dict[str, str]:
        function = self.function
        env = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
        task_root = str(function.code_dir or Path.cwd())
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.port}",
                "AWS_LAMBDA_FUNCTION_NAME": function.name,
                "AWS_LAMBDA_FUNCTION_VERSION": LATEST,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{self.index}/{uuid.uuid4().hex}",
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "LAMBDA_TASK_ROOT": task_root,
                "_HANDLER": function.handler,
                "PYTHONPATH": task_root,
                "PYTHONUNBUFFERED": "1",
                SERVICE_PID_VARIABLE: str(os.getpid()),
                "TZ": ":UTC",
            }
        )
        env.update(function.environment)
        return env

    async def start(self) -> None:
        self.init_error = None
        self.process = await asyncio.create_subprocess_exec(
            self.function.python,
            "-m",
            # awslambdaric, exiting when this service dies (needs omni in that interpreter)
            "omni_executor_lambda.local.bootstrap"
            if self.function.python == sys.executable
            else "awslambdaric",
            self.function.handler,
            env=self.environ(),
            cwd=str(self.function.code_dir or Path.cwd()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # so a kill takes anything the handler started too
        )
        self._spawn(self._pump_output(self.process))
        self._spawn(self._watch_exit(self.process))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            invocation = self.invocation
            if invocation is not None and invocation.delivered.is_set():
                invocation.log += chunk
            self._log_sink(self.label, chunk.decode("utf-8", "replace"))

    async def _watch_exit(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self.process is process:
            self.process = None
        self._cancel_waiter()
        invocation = self.invocation
        if invocation is None:
            return
        if self.init_error is not None:
            invocation.resolve(self.init_error, "Unhandled")
            return
        how = f"signal: {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        invocation.resolve(
            error_payload(invocation.request_id, "Runtime.ExitError", f"Runtime exited with error: {how}"),
            "Unhandled",
        )

    async def kill(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        self._cancel_waiter()

    def _cancel_waiter(self) -> None:
        # A /next still waiting belongs to a process that is gone: end it, so it cannot take
        # the next invocation meant for the replacement process.
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_exception(EnvironmentGoneError(self.label))
        self._wakeup = None

    # -------------------------------------------------------- runtime API

    async def next_invocation(self) -> Invocation:
        """What ``GET /runtime/invocation/next`` waits for."""
        while True:
            invocation = self.invocation
            if invocation is not None and not invocation.delivered.is_set():
                invocation.started = time.monotonic()
                invocation.deadline = invocation.started + self.function.timeout
                invocation.delivered.set()
                return invocation
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup

    def complete(self, request_id: str, payload: bytes, function_error: str | None) -> bool:
        invocation = self.invocation
        if invocation is None or invocation.request_id != request_id:
            return False
        invocation.resolve(payload, function_error)
        return True

    def fail_init(self, payload: bytes) -> None:
        self.init_error = payload
        if self.invocation is not None:
            self.invocation.resolve(payload, "Unhandled")

    # ---------------------------------------------------------- invoking

    async def run(self, invocation: Invocation, *, log_tail: bool = False) -> InvocationResult:
        """Give ``invocation`` to this (reserved) environment and wait for its end."""
        self.invocation = invocation
        try:
            if not self.warm:
                await self.start()
            if self._wakeup is not None and not self._wakeup.done():
                self._wakeup.set_result(None)
            payload, function_error = await self._await_result(invocation)
            tail = await self._log_tail(invocation) if log_tail else ""
            return InvocationResult(payload, function_error, tail)
        finally:
            self.invocation = None

    async def _await_result(self, invocation: Invocation) -> tuple[bytes, str | None]:
        delivered: asyncio.Future[Any] = asyncio.ensure_future(invocation.delivered.wait())
        result: asyncio.Future[Any] = invocation.result
        try:
            await asyncio.wait(
                {delivered, result},
                timeout=self.function.init_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            delivered.cancel()
        if not invocation.result.done() and not invocation.delivered.is_set():
            invocation.resolve(
                error_payload(
                    invocation.request_id,
                    "Runtime.InitTimeout",
                    f"the environment did not ask for work within {self.function.init_timeout:.0f} s",
                ),
                "Unhandled",
            )
            await self.kill()
        remaining = max(0.001, invocation.deadline - time.monotonic()) if invocation.deadline else None
        try:
            return await asyncio.wait_for(asyncio.shield(invocation.result), timeout=remaining)
        except asyncio.TimeoutError:
            # Resolved before the kill, so the caller reads a timeout, not the exit it causes.
            invocation.resolve(
                error_payload(
                    invocation.request_id,
                    "Sandbox.Timedout",
                    f"Task timed out after {self.function.timeout:.2f} seconds",
                ),
                "Unhandled",
            )
            await self.kill()
            return invocation.result.result()

    async def _log_tail(self, invocation: Invocation) -> str:
        await asyncio.sleep(0.02)  # lines printed just before the response may still be in the pipe
        duration_ms = (time.monotonic() - invocation.started) * 1000 if invocation.started else 0.0
        text = (
            f"START RequestId: {invocation.request_id} Version: {LATEST}\n"
            + invocation.log.decode("utf-8", "replace")
            + f"END RequestId: {invocation.request_id}\n"
            + f"REPORT RequestId: {invocation.request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {self.function.memory_size} MB\t"
            f"Max Memory Used: {self._max_memory_mb()} MB\t\n"
        )
        return text.encode()[-LOG_TAIL_BYTES:].decode("utf-8", "ignore")

    def _max_memory_mb(self) -> int:
        process = self.process
        if process is None:
            return 0
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
        except OSError:
            pass
        return 0
