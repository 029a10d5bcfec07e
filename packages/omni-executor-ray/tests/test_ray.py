"""The Ray executor on a real local Ray cluster (a head and two worker nodes), nothing mocked."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest, ProgressEvent
from omni_core.testing_pipelines import sample_image, sample_mask
from omni_executor_ray import RayDiffusionExecutor
from omni_executor_ray.testing import local_cluster, ray_config, request, wait_for


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head (no CPUs for actors) and two worker nodes with one CPU each: placement is real."""
    with local_cluster() as (cluster, _):
        yield cluster


@pytest.fixture(scope="module")
def engine(cluster: Any, tiny_model: Path) -> Iterator[DiffusionEngine]:
    with DiffusionEngine(ray_config(tiny_model, cluster.address)) as engine:
        yield engine


def test_selected_by_shorthand_and_actors_spread_over_two_nodes(engine: DiffusionEngine) -> None:
    executor = engine.executor
    assert isinstance(executor, RayDiffusionExecutor)
    infos = executor.actor_infos
    assert [info["rank"] for info in infos] == [0, 1]
    assert len({info["node_id"] for info in infos}) == 2  # SPREAD: one actor per node
    assert {info["node_ip"] for info in infos} == {"127.0.0.1"}  # loopback only
    assert executor.workers_ready == (2, 2)
    described = engine.collective_rpc("describe", timeout=30)
    assert [d["pid"] for d in described] == [info["pid"] for info in infos]  # rank order


def test_same_8bit_image_as_inproc(engine: DiffusionEngine, tiny_model: Path) -> None:
    # Text, and an inpainting request with a pipeline argument (arrays through Ray's object store).
    cases = [
        request(11),
        OmniDiffusionRequest(
            "a 7", image=sample_image(seed=5), mask_image=sample_mask(), num_inference_steps=3, seed=12,
            extra={"eta": 1.0},
        ),
    ]  # fmt: skip
    remote = [engine.step([case])[0].raise_for_error() for case in cases]
    # Same thread count as the actors (one): the determinism promise is per thread count.
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), executor_class="inproc", executor_options={"torch_threads": 1}
    )
    with DiffusionEngine(config) as inproc:
        local = [inproc.step([case])[0].raise_for_error() for case in cases]
    for got, want in zip(remote, local, strict=True):
        assert np.array_equal(got.output[0], want.output[0])


def test_a_hundred_concurrent_requests_none_lost_or_duplicated(engine: DiffusionEngine) -> None:
    requests = [request(seed, steps=1, size=32) for seed in range(100)]
    futures = [engine.submit(r) for r in requests]
    outputs = [future.result(timeout=300) for future in futures]
    assert [o.request_id for o in outputs] == [r.request_id for r in requests]
    assert all(o.ok for o in outputs), [o.error for o in outputs if not o.ok][:3]
    assert [o.seed for o in outputs] == list(range(100))
    ranks = {o.timings["worker_rank"] for o in outputs}
    assert ranks == {0.0, 1.0}  # both actors served


def test_progress_and_abort_of_a_running_request(engine: DiffusionEngine) -> None:
    started = threading.Event()
    long = request(5, steps=200, size=128)

    def listener(event: ProgressEvent) -> None:
        if event.request_id == long.request_id:
            started.set()

    remove = engine.add_progress_listener(listener)
    future = engine.submit(long)
    assert started.wait(60), "no progress event"
    remove()
    assert engine.executor.abort(long.request_id)
    assert future.result(timeout=30).error_type == "RequestCancelledError"


def test_a_killed_actor_fails_only_its_request_and_is_restarted(engine: DiffusionEngine) -> None:
    executor = engine.executor
    assert isinstance(executor, RayDiffusionExecutor)
    started = threading.Event()
    victim_request = request(7, steps=200, size=128)
    remove = engine.add_progress_listener(
        lambda event: started.set() if event.request_id == victim_request.request_id else None
    )
    victim_future = engine.submit(victim_request)
    assert started.wait(60)
    remove()
    rank = executor.rank_running(victim_request.request_id)
    assert rank is not None
    pid = executor.actor_infos[rank]["pid"]
    os.kill(pid, signal.SIGKILL)
    lost = victim_future.result(timeout=5)  # within 5 s of the death
    assert (lost.error_type, lost.retryable) == ("WorkerDiedError", True)
    assert f"Ray actor {rank}" in (lost.error or "")
    assert "node" in (lost.error or "")
    others = [engine.submit(request(seed)) for seed in range(20, 26)]
    assert all(f.result(timeout=120).ok for f in others)  # the other actor kept serving
    wait_for(lambda: executor.workers_ready == (2, 2), 120, "Ray restarting the actor")
    assert executor.actor_infos[rank]["pid"] != pid
    engine.check_health()


def test_previews_reach_the_caller_before_its_result(engine: DiffusionEngine) -> None:
    events: list[ProgressEvent] = []
    wanted = OmniDiffusionRequest(
        "a cat", height=64, width=64, num_inference_steps=6, seed=2, partial_images=2
    )
    final = engine.submit(wanted, on_progress=events.append).result(timeout=120).raise_for_error()
    # Progress is polled from the actors, and drained before a batch's results are delivered.
    previews = [event.preview for event in events if event.preview is not None]
    assert [preview.index for preview in previews] == [0, 1]
    assert all(preview.images[0].shape == final.output[0].shape for preview in previews)
