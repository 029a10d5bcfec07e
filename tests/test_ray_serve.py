"""`omni serve --executor ray` answers a real request, inside a private network namespace.

Ray binds to the host's primary address, so the server (and the local Ray it starts) runs
under ``unshare -rn`` with only loopback; this test drives it from inside too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from private_network import run_with_loopback_only

SCRIPT = """
import sys
from pathlib import Path
import httpx
from omni_executor_http.testing import run_server
model, tmp = Path(sys.argv[1]), Path(sys.argv[2])
with run_server(model, "--option", "num_workers=1", executor="ray", tmp=tmp) as server:
    answer = httpx.post(
        f"{server.url}/v1/images/generations",
        json={"prompt": "a 7", "size": "64x64", "num_inference_steps": 2, "seed": 1},
        timeout=120,
    )
    print(answer.status_code, len(answer.json()["data"]))
"""


def test_omni_serve_with_the_ray_executor(tiny_model: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("omni_executor_ray") is None:
        pytest.skip("omni-executor-ray is not installed")
    stdout = run_with_loopback_only(SCRIPT, str(tiny_model), str(tmp_path), timeout=300)
    assert stdout.strip().splitlines()[-1] == "200 1"
