"""The Lambda executor against the local service: real boto3, real HTTP, real awslambdaric processes."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import numpy as np
import pytest

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.errors import ExecutorDeadError
from omni_executor_lambda import LambdaDiffusionExecutor
from omni_executor_lambda.local import LocalLambdaService

EngineFactory = Callable[..., DiffusionEngine]


def small(prompt: str = "a red fox", **fields: object) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt=prompt, height=64, width=64, num_inference_steps=2, **fields)  # type: ignore[arg-type]


def test_selected_by_shorthand_and_same_image_as_inproc(
    lambda_engine: EngineFactory, inproc_engine: DiffusionEngine
) -> None:
    engine = lambda_engine()
    assert isinstance(engine.executor, LambdaDiffusionExecutor)
    request = small(seed=1234)
    remote = engine.step([request])[0].raise_for_error()
    local = inproc_engine.step([small(seed=1234)])[0].raise_for_error()
    assert remote.seed == 1234
    assert remote.output[0].dtype == np.uint8
    assert remote.output[0].shape == (64, 64, 3)
    assert np.array_equal(remote.output[0], local.output[0])
    assert remote.timings["total"] > 0
    assert remote.timings["function_inference"] > 0


def test_batch_fans_out_and_each_output_matches_its_request(lambda_engine: EngineFactory) -> None:
    engine = lambda_engine(concurrency=2)
    requests = [small(f"prompt {i}", seed=i) for i in range(4)]
    outputs = engine.step(requests)
    assert [o.request_id for o in outputs] == [r.request_id for r in requests]
    assert all(o.ok for o in outputs)
    assert [o.seed for o in outputs] == [0, 1, 2, 3]


def test_throttled_requests_all_complete_and_none_runs_twice(
    lambda_engine: EngineFactory, run_log: Any
) -> None:
    # 8 concurrent invocations against a function with 2 environments: most get 429 at first.
    engine = lambda_engine(concurrency=8, backoff_base=0.05)
    before = len(run_log.runs())
    requests = [small(f"throttle {i}", seed=100 + i) for i in range(8)]
    futures = [engine.submit(request) for request in requests]
    outputs = [future.result(timeout=120) for future in futures]
    assert all(o.ok for o in outputs), [o.error for o in outputs]
    assert [o.seed for o in outputs] == [100 + i for i in range(8)]
    retried = [o.timings["attempts"] for o in outputs if o.timings["attempts"] > 1]
    assert retried, "expected some invocations to be throttled with 2 environments and 8 callers"
    runs = run_log.runs()[before:]
    counts = Counter(run["key"] for run in runs)
    assert len(counts) == 8, counts
    assert set(counts.values()) == {1}, counts


def test_handler_exception_fails_that_request_only(lambda_engine: EngineFactory) -> None:
    engine = lambda_engine()
    bad, good = engine.step([small("__raise__"), small("fine", seed=3)])
    assert bad.error_type == "RemoteError"  # the function raised: AWS's function error, its type kept
    assert "ValueError: the test handler was asked to raise" in (bad.error or "")
    assert good.ok
    assert engine.generate("after", height=64, width=64, num_inference_steps=2).ok


def test_invalid_request_field_fails_alone_with_field_named(lambda_engine: EngineFactory) -> None:
    engine = lambda_engine()
    bad, good = engine.step([small(num_outputs_per_prompt=0), small(seed=5)])
    assert bad.error_type == "RequestValidationError"
    assert bad.error_field == "num_outputs_per_prompt"
    assert good.ok


def test_timeout_is_an_error_and_the_executor_stays_usable(service: LocalLambdaService, run_log: Any) -> None:
    with DiffusionEngine(
        executor_class="lambda",
        executor_options={
            "function_name": "omni-strict",
            "endpoint_url": service.endpoint_url,
            "log_tail": True,
        },
    ) as engine:
        output = engine.step([small("__sleep__")])[0]
        assert output.error_type == "RequestTimeoutError"
        assert "Sandbox.Timedout" in (output.error or "")
        assert "Task timed out after 3.00 seconds" in (output.error or "")
        assert "sleeping past the timeout" in (output.error or "")  # the log tail came along
        after = engine.step([small("after the timeout", seed=9)])[0]
        assert after.ok, after.error


def test_read_timeout_is_not_resent(service: LocalLambdaService, run_log: Any) -> None:
    # The client gives up before the function ends; botocore's default would re-send it.
    with DiffusionEngine(
        executor_class="lambda",
        executor_options={
            "function_name": "omni-strict",
            "endpoint_url": service.endpoint_url,
            "function_timeout": 0.5,
            "read_timeout_margin": 0.5,
        },
    ) as engine:
        before = len(run_log.runs())
        output = engine.step([small("__sleep__")])[0]
        assert (output.error_type, output.retryable) == ("RequestTimeoutError", False), output.error
        assert "LambdaReadTimeout" in (output.error or "")
        assert "not re-sent" in (output.error or "")
    import time

    time.sleep(3.5)  # the function's own 3 s timeout ends the run
    runs = run_log.runs()[before:]
    assert len(runs) == 1, runs


def test_oversized_request_is_refused_by_lambda(lambda_engine: EngineFactory) -> None:
    engine = lambda_engine(max_prompt_length=10_000_000)
    huge, good = engine.step([small("x" * (7 * 1024 * 1024)), small(seed=6)])
    assert huge.error_type == "RemoteError"
    assert "RequestTooLargeException" in (huge.error or "")
    assert "Request must be smaller than 6291456 bytes" in (huge.error or "")
    assert good.ok


def test_unknown_function_is_a_clear_error(service: LocalLambdaService) -> None:
    with DiffusionEngine(
        executor_class="lambda",
        executor_options={"function_name": "no-such-function", "endpoint_url": service.endpoint_url},
    ) as engine:
        output = engine.step([small()])[0]
        assert output.error_type == "RemoteError"
        assert "ResourceNotFoundException" in (output.error or "")
        assert "Function not found: arn:aws:lambda:us-east-1:000000000000:function:no-such-function" in (
            output.error or ""
        )
        with pytest.raises(ExecutorDeadError, match="no-such-function"):
            engine.check_health()


def test_response_over_6mb_goes_through_s3_and_comes_back_whole(
    lambda_engine: EngineFactory, inproc_engine: DiffusionEngine, s3_endpoint: str, s3_bucket: str
) -> None:
    # Random-weight images at 1024x1024 hardly compress: three PNGs are ~9 MB, base64 ~12 MB.
    request = OmniDiffusionRequest(
        prompt="noise", height=1024, width=1024, num_inference_steps=1, num_outputs_per_prompt=3, seed=77
    )
    output = lambda_engine(s3_endpoint_url=s3_endpoint).step([request])[0].raise_for_error()
    expected = inproc_engine.step([OmniDiffusionRequest(**{**request.to_dict(), "request_id": "x"})])[0]
    assert len(output.output) == 3
    for got, want in zip(output.output, expected.output, strict=True):
        assert np.array_equal(got, want)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [
        item for item in s3.list_objects_v2(Bucket=s3_bucket)["Contents"] if request.request_id in item["Key"]
    ]
    assert len(keys) == 3
    assert sum(item["Size"] for item in keys) > 6 * 1024 * 1024


def test_too_large_without_a_bucket_says_how_to_fix_it(service: LocalLambdaService) -> None:
    with DiffusionEngine(
        executor_class="lambda",
        executor_options={"function_name": "omni-no-bucket", "endpoint_url": service.endpoint_url},
    ) as engine:
        request = OmniDiffusionRequest(
            prompt="noise", height=1024, width=1024, num_inference_steps=1, num_outputs_per_prompt=3, seed=1
        )
        output = engine.step([request])[0]
        assert output.error_type == "RemoteError"
        assert "ResponseTooLargeError" in (output.error or "")
        assert "OMNI_S3_BUCKET" in (output.error or "")


def test_submit_many_concurrently_none_lost(lambda_engine: EngineFactory) -> None:
    engine = lambda_engine(concurrency=4, backoff_base=0.05)
    requests = [small(f"p{i}", seed=i) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        outputs = list(pool.map(lambda r: engine.submit(r).result(timeout=120), requests))
    assert sorted(o.request_id for o in outputs) == sorted(r.request_id for r in requests)
    assert all(o.ok for o in outputs)


def test_bad_options_name_the_field() -> None:
    with pytest.raises(Exception, match="'concurrency' of LambdaDiffusionExecutor must be >= 1"):
        DiffusionEngine(executor_class="lambda", executor_options={"concurrency": 0})
    with pytest.raises(Exception, match="endpoint_url must start with http"):
        DiffusionEngine(executor_class="lambda", executor_options={"endpoint_url": "localhost:9001"})


def test_check_health_answers_within_its_timeout_when_the_endpoint_stalls() -> None:
    # A loopback endpoint that accepts connections and never answers.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = OmniDiffusionConfig(
        executor_class="lambda",
        executor_options={"function_name": "omni", "endpoint_url": endpoint, "health_timeout": 1.0},
    )
    try:
        with DiffusionEngine(config) as engine, ThreadPoolExecutor(1) as pool:
            probe = pool.submit(engine.check_health)
            with pytest.raises(ExecutorDeadError, match="cannot be invoked"):
                probe.result(timeout=15)  # bounded: the invocation client would wait ~15.5 min
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()
