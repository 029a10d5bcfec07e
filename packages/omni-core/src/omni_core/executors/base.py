"""The executor contract every omni package implements.

Modelled on vLLM's executor layer: an executor is built from the config,
gets an ``_init_executor`` hook, runs requests, can broadcast a method call
to its workers with ``collective_rpc``, reports health and shuts down.

An executor writes one of the two ways to run requests and gets the other:
``execute_model`` (a batch in, one output per request out) or ``submit``
(one request in, a future out, which is what schedulers and servers build
on). Executors that run batches on slots of their own (processes, actors)
should subclass :class:`~omni_core.executors.queued.QueuedDiffusionExecutor`,
which writes both.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from omni_core.errors import ExecutorDeadError
from omni_core.executors.options import NoOptions, parse_executor_options
from omni_core.previews import Preview
from omni_core.request import DiffusionOutput, OmniDiffusionRequest

if TYPE_CHECKING:
    from omni_core.config import OmniDiffusionConfig


@dataclass(frozen=True)
class ProgressEvent:
    """One denoising step finished for ``request_id`` (``step`` counts from 1).

    ``preview`` is set on the steps where the request asked for a preview image
    (``OmniDiffusionRequest.partial_images``), by executors that can carry one.
    """

    request_id: str
    step: int
    total_steps: int
    preview: Preview | None = None


ProgressListener = Callable[[ProgressEvent], None]
ResultT = TypeVar("ResultT")


class DiffusionExecutor(ABC):
    """Base class of every executor.

    Subclasses set ``options_class`` to a dataclass describing their options
    (validated from ``config.executor_options``; available as
    ``self.options``) and read anything else from ``self.od_config``, which
    may be a user's config subclass carrying extra fields.

    ``shutdown`` is made idempotent by this class: a subclass writes the
    cleanup once, and a second call (or the engine's ``close`` after a manual
    ``shutdown``) does nothing.
    """

    options_class: ClassVar[type] = NoOptions
    max_concurrent_submits: int = 8
    """Threads behind the default :meth:`submit`; overridden by executors with their own queue."""

    def __init__(self, od_config: OmniDiffusionConfig) -> None:
        self.od_config = od_config
        self.options: Any = parse_executor_options(
            self.options_class, dict(od_config.executor_options), executor_name=type(self).__name__
        )
        self._progress_listeners: list[ProgressListener] = []
        self._listeners_lock = threading.Lock()
        self._submit_pool: ThreadPoolExecutor | None = None
        self._submit_pool_lock = threading.Lock()
        self._is_shutdown = False
        _require_a_way_to_run(type(self))
        self._init_executor()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own_shutdown = cls.__dict__.get("shutdown")
        if own_shutdown is not None and not getattr(own_shutdown, "_omni_idempotent", False):
            cls.shutdown = _idempotent_shutdown(own_shutdown)  # type: ignore[method-assign,assignment]

    # ----------------------------------------------------------------- abstract

    @abstractmethod
    def _init_executor(self) -> None:
        """Start workers, open clients, load models: whatever the executor needs."""

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        """Run ``requests``; return one output per request, in the same order.

        A request that fails yields an output with ``error`` set; it must not
        fail its neighbours. Raise only when the executor itself cannot work.
        The default submits every request and waits for all of them.
        """
        futures = [self.submit(request) for request in requests]
        return [future.result() for future in futures]

    @abstractmethod
    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        """Call ``method`` on every worker; return the answers in rank order."""

    @abstractmethod
    def check_health(self) -> None:
        """Return if healthy; raise (``ExecutorDeadError`` or similar) saying why not."""

    @abstractmethod
    def shutdown(self) -> None:
        """Release every resource; leaves no process, thread or socket behind."""

    # ----------------------------------------------------------------- defaults

    @property
    def is_shutdown(self) -> bool:
        """True once :meth:`shutdown` has run."""
        return self._is_shutdown

    @property
    def dead_reason(self) -> str | None:
        """Why this executor can run nothing more (it will not recover by itself); None while it can."""
        return None

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        """Run one request asynchronously.

        The default runs ``execute_model([request])`` on a small thread pool
        (``max_concurrent_submits`` threads); executors with their own queue
        override it to batch concurrent requests. The future resolves to the
        request's output (its ``error`` set if the request failed) or raises
        if the executor itself failed.
        """
        return self._run_on_pool(self._execute_one, request)

    def _run_on_pool(self, call: Callable[..., ResultT], *args: Any) -> Future[ResultT]:
        """Run ``call(*args)`` on this executor's thread pool (``max_concurrent_submits`` threads).

        For executors that run one request per call (remote ones): their ``submit``
        is this, and the pool is closed at shutdown.
        """
        self._raise_if_shut_down()
        with self._submit_pool_lock:
            if self._submit_pool is None:
                self._submit_pool = ThreadPoolExecutor(
                    max_workers=self.max_concurrent_submits,
                    thread_name_prefix=f"omni-submit-{type(self).__name__}",
                )
            pool = self._submit_pool
        return pool.submit(call, *args)

    def _raise_if_shut_down(self, stopping: bool = False) -> None:
        """The one guard of every executor's entry points: raise once shut down (or ``stopping``)."""
        if stopping or self._is_shutdown:
            raise ExecutorDeadError(f"{type(self).__name__} is shut down; create a new engine")

    def _execute_one(self, request: OmniDiffusionRequest) -> DiffusionOutput:
        outputs = self.execute_model([request])
        if len(outputs) != 1:
            raise RuntimeError(
                f"{type(self).__name__}.execute_model returned {len(outputs)} outputs for 1 request"
            )
        return outputs[0]

    def abort(self, request_id: str) -> bool:
        """Stop a queued or running request between denoising steps, if this executor can.

        Returns True if the request will end with ``error_type="RequestCancelledError"``
        instead of images; False if it is unknown, already finished, or this executor
        cannot abort (the default). Schedulers use it to preempt low-priority work.
        """
        return False

    def add_progress_listener(self, listener: ProgressListener) -> Callable[[], None]:
        """Call ``listener`` for every denoising step; returns a function that removes it.

        Executors that can see steps (in-process, worker processes) report
        them; others report nothing, and callers fall back to completion.
        """
        with self._listeners_lock:
            self._progress_listeners.append(listener)

        def remove() -> None:
            with self._listeners_lock:
                if listener in self._progress_listeners:
                    self._progress_listeners.remove(listener)

        return remove

    def _emit_progress(self, event: ProgressEvent) -> None:
        with self._listeners_lock:
            listeners = list(self._progress_listeners)
        for listener in listeners:
            # A broken progress bar must not fail a request.
            with contextlib.suppress(Exception):
                listener(event)

    def _close_default_submit_pool(self) -> None:
        with self._submit_pool_lock:
            pool, self._submit_pool = self._submit_pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DiffusionExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def _require_a_way_to_run(cls: type[DiffusionExecutor]) -> None:
    """An executor must write ``submit`` or ``execute_model``; each default calls the other."""
    if cls.submit is DiffusionExecutor.submit and cls.execute_model is DiffusionExecutor.execute_model:
        raise TypeError(
            f"{cls.__qualname__} must implement submit(request) or execute_model(requests); "
            "DiffusionExecutor derives the other from it"
        )


def _idempotent_shutdown(
    shutdown: Callable[[DiffusionExecutor], None],
) -> Callable[[DiffusionExecutor], None]:
    @functools.wraps(shutdown)
    def wrapper(self: DiffusionExecutor) -> None:
        lock = self.__dict__.setdefault("_omni_shutdown_lock", threading.Lock())
        with lock:
            if self.__dict__.get("_omni_shutdown_done"):
                return
            self.__dict__["_omni_shutdown_done"] = True
        self._is_shutdown = True
        try:
            shutdown(self)
        finally:
            self._close_default_submit_pool()

    wrapper._omni_idempotent = True  # type: ignore[attr-defined]
    return wrapper
