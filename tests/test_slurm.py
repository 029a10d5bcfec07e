"""deploy/slurm/omni-celery-workers.sbatch on a real single-node Slurm: a job array of Celery workers
serving requests sent through the celery executor, then scancel.

Needs Debian's slurm-wlm, munge and redis-server; missing ones fail under ``CI=true`` (CI installs
them) and skip elsewhere, naming the install command.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, SlurmMissing, slurm_cluster

from omni_core import DiffusionEngine

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "slurm" / "omni-celery-workers.sbatch"


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SlurmCluster]:
    try:
        with slurm_cluster(tmp_path / "slurm") as running:
            yield running
    except SlurmMissing as exc:
        _missing(str(exc))


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    from omni_executor_celery.brokers import BrokerMissing, redis_server

    try:
        with redis_server(tmp_path) as url:
            yield url
    except BrokerMissing as exc:
        _missing(str(exc))


def test_a_job_array_of_celery_workers_serves_requests(
    cluster: SlurmCluster, redis_url: str, tiny_model: Path, tmp_path: Path
) -> None:
    from omni_executor_celery.testing import celery_config, request, wait_for_workers

    queue = f"omni-{uuid.uuid4().hex[:8]}"
    omni = shutil.which("omni")
    assert omni, "the omni console script is missing"
    env = {
        "OMNI_CELERY_BROKER": redis_url,
        "OMNI_CELERY_BACKEND": redis_url,
        "OMNI_CELERY_QUEUE": queue,
        "OMNI_MODEL": str(tiny_model),
        "OMNI": omni,
    }
    exports = ",".join(["ALL", *(f"{key}={value}" for key, value in env.items())])
    output = cluster.run(
        "sbatch", "--parsable", "--array=0-1", "--cpus-per-task=1", f"--export={exports}",
        f"--output={tmp_path}/worker-%A_%a.log", str(SCRIPT),
    )  # fmt: skip
    job = output.strip().split(";")[0]
    try:
        with DiffusionEngine(celery_config(tiny_model, redis_url, redis_url, queue=queue)) as engine:
            wait_for_workers(engine, count=2)  # one per array task
            running = cluster.run("squeue", "-h", "-j", job, "-t", "RUNNING", "-o", "%i").split()
            assert sorted(running) == [f"{job}_0", f"{job}_1"]
            outputs = [f.result(120) for f in [engine.submit(request(seed)) for seed in range(6)]]
            assert [o.error for o in outputs] == [None] * 6
    finally:
        cluster.run("scancel", job)
    deadline = time.monotonic() + 60
    while cluster.run("squeue", "-h", "-j", job, "-o", "%i").strip():
        assert time.monotonic() < deadline, "the array's tasks did not end after scancel"
        time.sleep(0.5)
