"""A third-party executor that writes only the five abstract methods is complete."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from omni_core import (
    DiffusionEngine,
    DiffusionExecutor,
    DiffusionOutput,
    ExecutorDeadError,
    ModelError,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
)


class MinimalExecutor(DiffusionExecutor):
    """Fails requests whose prompt is 'fail'; raises for 'crash'; counts shutdowns."""

    def _init_executor(self) -> None:
        self.shutdowns = 0
        self.threads: set[str] = set()

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        self.threads.add(threading.current_thread().name)
        outputs = []
        for request in requests:
            if request.prompt == "crash":
                raise RuntimeError("executor exploded")
            if request.prompt == "fail":
                outputs.append(DiffusionOutput.failure(request.request_id, ValueError("bad prompt")))
            else:
                outputs.append(DiffusionOutput(request_id=request.request_id, seed=request.seed))
        return outputs

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        return [(method, args)]

    def check_health(self) -> None:
        if self.is_shutdown:
            raise ExecutorDeadError("down")

    def shutdown(self) -> None:
        self.shutdowns += 1


@pytest.fixture
def engine() -> DiffusionEngine:
    return DiffusionEngine(OmniDiffusionConfig(executor_class=MinimalExecutor))


def test_default_submit_runs_concurrently_and_in_order_per_request(engine: DiffusionEngine) -> None:
    requests = [OmniDiffusionRequest(prompt=f"p{i}", seed=i) for i in range(32)]
    futures = [engine.submit(r) for r in requests]
    outputs = [f.result(timeout=10) for f in futures]
    assert [o.request_id for o in outputs] == [r.request_id for r in requests]
    assert [o.seed for o in outputs] == list(range(32))
    assert all(name.startswith("omni-submit-") for name in engine.executor.threads)  # type: ignore[attr-defined]
    engine.close()


def test_request_error_travels_in_output_and_executor_error_through_future(engine: DiffusionEngine) -> None:
    failed = engine.submit(OmniDiffusionRequest(prompt="fail")).result(timeout=10)
    # A foreign exception keeps its type and text inside omni's ModelError class.
    assert failed.error == "ValueError: bad prompt"
    assert (failed.error_type, failed.retryable) == ("ModelError", False)
    with pytest.raises(ModelError, match="bad prompt"):
        failed.raise_for_error()
    with pytest.raises(RuntimeError, match="executor exploded"):
        engine.submit(OmniDiffusionRequest(prompt="crash")).result(timeout=10)
    assert engine.submit(OmniDiffusionRequest(prompt="fine")).result(timeout=10).ok
    engine.close()


def test_shutdown_is_idempotent_and_engine_says_it_is_closed(engine: DiffusionEngine) -> None:
    executor = engine.executor
    engine.close()
    engine.close()
    executor.shutdown()
    assert executor.shutdowns == 1  # type: ignore[attr-defined]
    assert executor.is_shutdown
    with pytest.raises(ExecutorDeadError, match="closed"):
        engine.step([OmniDiffusionRequest(prompt="x")])
    with pytest.raises(ExecutorDeadError):
        executor.submit(OmniDiffusionRequest(prompt="x"))
    with pytest.raises(ExecutorDeadError):
        executor.check_health()


def test_collective_rpc_and_context_manager() -> None:
    with DiffusionEngine(OmniDiffusionConfig(executor_class=MinimalExecutor)) as engine:
        assert engine.collective_rpc("ping", args=(1,)) == [("ping", (1,))]
        engine.check_health()
    assert engine.is_closed


def test_progress_listener_errors_do_not_break_the_executor(engine: DiffusionEngine) -> None:
    from omni_core import ProgressEvent

    seen: list[ProgressEvent] = []

    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("bar broke")

    engine.add_progress_listener(broken)
    remove = engine.add_progress_listener(seen.append)
    engine.executor._emit_progress(ProgressEvent("r", 1, 2))
    remove()
    engine.executor._emit_progress(ProgressEvent("r", 2, 2))
    assert seen == [ProgressEvent("r", 1, 2)]
    engine.close()
