"""omni's API under functions-framework (Cloud Run's function runtime), called with a Google ID token.

Real: functions-framework serving examples/cloud_run/main.py on 127.0.0.1, google-auth minting
the token, the http executor sending it. Faked, at the wire: Google's metadata server (the
token's source), which cannot exist off Google Cloud.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_executor_http.testing import fake_google_id_token, fake_google_metadata_server, free_port

MAIN = Path(__file__).resolve().parents[3] / "examples" / "cloud_run" / "main.py"

CLIENT = """
import hashlib, json, sys
from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
url = sys.argv[1]
config = OmniDiffusionConfig(executor_class="http", executor_options={"base_url": url, "auth": "google"})
with DiffusionEngine(config) as engine:
    request = OmniDiffusionRequest(prompt="a 7", height=64, width=64, num_inference_steps=2, seed=5)
    output = engine.step([request])[0].raise_for_error()
print(json.dumps({"sha256": hashlib.sha256(output.output[0].tobytes()).hexdigest()}))
"""


def test_functions_framework_serves_omnis_api_to_a_google_authenticated_client(
    tiny_model: Path, tmp_path: Path
) -> None:
    binary = shutil.which("functions-framework")
    if binary is None:
        pytest.fail("functions-framework is missing: pip install './packages/omni-executor-http[cloudrun]'")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = fake_google_id_token(audience=url)
    env = {
        **os.environ,
        "OMNI_MODEL": str(tiny_model),
        "OMNI_EXECUTOR": "inproc",
        "OMNI_EXECUTOR_OPTIONS": json.dumps({"torch_threads": 1}),
        "OMNI_API_KEY": token,  # only this token gets in, so a 200 proves the client sent it
    }
    log = (tmp_path / "function.log").open("w")
    command = [
        binary,
        "--asgi",
        "--target",
        "omni",
        "--source",
        str(MAIN),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    function = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(url, function, tmp_path / "function.log")
        body = {"prompt": "a 7", "size": "64x64"}
        assert httpx.post(f"{url}/v1/images/generations", json=body, timeout=30).status_code == 401
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code in (200, 401)
        with fake_google_metadata_server(token) as (metadata_host, audiences):
            client_env = {**os.environ, "GCE_METADATA_HOST": metadata_host, "GCE_METADATA_IP": metadata_host}
            client_env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
            result = subprocess.run(
                [sys.executable, "-c", CLIENT, url],
                env=client_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        assert result.returncode == 0, result.stderr[-3000:]
        remote = json.loads(result.stdout.strip().splitlines()[-1])["sha256"]
        assert audiences == [url]  # one token, minted for the service's URL, reused
    finally:
        function.terminate()
        function.wait(30)
        log.close()
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), executor_class="inproc", executor_options={"torch_threads": 1}
    )
    with DiffusionEngine(config) as inproc:
        request = OmniDiffusionRequest(prompt="a 7", height=64, width=64, num_inference_steps=2, seed=5)
        local = inproc.step([request])[0].raise_for_error()
    assert remote == hashlib.sha256(np.ascontiguousarray(local.output[0]).tobytes()).hexdigest()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, f"functions-framework exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"functions-framework did not serve /health:\n{log.read_text()[-3000:]}")
