"""The scheduler in front of the real in-process executor and the tiny diffusers model."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest, ProgressEvent


def test_preempting_a_real_pipeline_between_steps(tiny_model: Path) -> None:
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model),
        executor_class="priority",
        executor_options={"inner": "inproc", "max_inflight": 1},
    )
    low_request = OmniDiffusionRequest(
        prompt="low", height=128, width=128, num_inference_steps=60, seed=1, priority=9
    )
    high_request = OmniDiffusionRequest(
        prompt="high", height=64, width=64, num_inference_steps=2, seed=2, priority=0
    )
    with DiffusionEngine(config) as engine:
        running = threading.Event()

        def listener(event: ProgressEvent) -> None:
            if event.request_id == low_request.request_id:
                running.set()

        engine.add_progress_listener(listener)
        low = engine.submit(low_request)
        assert running.wait(60)
        started = time.monotonic()
        high = engine.submit(high_request).result(timeout=60)
        high_latency = time.monotonic() - started
        low_output = low.result(timeout=120)
        assert high.ok
        assert low_output.ok
        assert low_output.timings["preemptions"] == 1
        assert high_latency < low_output.timings["inference"]  # did not wait for low's 60 steps
        # Re-run from scratch with the same seed: the same image as an unpreempted run.
        again = engine.step([OmniDiffusionRequest(**{**low_request.to_dict(), "request_id": "again"})])[0]
        assert np.array_equal(again.output[0], low_output.output[0])
