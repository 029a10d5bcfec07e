"""One failure, one channel: every executor answers the same scenarios with the same class.

A bad field, overload, abort of a queued and of a running request, a timeout and a shutdown
while busy, played (:mod:`omni_core.testing_conformance`) against the executors whose model runs
on slots of their own: in-process, worker processes, the priority scheduler in front of them,
and a Ray cluster in its own network namespace. ``test_conformance_remote.py`` plays the same
against the remote ones.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conformance_setups import check, engines
from private_network import run_with_loopback_only

from omni_core.testing_conformance import run_conformance


@pytest.mark.parametrize("executor", ["inproc", "mp", "priority"])
def test_every_failure_arrives_as_an_output_of_its_class(
    executor: str, tiny_model: Path, tmp_path: Path
) -> None:
    with engines(executor, tiny_model, tmp_path) as make_engine:
        check(run_conformance(make_engine))


RAY_SCRIPT = """
import json, sys
from omni_core import DiffusionEngine, OmniDiffusionConfig
from omni_core.testing_conformance import run_conformance
config = OmniDiffusionConfig(
    model_name_or_path=sys.argv[1], executor_class="ray", batching="request", max_batch_size=1,
    max_queued_requests=1, executor_options={"num_workers": 1, "threads_per_worker": 1},
)
print(json.dumps(run_conformance(lambda: DiffusionEngine(config))))
"""


def test_ray_answers_the_same(tiny_model: Path) -> None:
    """Ray binds to the host's primary address: the driver and its local cluster run with loopback only."""
    if importlib.util.find_spec("omni_executor_ray") is None:
        pytest.skip("omni-executor-ray is not installed")
    stdout = run_with_loopback_only(RAY_SCRIPT, str(tiny_model), timeout=900)
    check(json.loads(stdout.strip().splitlines()[-1]))
