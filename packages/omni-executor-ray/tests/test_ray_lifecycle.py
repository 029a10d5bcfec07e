"""Tests that need a Ray of their own: a node leaving, and a Ray the executor starts and stops.

A module of their own: the shared cluster of test_ray.py is torn down before these run
(two Ray connections cannot live in one driver).
"""

from __future__ import annotations

import threading
from pathlib import Path

from omni_core import DiffusionEngine, ProgressEvent
from omni_executor_ray import RayDiffusionExecutor
from omni_executor_ray.testing import local_cluster, ray_config, request, wait_for


def test_a_node_that_leaves_fails_only_its_requests(tiny_model: Path) -> None:
    with local_cluster() as (cluster, nodes):
        # Batch size 1: the two requests go to the two actors (least-loaded), one per node.
        config = ray_config(tiny_model, cluster.address, max_restarts=0).replace(max_batch_size=1)
        with DiffusionEngine(config) as engine:
            executor = engine.executor
            assert isinstance(executor, RayDiffusionExecutor)
            first, second = request(9, steps=200, size=128), request(10, steps=200, size=128)
            running: set[str] = set()
            both = threading.Event()

            def listener(event: ProgressEvent) -> None:
                running.add(event.request_id)
                if {first.request_id, second.request_id} <= running:
                    both.set()

            remove = engine.add_progress_listener(listener)
            futures = [engine.submit(first), engine.submit(second)]
            assert both.wait(60), "both requests should be running, one on each node"
            remove()
            gone_rank = executor.rank_running(first.request_id)
            assert gone_rank is not None
            assert executor.rank_running(second.request_id) != gone_rank
            gone_node = executor.actor_infos[gone_rank]["node_id"]
            cluster.remove_node(next(node for node in nodes if node.node_id == gone_node))
            lost, kept = (f.result(timeout=120) for f in futures)
            assert (lost.error_type, lost.retryable) == ("WorkerDiedError", True)
            assert f"Ray actor {gone_rank}" in (lost.error or "")
            assert kept.ok, kept.error  # only the leaving node's request failed
            wait_for(lambda: executor.workers_ready == (1, 2), 30, "the executor noticing the node left")
            engine.check_health()  # degraded, still serving
            assert engine.step([request(12)])[0].ok


def ray_processes() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"raylet" in cmdline or b"gcs_server" in cmdline or b"ray::" in cmdline:
                found.add(int(entry.name))
    return found


def test_shutdown_of_a_ray_it_started_leaves_no_process(tiny_model: Path) -> None:
    before = ray_processes()
    engine = DiffusionEngine(ray_config(tiny_model, None, num_workers=1))
    assert engine.step([request(1)])[0].ok
    assert ray_processes() - before, "a local Ray should be running"
    engine.close()
    wait_for(lambda: not (ray_processes() - before), 30, "Ray's processes exiting")
