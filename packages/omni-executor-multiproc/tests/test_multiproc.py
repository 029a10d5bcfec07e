"""The multiprocess executor with real spawned workers and the tiny model."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from omni_core import (
    DiffusionEngine,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
    ProgressEvent,
)
from omni_core.executors.inproc import InProcDiffusionExecutor
from omni_executor_multiproc import MultiProcDiffusionExecutor


def req(seed: int, **fields: object) -> OmniDiffusionRequest:
    base: dict[str, object] = {"height": 64, "width": 64, "num_inference_steps": 3, "seed": seed}
    return OmniDiffusionRequest(prompt="a cat", **{**base, **fields})  # type: ignore[arg-type]


def mp_config(model: Path, **options: object) -> OmniDiffusionConfig:
    return OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="mp",
        max_batch_size=4,
        executor_options={"num_workers": 2, "threads_per_worker": 1, **options},
    )


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Iterator[DiffusionEngine]:
    with DiffusionEngine(mp_config(tiny_model)) as engine:
        yield engine


def test_default_and_shorthands_select_this_executor() -> None:
    for spec in (None, "mp", "multiproc"):
        assert OmniDiffusionConfig(executor_class=spec).resolve_executor_class() is MultiProcDiffusionExecutor


def test_workers_are_spawned_processes_with_their_own_threads(engine: DiffusionEngine) -> None:
    infos = engine.collective_rpc("describe", timeout=30)
    executor = engine.executor
    assert isinstance(executor, MultiProcDiffusionExecutor)
    assert [info["pid"] for info in infos] == [w.pid for w in executor.workers]  # rank order
    assert len({info["pid"] for info in infos} | {os.getpid()}) == 3
    assert [info["torch_threads"] for info in infos] == [1, 1]
    assert [info["device"] for info in infos] == ["cpu", "cpu"]
    # Started from a clean interpreter, not multiprocessing's spawn (which re-imports __main__).
    assert all(
        w.process.args[:3] == [sys.executable, "-m", "omni_executor_multiproc.worker_process"]
        for w in executor.workers
    )


def test_same_image_as_the_in_process_executor(engine: DiffusionEngine, tiny_model: Path) -> None:
    mp_out = engine.step([req(11)])[0]
    config = OmniDiffusionConfig(model_name_or_path=str(tiny_model), executor_class=InProcDiffusionExecutor)
    with DiffusionEngine(config) as inproc:
        in_out = inproc.step([req(11)])[0]
    assert mp_out.seed == in_out.seed == 11
    assert np.array_equal(mp_out.output[0], in_out.output[0])


def test_requests_spread_over_workers_and_batch(engine: DiffusionEngine) -> None:
    requests = [req(i) for i in range(16)]
    outputs = [f.result(timeout=120) for f in [engine.submit(r) for r in requests]]
    assert [o.request_id for o in outputs] == [r.request_id for r in requests]
    assert all(o.ok for o in outputs)
    assert {o.timings["worker_rank"] for o in outputs} == {0.0, 1.0}
    assert max(o.timings["batch_images"] for o in outputs) > 1  # queued requests were batched
    assert max(o.timings["batch_images"] for o in outputs) <= 4  # never past max_batch_size


def test_many_concurrent_callers_none_lost_or_duplicated(engine: DiffusionEngine) -> None:
    def call(i: int) -> str:
        output = engine.submit(req(i, height=32, width=32, num_inference_steps=1)).result(timeout=120)
        assert output.ok, output.error
        return output.request_id

    requests_sent: list[str] = []
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(call, range(64)))
    requests_sent.extend(ids)
    assert len(set(ids)) == 64


def test_progress_reaches_the_caller(engine: DiffusionEngine) -> None:
    request = req(3, num_inference_steps=5)
    events: list[ProgressEvent] = []

    def listener(event: ProgressEvent) -> None:
        if event.request_id == request.request_id:
            events.append(event)

    remove = engine.add_progress_listener(listener)
    engine.submit(request).result(timeout=60)
    remove()
    assert [(e.step, e.total_steps) for e in events] == [(i, 5) for i in range(1, 6)]


def test_bad_requests_fail_alone(engine: DiffusionEngine) -> None:
    outputs = engine.step([req(1, height=63), req(2), req(3, num_inference_steps=0)])
    assert outputs[0].error is not None
    assert outputs[0].error_field == "height"
    assert outputs[0].error.startswith("must be a positive multiple of 8")
    assert outputs[1].ok
    assert outputs[2].error is not None
    assert outputs[2].error_field == "num_inference_steps"


def busy_then_ping(engine: DiffusionEngine, timeout: float) -> list[str]:
    """Keep every worker busy with real work, then ping them."""
    slow = [engine.submit(req(i, height=256, width=256, num_inference_steps=30)) for i in range(2)]
    started = threading.Event()
    remove = engine.add_progress_listener(lambda event: started.set())
    assert started.wait(60)
    try:
        return engine.collective_rpc("ping", timeout=timeout)
    finally:
        remove()
        assert all(f.result(timeout=120).ok for f in slow)


def test_collective_rpc_errors_and_timeout(engine: DiffusionEngine, tiny_model: Path) -> None:
    assert engine.collective_rpc("ping", timeout=30) == ["pong", "pong"]
    with pytest.raises(AttributeError, match="no public method 'nope'"):
        engine.collective_rpc("nope", timeout=30)
    # A step-batching worker reads its pipe while it runs: the RPC is answered between steps.
    assert busy_then_ping(engine, timeout=30) == ["pong", "pong"]
    # A request-mode worker answers after its batch, so a short timeout expires.
    config = mp_config(tiny_model, num_workers=1).replace(batching="request")
    with DiffusionEngine(config) as request_mode:
        with pytest.raises(TimeoutError, match="'ping'"):
            busy_then_ping(request_mode, timeout=0.05)
        assert request_mode.collective_rpc("ping", timeout=30) == ["pong"]


def test_every_image_transport_gives_the_same_images(tiny_model: Path, engine: DiffusionEngine) -> None:
    request = req(21, num_outputs_per_prompt=2)
    results = {"auto": engine.step([request])[0]}
    for transport in ("pipe", "shm"):
        with DiffusionEngine(mp_config(tiny_model, num_workers=1, image_transport=transport)) as other:
            results[transport] = other.step([request])[0]
    reference = results["auto"].output
    assert len(reference) == 2
    for output in results.values():
        assert len(output.output) == 2
        for a, b in zip(output.output, reference, strict=True):
            assert np.array_equal(a, b)


def test_large_batches_travel_through_shared_memory() -> None:
    from omni_executor_multiproc.transport import PipedImages, SharedImages, pack_images, unpack_images

    rng = np.random.default_rng(0)
    small = [[rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]]
    large = [[rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)] for _ in range(2)]
    assert isinstance(pack_images(small, "auto"), PipedImages)
    packed = pack_images(large, "auto")
    assert isinstance(packed, SharedImages)
    back = unpack_images(packed)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(back, large, strict=True))
    assert not Path(f"/dev/shm/{packed.name.lstrip('/')}").exists()  # the parent unlinked it


def test_shutdown_is_idempotent_and_leaves_no_process(
    tiny_model: Path, worker_children: Callable[[], set[int]]
) -> None:
    engine = DiffusionEngine(mp_config(tiny_model, num_workers=1))
    executor = engine.executor
    assert isinstance(executor, MultiProcDiffusionExecutor)
    processes = [w.process for w in executor.workers]
    engine.close()
    engine.close()
    executor.shutdown()
    assert all(p.poll() is not None for p in processes)
    assert not worker_children() & {p.pid for p in processes}


def test_abort_stops_a_running_request_at_a_step_and_cancels_a_queued_one(tiny_model: Path) -> None:
    with DiffusionEngine(mp_config(tiny_model, num_workers=1)) as engine:
        running = req(1, height=128, width=128, num_inference_steps=200)
        queued = req(2)
        steps: list[int] = []
        started = threading.Event()

        def listener(event: ProgressEvent) -> None:
            if event.request_id == running.request_id:
                steps.append(event.step)
                started.set()

        engine.add_progress_listener(listener)
        first, second = engine.submit(running), engine.submit(queued)
        assert started.wait(60)
        assert engine.executor.abort(queued.request_id)
        assert engine.executor.abort(running.request_id)
        stopped = first.result(timeout=30)
        assert stopped.error_type == "RequestCancelledError"
        assert max(steps) < 200
        assert second.result(timeout=5).error_type == "RequestCancelledError"
        assert not engine.executor.abort("no-such-request")
        assert engine.step([req(3)])[0].ok  # the worker is still serving
