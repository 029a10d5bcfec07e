"""``CachedExecutor``: the in-process executor plus a cache of seeded results.

A seeded request draws the same image every time (omni's determinism
guarantee), so a repeat can be answered from memory. Requests without a seed
are random by definition and always run.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from omni_core import DiffusionOutput, OmniDiffusionRequest
from omni_core.executors.base import DiffusionExecutor
from omni_core.executors.inproc import InProcDiffusionExecutor

__all__ = ["CachedExecutor", "CachedOptions"]


@dataclass(frozen=True)
class CachedOptions:
    max_entries: int = 256
    """Results kept, least recently used evicted first."""


def _cache_key(request: OmniDiffusionRequest) -> str | None:
    if request.seed is None:
        return None
    fields = request.to_dict()
    for name in ("request_id", "priority", "deadline", "tenant"):
        fields.pop(name)
    return json.dumps(fields, sort_keys=True)


class CachedExecutor(DiffusionExecutor):
    options_class = CachedOptions
    options: CachedOptions

    def _init_executor(self) -> None:
        self.inner = InProcDiffusionExecutor(
            self.od_config.replace(executor_class="inproc", executor_options={})
        )
        self.cache: OrderedDict[str, DiffusionOutput] = OrderedDict()
        self.hits = 0
        self._lock = threading.Lock()

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        outputs: list[DiffusionOutput | None] = []
        to_run: list[tuple[int, OmniDiffusionRequest]] = []
        with self._lock:
            for index, request in enumerate(requests):
                key = _cache_key(request)
                cached = self.cache.get(key) if key else None
                if cached is not None and key is not None:
                    self.cache.move_to_end(key)
                    self.hits += 1
                    outputs.append(replace(cached, request_id=request.request_id, timings={"cache_hit": 1.0}))
                else:
                    outputs.append(None)
                    to_run.append((index, request))
        if to_run:
            fresh = self.inner.execute_model([request for _, request in to_run])
            with self._lock:
                for (index, request), output in zip(to_run, fresh, strict=True):
                    outputs[index] = output
                    key = _cache_key(request)
                    if key and output.ok:
                        self.cache[key] = output
                        while len(self.cache) > self.options.max_entries:
                            self.cache.popitem(last=False)
        return [output for output in outputs if output is not None]

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        return self.inner.collective_rpc(method, timeout, args, kwargs)

    def check_health(self) -> None:
        self.inner.check_health()

    def shutdown(self) -> None:
        self.inner.shutdown()
