"""The in-process executor through the engine, and determinism across processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from omni_core import (
    DiffusionEngine,
    ExecutorDeadError,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
    ProgressEvent,
    RequestTimeoutError,
)
from omni_core.images import decode_png


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Iterator[DiffusionEngine]:
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), executor_class="inproc", max_batch_size=4
    )
    with DiffusionEngine(config) as engine:
        yield engine


def req(seed: int, **fields: object) -> OmniDiffusionRequest:
    base: dict[str, object] = {"height": 64, "width": 64, "num_inference_steps": 3, "seed": seed}
    return OmniDiffusionRequest(prompt="a cat", **{**base, **fields})  # type: ignore[arg-type]


def test_step_returns_images(engine: DiffusionEngine) -> None:
    outputs = engine.step([req(1), req(2, height=32)])
    assert [o.output[0].shape for o in outputs] == [(64, 64, 3), (32, 64, 3)]
    assert all(o.output[0].dtype == np.uint8 for o in outputs)
    assert outputs[0].timings["inference"] > 0


def test_concurrent_submits_are_batched_and_none_lost(engine: DiffusionEngine) -> None:
    calls: list[int] = []
    lock = threading.Lock()
    requests = [req(i) for i in range(12)]
    ids = {r.request_id for r in requests}

    def listener(event: ProgressEvent) -> None:
        if event.step == 1 and event.request_id in ids:
            with lock:
                calls.append(1)

    remove = engine.add_progress_listener(listener)
    futures = [engine.submit(r) for r in requests]
    outputs = [f.result(timeout=60) for f in futures]
    remove()
    assert [o.request_id for o in outputs] == [r.request_id for r in requests]
    assert all(o.ok for o in outputs)
    assert all("queue" in o.timings for o in outputs)
    # 12 requests, batch cap 4: each request saw step 1 exactly once.
    assert len(calls) == 12


def test_progress_reports_every_step(engine: DiffusionEngine) -> None:
    events: list[ProgressEvent] = []
    request = req(4, num_inference_steps=4)

    def listener(event: ProgressEvent) -> None:
        if event.request_id == request.request_id:
            events.append(event)

    remove = engine.add_progress_listener(listener)
    engine.submit(request).result(timeout=60)
    remove()
    assert [(e.step, e.total_steps) for e in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_collective_rpc(engine: DiffusionEngine) -> None:
    assert engine.collective_rpc("ping") == ["pong"]
    (info,) = engine.collective_rpc("describe")
    assert info["device"] == "cpu"
    with pytest.raises(AttributeError, match="no public method 'nope'"):
        engine.collective_rpc("nope")
    with pytest.raises(AttributeError):
        engine.collective_rpc("_lock")


def test_engine_after_close(tiny_model: Path) -> None:
    engine = DiffusionEngine(OmniDiffusionConfig(model_name_or_path=str(tiny_model), executor_class="inproc"))
    engine.check_health()
    engine.close()
    engine.close()
    with pytest.raises(ExecutorDeadError):
        engine.submit(req(1))
    with pytest.raises(ExecutorDeadError):
        engine.check_health()


FRESH_PROCESS = """
import sys
from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.images import encode_png
config = OmniDiffusionConfig(model_name_or_path=sys.argv[1], executor_class="inproc")
with DiffusionEngine(config) as engine:
    request = OmniDiffusionRequest(prompt="a cat", height=64, width=64, num_inference_steps=3, seed=7)
    out = engine.step([request])[0]
sys.stdout.buffer.write(encode_png(out.output[0]))
"""


def test_same_seed_same_8bit_image_in_a_fresh_process(engine: DiffusionEngine, tiny_model: Path) -> None:
    here = engine.step([req(7)])[0].output[0]
    again = engine.step([req(7)])[0].output[0]
    assert np.array_equal(here, again)
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tiny_model)], capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    assert np.array_equal(decode_png(result.stdout), here)


def test_abort_stops_a_running_request_between_steps_and_spares_its_batch(engine: DiffusionEngine) -> None:
    victim = req(1, num_inference_steps=100)
    neighbour = req(2, num_inference_steps=100)
    queued = req(3, num_inference_steps=100, height=32)
    steps: dict[str, int] = {}
    started = threading.Event()

    def listener(event: ProgressEvent) -> None:
        steps[event.request_id] = event.step
        if event.request_id == victim.request_id:
            started.set()

    remove = engine.add_progress_listener(listener)
    futures = [engine.submit(r) for r in (victim, neighbour, queued)]
    assert started.wait(60)
    assert engine.executor.abort(queued.request_id)  # still queued behind the first batch
    assert engine.executor.abort(victim.request_id)
    outputs = [f.result(timeout=120) for f in futures]
    remove()
    assert outputs[0].error_type == "RequestCancelledError"
    assert outputs[2].error_type == "RequestCancelledError"
    assert outputs[1].ok, outputs[1].error
    assert steps[neighbour.request_id] == 100  # re-run alone to the end
    assert not engine.executor.abort(victim.request_id)  # finished: nothing to abort


def test_a_request_past_its_timeout_fails_with_the_timeout_class_and_is_aborted(
    engine: DiffusionEngine,
) -> None:
    steps: list[int] = []
    slow = req(5, height=256, width=256, num_inference_steps=200, timeout=0.5)
    remove = engine.add_progress_listener(
        lambda event: steps.append(event.step) if event.request_id == slow.request_id else None
    )
    output = engine.submit(slow).result(timeout=60)
    assert (output.error_type, output.retryable) == ("RequestTimeoutError", True)
    with pytest.raises(RequestTimeoutError, match=r"timeout of 0\.5 s"):
        output.raise_for_error()
    after = engine.step([req(6)])[0]  # the engine stays usable: the slow one was aborted, not left running
    remove()
    assert after.ok
    assert len(steps) < 200  # it stopped between steps instead of running to the end


def test_the_configs_request_timeout_applies_unless_a_request_sets_its_own(tiny_model: Path) -> None:
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), executor_class="inproc", request_timeout=0.3
    )
    with DiffusionEngine(config) as timed:
        slow = timed.step([req(7, height=256, width=256, num_inference_steps=200)])[0]
        assert slow.error_type == "RequestTimeoutError"
        own = timed.step([req(8, timeout=120)])[0]
        assert own.ok
    with pytest.raises(ValueError, match="request_timeout"):
        OmniDiffusionConfig(request_timeout=-1)
