"""``DiffusionEngine``: the object users hold.

It resolves the executor class from the config, owns the executor's
lifetime and offers the same verbs (``step``, ``submit``) plus a
``generate`` convenience for the common one-prompt case. After ``close``
(or once the executor reports itself dead) every call says so instead of
hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from omni_core.config import OmniDiffusionConfig
from omni_core.errors import ExecutorDeadError
from omni_core.executors.base import DiffusionExecutor, ProgressEvent, ProgressListener
from omni_core.request import DiffusionOutput, OmniDiffusionRequest
from omni_core.timeouts import TimeoutWatcher


class DiffusionEngine:
    """Runs requests through the executor its config selects.

    Use it as a context manager, or call :meth:`close`; both are idempotent.
    """

    def __init__(self, config: OmniDiffusionConfig | None = None, **config_fields: Any) -> None:
        if config is None:
            config = OmniDiffusionConfig(**config_fields)
        elif config_fields:
            raise TypeError("pass either a config or config fields as keywords, not both")
        self.config = config
        executor_class = config.resolve_executor_class()
        self.executor: DiffusionExecutor = executor_class(config)
        self._timeouts = TimeoutWatcher(self.executor.abort)
        self._progress = ProgressRouter(self.executor)
        self._closed = False

    @classmethod
    def from_config(cls, config: OmniDiffusionConfig) -> DiffusionEngine:
        return cls(config)

    def _check_open(self) -> None:
        if self._closed:
            raise ExecutorDeadError("this DiffusionEngine is closed; create a new one")

    def step(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        """Run a batch; one output per request, in order (errors in ``output.error``)."""
        self._check_open()
        if any(self._timeout_of(request) is not None for request in requests):
            futures = [self.submit(request) for request in requests]
            return [future.result() for future in futures]
        return self.executor.execute_model(list(requests))

    def submit(
        self, request: OmniDiffusionRequest, *, on_progress: ProgressListener | None = None
    ) -> Future[DiffusionOutput]:
        """Queue one request; the future resolves to its output.

        With a timeout (the request's, else ``config.request_timeout``) the future
        resolves to a ``RequestTimeoutError`` output once it passes, and the
        request is aborted. ``on_progress`` is called with this request's
        :class:`ProgressEvent` after each denoising step, from an executor thread,
        until the future is done; the events carry ``preview`` images where the
        request asks for ``partial_images`` and the executor can see its steps.
        """
        self._check_open()
        if on_progress is not None:
            self._progress.follow(request.request_id, on_progress)
        try:
            future = self.executor.submit(request)
        except BaseException:
            self._progress.unfollow(request.request_id)
            raise
        seconds = self._timeout_of(request)
        if seconds is not None:
            future = self._timeouts.watch(request.request_id, seconds, future)
        if on_progress is not None:
            future.add_done_callback(lambda _: self._progress.unfollow(request.request_id))
        return future

    def _timeout_of(self, request: OmniDiffusionRequest) -> float | None:
        timeout = getattr(request, "timeout", None)
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
            return float(timeout)
        return self.config.request_timeout

    def abort(self, request_id: str) -> bool:
        """Abort a queued or running request; True if it will end with ``RequestCancelledError``."""
        return self.executor.abort(request_id)

    def generate(self, prompt: str, **request_fields: Any) -> DiffusionOutput:
        """Run one prompt and return its output, raising if it failed."""
        request = OmniDiffusionRequest(prompt=prompt, **request_fields)
        return self.step([request])[0].raise_for_error()

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        self._check_open()
        return self.executor.collective_rpc(method, timeout=timeout, args=args, kwargs=kwargs)

    def add_progress_listener(self, listener: ProgressListener) -> Callable[[], None]:
        return self.executor.add_progress_listener(listener)

    def check_health(self) -> None:
        """Return if the engine can run requests; raise saying why not."""
        self._check_open()
        self.executor.check_health()

    @property
    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Shut the executor down; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._timeouts.close()
        self.executor.shutdown()

    def __enter__(self) -> DiffusionEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ProgressRouter:
    """Hands each request's progress events to the callback its ``submit`` gave.

    One listener on the executor and a dict by request id, rather than one listener per
    request: with hundreds of requests in flight each event would otherwise be offered to all.
    """

    def __init__(self, executor: DiffusionExecutor) -> None:
        self._executor = executor
        self._callbacks: dict[str, ProgressListener] = {}
        self._lock = threading.Lock()
        self._listening = False

    def follow(self, request_id: str, callback: ProgressListener) -> None:
        with self._lock:
            self._callbacks[request_id] = callback
            start = not self._listening
            self._listening = True
        if start:
            self._executor.add_progress_listener(self._route)

    def unfollow(self, request_id: str) -> None:
        with self._lock:
            self._callbacks.pop(request_id, None)

    def _route(self, event: ProgressEvent) -> None:
        with self._lock:
            callback = self._callbacks.get(event.request_id)
        if callback is not None:
            callback(event)
