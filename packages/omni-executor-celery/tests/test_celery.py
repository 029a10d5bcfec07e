"""The Celery executor against real brokers and real ``omni celery worker`` processes.

Each broker gets one pool of two workers for the module (a worker takes seconds to start);
the tests that need other worker settings start their own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from omni_executor_celery.app import TASK_NAME
from omni_executor_celery.testing import celery_config, celery_workers, request, wait_for_workers

from omni_core import (
    DiffusionEngine,
    DiffusionOutput,
    ExecutorDeadError,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
)
from omni_core.testing_hostile import hostile_wire_requests, in_process_answer
from omni_core.testing_pipelines import sample_image, sample_mask


def runs(log: Path, event: str, request_id: str | None = None) -> list[tuple[str, int]]:
    """``(request_id, pid)`` of each ``event`` line in the workers' run log."""
    if not log.exists():
        return []
    lines = [line.split() for line in log.read_text().splitlines()]
    return [(rid, int(pid)) for kind, rid, pid in lines if kind == event and request_id in (None, rid)]


def wait_until(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.05)


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def pool(
    request: pytest.FixtureRequest,
    tiny_model: Path,
    tiny_lora: Path,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DiffusionEngine, Path]]:
    """Two workers on a queue of their own, and an engine sending to it; ``(engine, run_log)``."""
    backend = redis_url.rsplit("/", 1)[0] + "/1"
    broker = redis_url if request.param == "redis" else request.getfixturevalue("rabbitmq_url")
    queue = f"omni-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("runs") / "runs.log"
    with (
        celery_workers(
            broker,
            backend,
            tiny_model,
            workers=2,
            run_log=log,
            extra_args=("--queue", queue, "--lora", f"sketch={tiny_lora}"),
        ),
        DiffusionEngine(celery_config(tiny_model, broker, backend, queue=queue)) as engine,
    ):
        wait_for_workers(engine, count=2)
        yield engine, log


def test_same_8bit_image_as_inproc(
    pool: tuple[DiffusionEngine, Path], tiny_model: Path, tiny_lora: Path
) -> None:
    engine, _ = pool
    # Text, and an inpainting request with a pipeline argument and a LoRA adapter (images as PNG in JSON).
    cases = [
        request(11),
        OmniDiffusionRequest(
            "a 7",
            image=sample_image(seed=5),
            mask_image=sample_mask(),
            num_inference_steps=3,
            seed=12,
            extra={"eta": 1.0},
            lora="sketch",
        ),
    ]
    remote = [engine.submit(case).result(60).raise_for_error() for case in cases]
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model),
        executor_class="inproc",
        executor_options={"torch_threads": 1},
        loras={"sketch": str(tiny_lora)},
    )
    with DiffusionEngine(config) as inproc:
        local = [inproc.step([case])[0].raise_for_error() for case in cases]
    for got, want in zip(remote, local, strict=True):
        assert np.array_equal(got.output[0], want.output[0])


def test_200_concurrent_requests_none_lost_or_duplicated(pool: tuple[DiffusionEngine, Path]) -> None:
    engine, log = pool
    requests = [request(seed, steps=1) for seed in range(200)]
    futures = [engine.submit(r) for r in requests]
    outputs = [future.result(300) for future in futures]
    assert [o.error for o in outputs] == [None] * 200
    assert [o.request_id for o in outputs] == [r.request_id for r in requests]
    ids = {r.request_id for r in requests}
    done = [(rid, pid) for rid, pid in runs(log, "done") if rid in ids]
    assert sorted(rid for rid, _ in done) == sorted(ids)  # each ran exactly once
    assert len({pid for _, pid in done}) == 2  # both workers took part


def test_worker_rejects_a_malformed_request_alone(pool: tuple[DiffusionEngine, Path]) -> None:
    engine, _ = pool
    good = engine.submit(request(1))
    # Straight onto the queue, past the executor's own checks, as another client could.
    bad = engine.executor.app.send_task(  # type: ignore[attr-defined]
        TASK_NAME,
        args=[{"prompt": 7, "height": "tall"}],
        queue=engine.executor.settings.queue,  # type: ignore[attr-defined]
    )
    rejected = DiffusionOutput.from_dict(bad.get(timeout=60))
    assert rejected.error_type == "RequestValidationError"
    assert rejected.error_field == "prompt", rejected.error
    assert good.result(60).error is None


def test_client_side_validation_names_the_field(pool: tuple[DiffusionEngine, Path]) -> None:
    engine, _ = pool
    output = engine.submit(OmniDiffusionRequest(prompt="a 7", height=65, width=64)).result(10)
    assert output.error_type == "RequestValidationError"
    assert output.error_field == "height"


