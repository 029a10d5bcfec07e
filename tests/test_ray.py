"""Ray inside a private network namespace: `omni serve --executor ray` answers a real request,
and the built-in default model draws what the prompt composes through the Ray executor.

Ray binds to the host's primary address, so the driver (and the local Ray it starts) runs
under ``unshare -rn`` with only loopback. Both Ray tests live in this one file so that pytest-xdist
(a file per worker) runs them one after the other, not two clusters at once on a 2-core machine.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from private_network import run_with_loopback_only

from omni_core.images import decode_png

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


RAY_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from test_default_model_everywhere import requests
from omni_core import DiffusionEngine, OmniDiffusionConfig
from omni_core.images import encode_png
config = OmniDiffusionConfig(executor_class="ray", executor_options={"num_workers": 1})
with DiffusionEngine(config) as engine:
    outputs = engine.step(requests())
print(json.dumps([encode_png(o.raise_for_error().output[0]).hex() for o in outputs]))
"""


def test_the_default_model_draws_through_ray() -> None:
    """Ray binds to the host's primary address: the driver and its local cluster run with loopback only."""
    if importlib.util.find_spec("omni_executor_ray") is None:
        pytest.skip("omni-executor-ray is not installed")
    from test_default_model_everywhere import check_images  # here: it skips without scikit-learn

    stdout = run_with_loopback_only(RAY_SCRIPT, str(Path(__file__).parent), timeout=600)
    pngs = json.loads(stdout.strip().splitlines()[-1])
    check_images("ray", [decode_png(bytes.fromhex(png)) for png in pngs])
