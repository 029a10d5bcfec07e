"""Hung workers, restarts with back-off, recovery when the model comes back, and what abort promises."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from omni_core import (
    DiffusionEngine,
    ExecutorDeadError,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
    ProgressEvent,
)
from omni_executor_multiproc import MultiProcDiffusionExecutor

HANG_TIMEOUT = 3.0


def mp_config(model: Path, **options: object) -> OmniDiffusionConfig:
    return OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="mp",
        executor_options={"num_workers": 1, "threads_per_worker": 1, **options},
    )


def request(seed: int, steps: int = 2, size: int = 64) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt="x", height=size, width=size, num_inference_steps=steps, seed=seed)


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def test_a_stopped_worker_is_declared_hung_killed_and_replaced(tiny_model: Path) -> None:
    with DiffusionEngine(mp_config(tiny_model, hang_timeout=HANG_TIMEOUT)) as engine:
        executor = engine.executor
        assert isinstance(executor, MultiProcDiffusionExecutor)
        started = threading.Event()
        remove = engine.add_progress_listener(lambda event: started.set())
        stuck = engine.submit(request(1, steps=200, size=256))
        assert started.wait(60), "the request never started"
        remove()
        (worker,) = executor.workers
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            output = stuck.result(timeout=HANG_TIMEOUT + 5)  # detected within hang_timeout + 5 s
            assert (output.error_type, output.retryable) == ("WorkerDiedError", True)
            assert "hung" in (output.error or "")
            assert "hang_timeout" in (output.error or "")
            with pytest.raises(ExecutorDeadError):
                engine.check_health()  # says so while the replacement loads
            fresh = engine.step([request(2)])[0]  # served by the replacement, the stopped one never resumed
            assert fresh.ok, fresh.error
            assert executor.workers[0].pid != worker.pid
            engine.check_health()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGCONT)


def test_a_missing_model_is_retried_with_back_off_and_serving_resumes_when_it_returns(
    tiny_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    options = {"restart_backoff": 0.2, "max_restart_backoff": 1.0}
    with DiffusionEngine(mp_config(model, **options)) as engine:
        executor = engine.executor
        assert isinstance(executor, MultiProcDiffusionExecutor)
        assert engine.step([request(1)])[0].ok
        hidden = tmp_path / "hidden"
        model.rename(hidden)
        os.kill(executor.workers[0].pid, signal.SIGKILL)

        def unhealthy_with_reason() -> bool:
            try:
                engine.check_health()
            except ExecutorDeadError as exc:
                return "could not be restarted" in str(exc) and str(model) in str(exc)
            return False

        wait_for(unhealthy_with_reason, 60, "health reporting the failed restart")
        refused = engine.step([request(2)])[0]  # fails at once, retryable, instead of waiting forever
        assert (refused.error_type, refused.retryable) == ("ExecutorDeadError", True)
        assert executor.dead_reason is None  # recovering, not dead
        hidden.rename(model)

        def healthy() -> bool:
            try:
                engine.check_health()
            except ExecutorDeadError:
                return False
            return True

        wait_for(healthy, 60, "recovery after the model came back")
        assert engine.step([request(3)])[0].ok


def test_max_restarts_within_the_window_makes_the_executor_dead(tiny_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    options = {"max_restarts": 2, "restart_backoff": 0.1, "max_restart_backoff": 0.2}
    with DiffusionEngine(mp_config(model, **options)) as engine:
        executor = engine.executor
        assert isinstance(executor, MultiProcDiffusionExecutor)
        shutil.rmtree(model)
        os.kill(executor.workers[0].pid, signal.SIGKILL)
        wait_for(lambda: executor.dead_reason is not None, 60, "the executor reporting dead")
        assert "max_restarts=2" in (executor.dead_reason or "")
        with pytest.raises(ExecutorDeadError, match="max_restarts"):
            engine.submit(request(1))


@pytest.mark.parametrize("executor_class", ["mp", "inproc"])
def test_abort_returning_true_means_the_request_ends_cancelled(tiny_model: Path, executor_class: str) -> None:
    config = mp_config(tiny_model).replace(executor_class=executor_class, executor_options={})
    if executor_class == "mp":
        config = config.replace(executor_options={"num_workers": 1, "threads_per_worker": 1})
    with DiffusionEngine(config) as engine:
        for seed in range(5):
            answers: list[bool] = []
            target = request(seed, steps=3)

            def abort_at_last_step(
                event: ProgressEvent, target: OmniDiffusionRequest = target, answers: list[bool] = answers
            ) -> None:
                if event.request_id == target.request_id and event.step == event.total_steps and not answers:
                    answers.append(engine.abort(target.request_id))

            remove = engine.add_progress_listener(abort_at_last_step)
            output = engine.submit(target).result(timeout=60)
            remove()
            assert answers, "no progress event for the last step"
            if answers[0]:
                assert output.error_type == "RequestCancelledError", output
            else:
                assert output.ok
