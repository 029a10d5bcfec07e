"""`omni serve` over real HTTP: the OpenAI shape, bad input, failures, auth, metrics."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess
from PIL import Image

GOOD = {"prompt": "a cat", "size": "64x64", "num_inference_steps": 2, "seed": 1}


def post(url: str, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{url}/v1/images/generations",
        content=content,
        headers={"content-type": "application/json", **kwargs.pop("headers", {})},
        timeout=60,
        **kwargs,
    )


def test_openai_python_client_gets_pngs_of_the_requested_size(server: ServerProcess) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    result = client.images.generate(prompt="a red square", n=2, size="64x32", response_format="b64_json")
    assert result.data is not None
    assert len(result.data) == 2
    for item in result.data:
        assert item.b64_json is not None
        with Image.open(io.BytesIO(base64.b64decode(item.b64_json))) as image:
            assert image.format == "PNG"
            assert image.size == (64, 32)


def test_models_and_health(server: ServerProcess) -> None:
    models = httpx.get(f"{server.url}/v1/models").json()
    assert models["object"] == "list"
    assert models["data"][0]["id"] == "omni"
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}


BAD_INPUTS: list[tuple[str, Any, int, str | None, str]] = [
    ("malformed json", b'{"prompt": "x",', 400, None, "not valid JSON"),
    ("not an object", [1, 2], 400, None, "JSON object"),
    ("missing prompt", {"n": 1}, 400, "prompt", "prompt is required"),
    ("prompt not a string", {"prompt": 5}, 400, "prompt", "prompt must be a string"),
    ("n as string", {**GOOD, "n": "2"}, 400, "n", "n must be an integer"),
    ("n zero", {**GOOD, "n": 0}, 400, "n", "between 1 and 10"),
    ("n eleven", {**GOOD, "n": 11}, 400, "n", "between 1 and 10"),
    ("size not WxH", {**GOOD, "size": "64"}, 400, "size", "WIDTHxHEIGHT"),
    ("size not multiple of 8", {**GOOD, "size": "60x64"}, 400, "size", "multiple of 8"),
    ("size over cap", {**GOOD, "size": "512x512"}, 400, "size", "over this deployment's cap"),
    ("steps zero", {**GOOD, "num_inference_steps": 0}, 400, "num_inference_steps", "between 1 and 50"),
    ("steps over range", {**GOOD, "num_inference_steps": 51}, 400, "num_inference_steps", "between 1 and 50"),
    ("seed as string", {**GOOD, "seed": "1"}, 400, "seed", "seed must be an integer"),
    ("guidance as string", {**GOOD, "guidance_scale": "high"}, 400, "guidance_scale", "must be a number"),
    ("prompt too long", {**GOOD, "prompt": "x" * 101}, 400, "prompt", "over the limit of 100"),
    ("unknown field", {**GOOD, "stepz": 3}, 400, "stepz", "unknown field 'stepz'"),
    ("unknown response format", {**GOOD, "response_format": "file"}, 400, "response_format", "b64_json, url"),
    ("transparent background", {**GOOD, "background": "transparent"}, 400, "background", "alpha channel"),
    ("body over cap", {**GOOD, "negative_prompt": "x" * 5000}, 413, None, "over the limit of 4096"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "param", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_a_4xx_in_openai_shape_and_the_server_keeps_serving(
    server: ServerProcess, case: str, body: Any, status: int, param: str | None, message: str
) -> None:
    response = post(server.url, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert message in error["message"]
    assert post(server.url, GOOD).status_code == 200


def test_body_cap_applies_to_chunked_bodies_without_content_length(server: ServerProcess) -> None:
    def chunks() -> Any:
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = httpx.post(f"{server.url}/v1/images/generations", content=chunks(), timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def broken_model(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model with a scheduler setting that loads but fails on every call."""
    import shutil

    target = tmp_path / "broken-scheduler"
    shutil.copytree(tiny_model, target)
    config_path = target / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config["timestep_spacing"] = "no-such-spacing"
    config_path.write_text(json.dumps(config))
    return target


def test_model_failure_is_a_500_and_the_server_still_serves(
    server_factory: Any, tiny_model: Path, tmp_path: Path
) -> None:
    with server_factory(model=broken_model(tiny_model, tmp_path)) as broken:
        for _ in range(2):
            response = post(broken.url, GOOD)
            assert response.status_code == 500
            error = response.json()["error"]
            assert error["type"] == "server_error"
            assert "no-such-spacing" in error["message"]
        assert httpx.get(f"{broken.url}/health").status_code == 200
        assert httpx.get(f"{broken.url}/v1/models").status_code == 200


def test_api_key_guards_every_route_but_health(server_factory: Any) -> None:
    with server_factory("--api-key", "s3cret") as secured:
        assert httpx.get(f"{secured.url}/health").status_code == 200
        for path in ("/v1/models", "/metrics"):
            assert httpx.get(f"{secured.url}{path}").status_code == 401
        missing = post(secured.url, GOOD)
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "invalid_api_key"
        assert post(secured.url, GOOD, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert post(secured.url, GOOD, headers={"authorization": "Basic s3cret"}).status_code == 401
        assert post(secured.url, GOOD, headers={"authorization": "Bearer s3cret"}).status_code == 200
        ok = httpx.get(f"{secured.url}/metrics", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_api_key_from_environment(server_factory: Any) -> None:
    with server_factory(env={"OMNI_API_KEY": "from-env"}) as secured:
        assert post(secured.url, GOOD).status_code == 401
        assert post(secured.url, GOOD, headers={"authorization": "Bearer from-env"}).status_code == 200


def test_metrics_count_requests_errors_latency_and_queue(server: ServerProcess) -> None:
    before = httpx.get(f"{server.url}/metrics").text
    assert post(server.url, GOOD).status_code == 200
    assert post(server.url, {**GOOD, "n": 0}).status_code == 400
    text = httpx.get(f"{server.url}/metrics").text

    def value(metrics: str, name: str) -> float:
        for line in metrics.splitlines():
            if line.startswith(name + " ") or (line.startswith(name + "{") and line.split(" ")[0] == name):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    ok = 'omni_http_requests_total{route="generations",status="200"}'
    bad = 'omni_http_requests_total{route="generations",status="400"}'
    assert value(text, ok) == value(before, ok) + 1
    assert value(text, bad) == value(before, bad) + 1
    assert "omni_http_request_latency_seconds_bucket" in text
    assert "omni_queue_depth 0.0" in text
    assert 'omni_http_errors_total{type="invalid_request_error"}' in text
    # The model's batching: step mode, its measured cap and the step times it was chosen from.
    assert 'omni_batching_step_mode{worker="0"} 1.0' in text
    cap = value(text, 'omni_batch_cap_rows{worker="0"}')
    assert cap >= 1
    step_lines = [line for line in text.splitlines() if line.startswith("omni_step_seconds{")]
    assert step_lines
    assert all(
        'worker="0"' in line and 'rows="' in line and float(line.split()[-1]) > 0 for line in step_lines
    )
