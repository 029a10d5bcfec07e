"""The HTTP executor against a real `omni serve` on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import ServerProcess

from omni_core import (
    DiffusionEngine,
    ExecutorDeadError,
    ExecutorOptionsError,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
    RequestValidationError,
)
from omni_executor_http import HTTPDiffusionExecutor


def http_config(url: str, **options: Any) -> OmniDiffusionConfig:
    return OmniDiffusionConfig(executor_class="http", executor_options={"base_url": url, **options})


def req(seed: int | None, **fields: Any) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(
        **{"prompt": "a cat", "height": 64, "width": 64, "num_inference_steps": 3, "seed": seed, **fields}
    )


def test_shorthand_selects_the_http_executor() -> None:
    assert OmniDiffusionConfig(executor_class="http").resolve_executor_class() is HTTPDiffusionExecutor


def test_same_8bit_image_as_the_in_process_executor(server: ServerProcess, tiny_model: Path) -> None:
    with DiffusionEngine(http_config(server.url)) as engine:
        remote = engine.step([req(7), req(8, height=32, num_outputs_per_prompt=2)])
    with DiffusionEngine(
        OmniDiffusionConfig(model_name_or_path=str(tiny_model), executor_class="inproc")
    ) as local:
        expected = [local.step([req(7)])[0], local.step([req(8, height=32, num_outputs_per_prompt=2)])[0]]
    for got, want in zip(remote, expected, strict=True):
        assert got.ok, got.error
        assert got.seed == want.seed
        assert len(got.output) == len(want.output)
        for a, b in zip(got.output, want.output, strict=True):
            assert np.array_equal(a, b)


def test_two_hundred_requests_at_once_none_lost_or_duplicated(server: ServerProcess) -> None:
    with DiffusionEngine(http_config(server.url, max_connections=32)) as engine:
        # 4 steps, not 2: with 2 a request could finish before the next one arrived on a busy
        # machine, and the batching assertion below failed once in a full CI run.
        requests = [req(i, height=32, width=32, num_inference_steps=4) for i in range(200)]
        futures = [engine.submit(r) for r in requests]
        outputs = [f.result(timeout=300) for f in futures]
    assert [o.request_id for o in outputs] == [r.request_id for r in requests]
    assert all(o.ok for o in outputs), [o.error for o in outputs if not o.ok][:3]
    assert [o.seed for o in outputs] == list(range(200))
    assert max(o.timings["server_batch_images"] for o in outputs) > 1  # the server batched them


def test_4xx_comes_back_as_the_request_error_with_the_servers_message(server: ServerProcess) -> None:
    with DiffusionEngine(http_config(server.url)) as engine:
        bad, good = engine.step([req(1, num_inference_steps=51), req(2)])
    # omni's server says the class and the field; the client raises the same class.
    assert (bad.error_type, bad.error_field, bad.retryable) == (
        "RequestValidationError",
        "num_inference_steps",
        False,
    )
    assert bad.error is not None
    assert "num_inference_steps" in str(bad.exception())  # the field travels apart, joined for people
    with pytest.raises(RequestValidationError) as info:
        bad.raise_for_error()
    assert info.value.field == "num_inference_steps"
    assert good.ok


def test_api_key_option_and_environment(server_factory: Any) -> None:
    with server_factory("--api-key", "k1") as secured:
        with DiffusionEngine(http_config(secured.url)) as anonymous:
            denied = anonymous.step([req(1)])[0]
            assert denied.error is not None
            assert "HTTP 401" in denied.error
        with DiffusionEngine(http_config(secured.url, api_key="k1")) as engine:
            assert engine.step([req(1)])[0].ok
        os.environ["OMNI_API_KEY"] = "k1"
        try:
            with DiffusionEngine(http_config(secured.url)) as engine:
                assert engine.step([req(1)])[0].ok
        finally:
            del os.environ["OMNI_API_KEY"]


def test_health_rpc_and_shutdown(server: ServerProcess) -> None:
    engine = DiffusionEngine(http_config(server.url))
    engine.check_health()
    assert engine.collective_rpc("health") == [{"status": "ok"}]
    assert engine.collective_rpc("models")[0]["data"][0]["id"] == "omni"
    with pytest.raises(AttributeError, match="'describe'"):
        engine.collective_rpc("describe")
    executor = engine.executor
    assert isinstance(executor, HTTPDiffusionExecutor)
    engine.close()
    engine.close()
    assert executor.client.is_closed


def test_unreachable_server_is_unhealthy_and_fails_requests_clearly() -> None:
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with DiffusionEngine(http_config(url, max_retries=1, backoff_base=0.01)) as engine:
        with pytest.raises(ExecutorDeadError, match="unreachable"):
            engine.check_health()
        output = engine.step([req(None)])[0]
    assert (output.error_type, output.retryable) == ("RemoteError", True)
    assert output.error is not None
    assert "ConnectError" in output.error
    assert "gave up after 2 attempts" in output.error


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ExecutorOptionsError, match="base_url"):
        DiffusionEngine(OmniDiffusionConfig(executor_class="http", executor_options={"url": "http://x"}))


def test_server_killed_mid_request_gives_a_clear_error_not_a_hang(server_factory: Any) -> None:
    with (
        server_factory() as doomed,
        DiffusionEngine(http_config(doomed.url, max_retries=2, backoff_base=0.01)) as engine,
    ):
        future = engine.submit(req(None, height=256, width=256, num_inference_steps=200))
        deadline = time.monotonic() + 30
        while "omni_queue_depth 1.0" not in httpx.get(f"{doomed.url}/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        doomed.process.send_signal(signal.SIGKILL)
        output = future.result(timeout=30)
    assert (output.error_type, output.retryable) == ("RemoteError", False)
    assert output.error is not None
    assert "not retried because the server may have run it" in output.error


def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(server_factory: Any) -> None:
    with server_factory() as draining:
        result: dict[str, httpx.Response] = {}

        def slow() -> None:
            body = {"prompt": "slow", "size": "128x128", "num_inference_steps": 60, "seed": 1}
            result["slow"] = httpx.post(f"{draining.url}/v1/images/generations", json=body, timeout=120)

        thread = threading.Thread(target=slow)
        thread.start()
        deadline = time.monotonic() + 30
        while "omni_queue_depth 1.0" not in httpx.get(f"{draining.url}/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        draining.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = httpx.post(f"{draining.url}/v1/images/generations", json={"prompt": "late"}, timeout=10)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"
        assert refused.headers["retry-after"] == "1"
        thread.join(120)
        assert result["slow"].status_code == 200
        assert draining.process.wait(30) == 0
