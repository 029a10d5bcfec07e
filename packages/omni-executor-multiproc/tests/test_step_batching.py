"""Step-level batching in worker processes: requests join a worker's running batch from its pipe."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest, ProgressEvent
from omni_core.testing_images import fraction_of_pixels_off_by_more_than

WAIT = 300


def config(model: Path, **fields: object) -> OmniDiffusionConfig:
    return OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="mp",
        max_batch_size=4,
        calibrate_batch_cap=False,
        executor_options={"num_workers": 2, "threads_per_worker": 1},
        **fields,  # type: ignore[arg-type]
    )


def test_two_hundred_mixed_staggered_requests_each_run_once(tiny_model: Path) -> None:
    rng = random.Random(0)
    requests = [
        OmniDiffusionRequest(
            f"request {i}",
            seed=i,
            height=rng.choice((32, 64)),
            width=rng.choice((32, 64)),
            num_inference_steps=rng.randint(1, 5),
            guidance_scale=rng.choice((1.0, 3.0, 7.5)),
        )
        for i in range(200)
    ]
    first_steps: Counter[str] = Counter()
    lock = threading.Lock()

    def on_progress(event: ProgressEvent) -> None:
        if event.step == 1:
            with lock:
                first_steps[event.request_id] += 1

    with DiffusionEngine(config(tiny_model)) as engine:
        remove = engine.add_progress_listener(on_progress)
        futures = []
        for request in requests:  # staggered arrivals, 2 s at most in all
            futures.append(engine.submit(request))
            time.sleep(rng.uniform(0, 0.01))
        outputs = [future.result(timeout=WAIT) for future in futures]
        remove()
        info = engine.collective_rpc("describe")
    assert [o.request_id for o in outputs] == [r.request_id for r in requests]
    assert all(o.ok for o in outputs), next(o.error for o in outputs if not o.ok)
    assert all(o.output[0].shape == (r.height, r.width, 3) for o, r in zip(outputs, requests, strict=True))
    # Each ran exactly once (a second run would report its first step again), on both workers.
    assert all(first_steps[r.request_id] == 1 for r in requests)
    assert {o.timings["worker_rank"] for o in outputs} == {0.0, 1.0}
    # Requests of different steps and guidance shared forwards (more rows than any one of them).
    assert max(o.timings["batch_rows"] for o in outputs) > 2
    assert all(worker["batching"]["mode"] == "step" for worker in info)


def test_a_request_joining_a_workers_batch_equals_inproc(tiny_model: Path) -> None:
    long = OmniDiffusionRequest("long", seed=1, height=64, width=64, num_inference_steps=30)
    short = OmniDiffusionRequest("short", seed=2, height=64, width=64, num_inference_steps=3)
    started = threading.Event()
    one_worker = config(tiny_model).replace(executor_options={"num_workers": 1, "threads_per_worker": 1})
    with DiffusionEngine(one_worker) as engine:
        remove = engine.add_progress_listener(
            lambda event: started.set() if event.request_id == long.request_id else None
        )
        long_future = engine.submit(long)
        assert started.wait(WAIT)
        joined = engine.submit(short).result(timeout=WAIT).raise_for_error()
        assert not long_future.done()  # it finished while the long one still ran
        long_output = long_future.result(timeout=WAIT).raise_for_error()
        remove()
    inproc_config = OmniDiffusionConfig(model_name_or_path=str(tiny_model), executor_class="inproc")
    with DiffusionEngine(inproc_config) as inproc:
        alone = [inproc.step([r])[0].raise_for_error() for r in (long, short)]
    assert joined.timings["batch_rows"] == 4  # its two guidance rows beside the long one's two
    for shared, solo in zip((long_output, joined), alone, strict=True):
        assert fraction_of_pixels_off_by_more_than(shared.output[0], solo.output[0], 1) == 0
    assert not np.array_equal(long_output.output[0], joined.output[0])
