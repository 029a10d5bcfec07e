"""One failure, one channel, over the executors whose model runs elsewhere.

The scenarios of ``test_conformance.py`` against ``omni serve`` on loopback (http, and external
routing over it), the local Lambda service, ``omni celery worker`` over a real Redis and
``omni kafka worker`` on a real Tansu broker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_setups import check, engines, require

from omni_core.testing_conformance import run_conformance

# An aborted request still runs out on omni serve (the HTTP call cannot be recalled): shorter
# busy requests there keep the scenarios from queueing behind the ones they abandoned.
LONG_STEPS = {"http": 100, "external": 100}


@pytest.mark.parametrize("executor", ["http", "external", "lambda", "celery", "kafka"])
def test_every_failure_arrives_as_an_output_of_its_class(
    executor: str, tiny_model: Path, tmp_path: Path
) -> None:
    if executor == "celery":
        require("redis-server", "apt-get install -y redis-server")
    if executor == "kafka":
        pytest.importorskip("omni_executor_kafka")
        from omni_executor_kafka.testing import require_broker

        require_broker()
    with engines(executor, tiny_model, tmp_path) as make_engine:
        check(run_conformance(make_engine, long_steps=LONG_STEPS.get(executor, 200)))