def test_a_request_id_seen_twice_runs_once(pool: tuple[DiffusionEngine, Path]) -> None:
    engine, log = pool
    first = request(5)
    output = engine.submit(first).result(60).raise_for_error()
    again = engine.executor.app.send_task(  # type: ignore[attr-defined]
        TASK_NAME,
        args=[first.to_dict()],
        task_id=first.request_id,
        queue=engine.executor.settings.queue,  # type: ignore[attr-defined]
    )
    stored = DiffusionOutput.from_dict(again.get(timeout=60))
    assert np.array_equal(stored.output[0], output.output[0])
    assert len(runs(log, "start", first.request_id)) == 1


def test_abort_revokes_a_queued_task_and_stops_a_running_one(pool: tuple[DiffusionEngine, Path]) -> None:
    engine, log = pool
    long = [request(seed, steps=200, size=128) for seed in (21, 22)]
    running = [engine.submit(r) for r in long]
    wait_until(lambda: all(runs(log, "start", r.request_id) for r in long), 60, "both long requests start")
    queued_request = request(23)
    queued = engine.submit(queued_request)
    assert engine.abort(queued_request.request_id)
    assert queued.result(5).error_type == "RequestCancelledError"
    for r, future in zip(long, running, strict=True):
        assert engine.abort(r.request_id)
        assert future.result(5).error_type == "RequestCancelledError"
    # Both workers stop at their next step (200 steps would take far longer) and serve again.
    wait_until(lambda: all(runs(log, "done", r.request_id) for r in long), 30, "the running requests stop")
    assert engine.submit(request(24)).result(60).error is None
    assert runs(log, "start", queued_request.request_id) == []  # the revoked task never ran


def test_health_names_a_missing_worker(tiny_model: Path, redis_url: str) -> None:
    queue = f"omni-{uuid.uuid4().hex[:8]}"
    config = celery_config(tiny_model, redis_url, redis_url, queue=queue, health_timeout=0.5)
    with DiffusionEngine(config) as engine, pytest.raises(ExecutorDeadError, match="no omni celery worker"):
        engine.executor.check_health()


def test_urgent_requests_go_first_and_a_passed_deadline_drops_a_queued_one(
    pool: tuple[DiffusionEngine, Path],
) -> None:
    engine, log = pool
    blockers = [request(seed, steps=200, size=128) for seed in (31, 32)]
    running = [engine.submit(r) for r in blockers]
    wait_until(lambda: all(runs(log, "start", r.request_id) for r in blockers), 60, "both workers are busy")
    one_step = {"prompt": "a 7", "height": 64, "width": 64, "num_inference_steps": 1}
    relaxed = [OmniDiffusionRequest(**one_step, seed=seed, priority=5) for seed in (33, 34, 35)]
    urgent = OmniDiffusionRequest(**one_step, seed=36, priority=-5)
    late = OmniDiffusionRequest(**one_step, seed=37, deadline=time.time() + 0.5)
    futures = [engine.submit(r) for r in [*relaxed, late, urgent]]
    time.sleep(2.0)  # the deadline (and the client's grace) passes while both workers are busy
    for r in blockers:
        engine.abort(r.request_id)
    outputs = [f.result(60) for f in futures]
    assert [o.error for o in outputs[:3]] == [None] * 3
    assert outputs[4].error is None
    assert outputs[3].error_type == "RequestTimeoutError", outputs[3].error
    assert runs(log, "start", late.request_id) == []  # dropped by the worker, never run
    order = [rid for rid, _ in runs(log, "start") if rid in {r.request_id for r in [*relaxed, urgent]}]
    assert order[0] == urgent.request_id, order  # queued last, run first
    for future in running:
        future.result(5)


def test_hostile_requests_on_the_queue_get_the_in_process_answer(
    pool: tuple[DiffusionEngine, Path], tiny_model: Path
) -> None:
    engine, _ = pool
    cases = hostile_wire_requests()
    # Straight onto the queue, past the executor's own checks, as another client could.
    results = [
        engine.executor.app.send_task(TASK_NAME, args=[wire], queue=engine.executor.settings.queue)  # type: ignore[attr-defined]
        for wire, _ in cases
    ]
    config = OmniDiffusionConfig(model_name_or_path=str(tiny_model), executor_class="inproc")
    with DiffusionEngine(config) as inproc:
        for (wire, field), result in zip(cases, results, strict=True):
            output = DiffusionOutput.from_dict(result.get(timeout=60))
            assert output.error_type == "RequestValidationError", (wire["request_id"], output.error)
            assert output.error_field == field, (wire["request_id"], output.error)
            local = in_process_answer(inproc, wire)
            assert (local.error_field, local.error) == (output.error_field, output.error), wire["request_id"]
    assert engine.submit(request(2)).result(60).error is None
