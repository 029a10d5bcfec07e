"""Faults with real processes: a worker SIGKILLed mid-task, the broker going away, time limits,
result expiry, and images too large for the broker going through S3 (moto on 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import numpy as np
import pytest
from omni_executor_celery.app import TASK_NAME
from omni_executor_celery.brokers import free_port, redis_server
from omni_executor_celery.testing import celery_config, celery_workers, request, wait_for_workers
from test_celery import runs, wait_until

from omni_core import DiffusionEngine, ExecutorDeadError, OmniDiffusionConfig
from omni_core.testing_s3 import TEST_CREDENTIALS, moto_s3

BUCKET = "omni-celery-test"


@pytest.mark.parametrize("broker_name", ["redis", "rabbitmq"])
def test_a_task_whose_worker_is_killed_runs_again_and_completes_once(
    broker_name: str, tiny_model: Path, redis_url: str, run_log: Path, request: pytest.FixtureRequest
) -> None:
    backend = redis_url.rsplit("/", 1)[0] + "/1"
    broker = redis_url if broker_name == "redis" else request.getfixturevalue("rabbitmq_url")
    queue = f"omni-{uuid.uuid4().hex[:8]}"
    # Redis delivers an unacknowledged task again after visibility_timeout: short here, above the task.
    visibility = 4.0
    args = ("--queue", queue, "--visibility-timeout", str(visibility))
    config = celery_config(tiny_model, broker, backend, queue=queue, visibility_timeout=visibility)
    with (
        celery_workers(broker, backend, tiny_model, workers=2, run_log=run_log, extra_args=args),
        DiffusionEngine(config) as engine,
    ):
        wait_for_workers(engine, count=2)
        victim_request = _request(3, steps=40)  # long enough to be killed mid-run, far below visibility
        future = engine.submit(victim_request)
        wait_until(lambda: runs(run_log, "start", victim_request.request_id), 60, "the request starts")
        (_, victim), *_ = runs(run_log, "start", victim_request.request_id)
        os.kill(victim, signal.SIGKILL)
        output = future.result(120)
        assert output.error is None, output.error
        starts = runs(run_log, "start", victim_request.request_id)
        assert len(starts) == 2
        assert starts[1][1] != victim
        assert len(runs(run_log, "done", victim_request.request_id)) == 1  # completed exactly once


def _request(seed: int, steps: int, size: int = 64):  # type: ignore[no-untyped-def]
    return request(seed, steps=steps, size=size)


def test_broker_down_fails_fast_and_recovers(tiny_model: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    config = celery_config(tiny_model, url, url, health_timeout=1.0)
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with celery_workers(url, url, tiny_model), DiffusionEngine(config) as engine:
        with redis_server(tmp_path / "first", port=port):
            wait_for_workers(engine)
            assert engine.submit(request(1)).result(60).error is None
        # The broker is gone: submit says so at once, nothing waits in memory.
        future = engine.submit(request(2))
        assert future.done()  # failed within submit, not parked for later
        output = future.result()
        assert output.error_type == "ExecutorDeadError", output.error
        assert output.retryable
        assert f"127.0.0.1:{port}" in str(output.error)
        assert "unreachable" in str(output.error)
        with pytest.raises(ExecutorDeadError, match="unreachable"):
            engine.executor.check_health()
        # Back on the same port: the worker reconnects and the same engine works again.
        with redis_server(tmp_path / "second", port=port):
            wait_for_workers(engine)
            assert engine.submit(request(3)).result(60).error is None


def test_time_limit_result_expiry_and_images_through_s3(
    tiny_model: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)  # moto's fake account, for the workers too
    queue = f"omni-{uuid.uuid4().hex[:8]}"
    with moto_s3(BUCKET) as endpoint:
        args = (
            "--queue", queue, "--task-time-limit", "2", "--result-expires", "3",
            "--s3-bucket", BUCKET, "--offload-above", "0", "--s3-endpoint-url", endpoint,
        )  # fmt: skip
        config = celery_config(
            tiny_model, redis_url, redis_url, queue=queue, task_time_limit=2.0, result_expires=3.0,
            s3_endpoint_url=endpoint,
        )  # fmt: skip
        with (
            celery_workers(redis_url, redis_url, tiny_model, extra_args=args),
            DiffusionEngine(config) as engine,
        ):
            wait_for_workers(engine)
            executor = engine.executor
            # Every image went through S3 (threshold 0) and came back bit for bit.
            remote = engine.submit(request(11)).result(60).raise_for_error()
            inproc_config = OmniDiffusionConfig(
                model_name_or_path=str(tiny_model),
                executor_class="inproc",
                executor_options={"torch_threads": 1},
            )
            with DiffusionEngine(inproc_config) as inproc:
                local = inproc.step([request(11)])[0].raise_for_error()
            assert np.array_equal(remote.output[0], local.output[0])
            keys = [item["Key"] for item in executor._s3_client().list_objects_v2(Bucket=BUCKET)["Contents"]]  # type: ignore[attr-defined]
            assert f"omni/{remote.request_id}/0.png" in keys

            # Past task_time_limit: the timed-out class, and the worker serves again.
            timed_out = engine.submit(_request(4, steps=200, size=128)).result(60)
            assert timed_out.error_type == "RequestTimeoutError", timed_out.error
            assert "task_time_limit" in str(timed_out.error)
            assert engine.submit(request(5)).result(60).error is None

            # A result nobody fetches is gone after result_expires.
            unfetched = executor.app.send_task(TASK_NAME, args=[request(6).to_dict()], queue=queue)  # type: ignore[attr-defined]
            backend = executor.app.backend  # type: ignore[attr-defined]
            key = backend.get_key_for_task(unfetched.id)
            wait_until(lambda: backend.get(key) is not None, 60, "the unfetched result is stored")
            wait_until(lambda: backend.get(key) is None, 10, "the unfetched result expires")
