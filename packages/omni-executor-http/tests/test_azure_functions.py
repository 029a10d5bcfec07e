"""examples/azure_functions: the function app, called in-process with azure-functions' own types.

The Azure Functions host (the .NET process that receives HTTP and calls Python workers) cannot
run offline, so the test builds ``func.HttpRequest`` objects as the host's Python worker does
and awaits the registered function: what runs is the app's code, the library's ASGI
middleware and omni's application, with no HTTP server in between.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest

func = pytest.importorskip("azure.functions")
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "azure_functions"


@pytest.fixture(scope="module")
def function_app(tiny_model: Path) -> ModuleType:
    patch = pytest.MonkeyPatch()
    patch.setenv("OMNI_MODEL", str(tiny_model))
    patch.setenv("OMNI_EXECUTOR", "inproc")
    # No torch_threads here: it is process-wide, and this process's other tests compare images
    # with servers running at torch's default thread count.
    spec = importlib.util.spec_from_file_location("function_app", EXAMPLE / "function_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    patch.undo()


def call(module: ModuleType, method: str, path: str, body: dict[str, object] | None = None) -> object:
    request = func.HttpRequest(
        method=method,
        url=f"https://omni.azurewebsites.net{path}",
        headers={"Content-Type": "application/json"},
        route_params={"path": path.lstrip("/")},
        body=json.dumps(body).encode() if body is not None else b"",
    )
    return asyncio.run(module.omni(request, None))


def test_host_json_serves_openais_paths() -> None:
    host = json.loads((EXAMPLE / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == ""


def test_generation_through_the_function_is_inprocs_image(function_app: ModuleType, tiny_model: Path) -> None:
    body = {
        "prompt": "a 7",
        "size": "64x64",
        "num_inference_steps": 2,
        "seed": 5,
        "response_format": "b64_json",
    }
    response = call(function_app, "POST", "/v1/images/generations", body)
    assert response.status_code == 200, response.get_body()[:500]  # type: ignore[attr-defined]
    payload = json.loads(response.get_body())  # type: ignore[attr-defined]
    image = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(payload["data"][0]["b64_json"]))).convert("RGB")
    )
    config = OmniDiffusionConfig(model_name_or_path=str(tiny_model), executor_class="inproc")
    with DiffusionEngine(config) as inproc:
        request = OmniDiffusionRequest(prompt="a 7", height=64, width=64, num_inference_steps=2, seed=5)
        local = inproc.step([request])[0].raise_for_error()
    assert np.array_equal(image, local.output[0])


def test_bad_input_and_health_are_the_servers(function_app: ModuleType) -> None:
    assert call(function_app, "GET", "/health").status_code == 200  # type: ignore[attr-defined]
    bad = call(function_app, "POST", "/v1/images/generations", {"prompt": "a 7", "size": "65x64"})
    assert bad.status_code == 400  # type: ignore[attr-defined]
    assert json.loads(bad.get_body())["error"]["param"] == "size"  # type: ignore[attr-defined]
