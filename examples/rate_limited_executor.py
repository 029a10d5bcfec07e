"""A rate-limited executor: each tenant gets at most ``tenant_rate`` requests per second.

The priority executor's per-tenant GCRA limiter in front of the in-process
executor: a tenant over its rate is skipped (others run meanwhile), never
rejected and never blocking the scheduler.

Run: python examples/rate_limited_executor.py
"""

from __future__ import annotations

import time

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest

RATE = 4.0  # requests per second per tenant


def main() -> None:
    config = OmniDiffusionConfig(
        executor_class="priority",
        executor_options={"inner": "inproc", "tenant_rate": RATE, "tenant_burst": 1, "max_inflight": 2},
    )
    with DiffusionEngine(config) as engine:
        engine.generate("warm up", height=64, width=64, num_inference_steps=2).raise_for_error()
        started = time.perf_counter()
        futures = [
            engine.submit(
                OmniDiffusionRequest(
                    prompt=f"a handwritten {i}",
                    height=64,
                    width=64,
                    num_inference_steps=2,
                    seed=i,
                    tenant="free",
                )
            )
            for i in range(6)
        ]
        for future in futures:
            future.result().raise_for_error()
        elapsed = time.perf_counter() - started
    # Six requests at 4/s with a burst of 1: the sixth may start 5 / 4 = 1.25 s after the first.
    print(f"6 requests from one tenant at {RATE:g}/s took {elapsed:.2f} s (at least {5 / RATE:.2f} s)")
    assert elapsed >= 5 / RATE * 0.95


if __name__ == "__main__":
    main()
