"""The Ray actor: one model runner on one GPU (or a CPU share), loaded once.

A threaded actor (``max_concurrency`` > 1), so ``abort`` and ``progress``
calls are served while ``execute`` runs; the runner itself runs one batch
at a time (it holds its own lock). Requests and outputs travel as Python
objects through Ray's object store (images stay numpy arrays, no PNG round
trip): inside a Ray cluster that means pickle, which is why the cluster is
the trust boundary (docs/executors/ray.md).
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Sequence
from typing import Any

PROGRESS_BACKLOG = 10_000


class DiffusionActor:
    """Wrapped with ``ray.remote`` by the executor; plain Python so it imports without Ray."""

    def __init__(self, config_fields: dict[str, Any], rank: int, threads: int | None) -> None:
        from omni_core.executors import RunnerHost

        self.rank = rank
        self.host = RunnerHost(config_fields, threads=threads)
        self._progress: collections.deque[tuple[list[str], int, int, dict[str, Any]]] = collections.deque(
            maxlen=PROGRESS_BACKLOG
        )
        self._progress_lock = threading.Lock()

    def ready(self) -> dict[str, Any]:
        """Where this actor runs and what it loaded (answered once the model is in memory)."""
        import ray

        context = ray.get_runtime_context()
        return {
            **self.host.describe(),
            "rank": self.rank,
            "node_id": context.get_node_id(),
            "actor_id": context.get_actor_id(),
            "node_ip": ray.util.get_node_ip_address(),
        }

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        def on_step(request_ids: Sequence[str], step: int, total: int, previews: Any) -> None:
            with self._progress_lock:
                self._progress.append((list(request_ids), step, total, dict(previews)))

        return self.host.execute(requests, on_step=on_step)

    def progress(self) -> list[tuple[list[str], int, int, dict[str, Any]]]:
        """Denoising steps finished since the last call."""
        with self._progress_lock:
            events = list(self._progress)
            self._progress.clear()
        return events

    def abort(self, request_id: str) -> bool:
        return self.host.cancel(request_id)

    def rpc(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.host.rpc(method, args, kwargs)

    def pid(self) -> int:
        return os.getpid()
