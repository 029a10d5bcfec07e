"""Lambda executor against the local Lambda service (real awslambdaric processes) on the tiny model.

1. Fan-out: 8 requests (128², 8 steps) through ``executor_class="lambda"``
   with ``concurrency=4`` vs ``concurrency=1``, against a function with 4
   warm environments of one thread each (as each Lambda environment has its
   own vCPUs); speedup = time at 1 / time at 4. On this 2-core machine the
   four environments share two cores.
2. Per-invocation overhead at 64² (4 steps): sequential requests through the
   Lambda executor (one environment, default threads) vs the in-process
   executor here, alternating request by request; medians. Also the cold
   start (first invocation of a new environment: awslambdaric start, torch
   import, model load).

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_lambda.py [--full]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _plot import save_bars

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_executor_lambda.local import LocalFunction
from omni_executor_lambda.testing import local_lambda


def request(seed: int, size: int, steps: int) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(
        prompt="a benchmark", height=size, width=size, num_inference_steps=steps, seed=seed
    )


def lambda_engine(endpoint: str, function: str, concurrency: int) -> DiffusionEngine:
    return DiffusionEngine(
        OmniDiffusionConfig(
            executor_class="lambda",
            executor_options={
                "function_name": function,
                "endpoint_url": endpoint,
                "region": "us-east-1",
                "concurrency": concurrency,
                "backoff_base": 0.02,
            },
        )
    )


def batch_seconds(engine: DiffusionEngine, count: int) -> float:
    requests = [request(seed, 128, 8) for seed in range(count)]
    started = time.perf_counter()
    for output in engine.step(requests):
        output.raise_for_error()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    args = parser.parse_args()
    from omni_core.models.tiny import build_tiny_pipeline

    repeats = 5 if args.full else 1
    sequential = 40 if args.full else 10
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_pipeline(Path(tmp) / "tiny")
        functions = [
            LocalFunction(
                "omni-1t",
                concurrency=4,
                environment={"OMNI_MODEL": str(model), "OMP_NUM_THREADS": "1", "OMNI_EAGER_LOAD": "1"},
            ),
            LocalFunction("omni", concurrency=1, environment={"OMNI_MODEL": str(model)}),
        ]
        local_config = OmniDiffusionConfig(model_name_or_path=str(model), executor_class="inproc")
        with local_lambda(functions) as service, DiffusionEngine(local_config) as local:
            print("lambda benchmarks on the tiny model, local Lambda service")
            with (
                lambda_engine(service.endpoint_url, "omni-1t", 4) as wide,
                lambda_engine(service.endpoint_url, "omni-1t", 1) as narrow,
            ):
                batch_seconds(wide, 8)  # warm all four environments
                one = min(batch_seconds(narrow, 8) for _ in range(repeats))
                four = min(batch_seconds(wide, 8) for _ in range(repeats))
            print(
                f"1. 8 requests (128x128, 8 steps): concurrency 1 {one:6.2f} s, concurrency 4 {four:6.2f} s, "
                f"speedup {one / four:4.2f}x"
            )
            with lambda_engine(service.endpoint_url, "omni", 1) as remote:
                started = time.perf_counter()
                remote.step([request(0, 64, 4)])[0].raise_for_error()
                cold = time.perf_counter() - started
                local.step([request(0, 64, 4)])[0].raise_for_error()
                local_times, remote_times = [], []
                for seed in range(sequential):
                    for engine, sink in ((local, local_times), (remote, remote_times)):
                        started = time.perf_counter()
                        engine.step([request(seed, 64, 4)])[0].raise_for_error()
                        sink.append(time.perf_counter() - started)
            local_s, remote_s = statistics.median(local_times), statistics.median(remote_times)
            print(
                f"2. sequential 64x64, 4 steps: in-process {local_s * 1e3:6.1f} ms, lambda (local service) "
                f"{remote_s * 1e3:6.1f} ms, overhead {(remote_s - local_s) * 1e3:+6.2f} ms/invocation; "
                f"cold start {cold:5.2f} s"
            )
            save_bars(
                args.plot_dir,
                "lambda",
                "Lambda executor, local service: 8 requests (128², 8 steps)",
                ["concurrency 1", "concurrency 4"],
                [one, four],
                "seconds",
            )


if __name__ == "__main__":
    main()
