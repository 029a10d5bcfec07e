"""Helpers for tests and benchmarks that need a real local Ray cluster (used by omni's own tests).

Run them where only loopback exists (``unshare -rn``, ``lo`` up): Ray binds to the host's
primary address otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omni_core import OmniDiffusionConfig, OmniDiffusionRequest


@contextmanager
def local_cluster(worker_nodes: int = 2) -> Iterator[tuple[Any, list[Any]]]:
    """A head that runs no actors (``num_cpus=0``) and 1-CPU worker nodes, connected as the driver.

    Yields ``(cluster, worker_nodes)``; placement across nodes is real.
    """
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(worker_nodes)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()


def ray_config(model: Path, address: str | None, **options: object) -> OmniDiffusionConfig:
    """Two one-thread actors on ``address`` (``None``: a Ray the executor starts itself)."""
    return OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="ray",
        executor_options={"ray_address": address, "num_workers": 2, "threads_per_worker": 1, **options},
    )


def request(seed: int, steps: int = 2, size: int = 64) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt="a 7", height=size, width=size, num_inference_steps=steps, seed=seed)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` every 0.2 s; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.2)
