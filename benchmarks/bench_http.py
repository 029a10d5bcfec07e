"""HTTP executor vs in-process executor on the tiny model; ratios from one run.

1. Per-request overhead at 64² (4 steps): the same requests, sequentially,
   through ``executor_class="http"`` against a local ``omni serve`` (in-process
   executor behind it) and through the in-process executor here, alternating
   request by request; medians. Target: overhead <= 5 ms.
2. Throughput at concurrency 1, 8 and 32: the same number of requests
   submitted with at most that many in flight, http vs in-process.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_http.py [--full]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _load import throughput
from _plot import save_bars
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_executor_http.testing import run_server

STEPS = 4


def request(seed: int, size: int = 64) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(
        prompt="a benchmark", height=size, width=size, num_inference_steps=STEPS, seed=seed
    )


def overhead(local: DiffusionEngine, remote: DiffusionEngine, count: int) -> tuple[float, float]:
    for engine in (local, remote):
        engine.step([request(999)])[0].raise_for_error()
    local_times, remote_times = [], []
    for seed in range(count):
        for engine, sink in ((local, local_times), (remote, remote_times)):
            started = time.perf_counter()
            engine.step([request(seed)])[0].raise_for_error()
            sink.append(time.perf_counter() - started)
    return statistics.median(local_times), statistics.median(remote_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    args = parser.parse_args()
    from omni_core.models.tiny import build_tiny_pipeline

    count = 60 if args.full else 12
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_pipeline(Path(tmp) / "tiny")
        local_config = OmniDiffusionConfig(model_name_or_path=str(model), executor_class="inproc")
        with run_server(model, tmp=Path(tmp)) as server, DiffusionEngine(local_config) as local:
            remote_config = OmniDiffusionConfig(
                executor_class="http", executor_options={"base_url": server.url, "max_connections": 32}
            )
            with DiffusionEngine(remote_config) as remote:
                print(f"http benchmarks on the tiny model, 64x64, {STEPS} steps")
                local_s, remote_s = overhead(local, remote, count)
                print(
                    f"1. sequential: in-process {local_s * 1e3:6.1f} ms, http {remote_s * 1e3:6.1f} ms, "
                    f"overhead {(remote_s - local_s) * 1e3:+5.2f} ms/request "
                    f"(target <= 5 ms: {verdict(remote_s - local_s <= 0.005)})"
                )
                save_bars(
                    args.plot_dir,
                    "http",
                    "HTTP executor vs in-process, 64², 4 steps (median)",
                    ["in-process", "http"],
                    [local_s * 1e3, remote_s * 1e3],
                    "ms per request",
                )
                print("2. throughput (requests/s)")
                for concurrency in (1, 8, 32):
                    n = max(count, concurrency * 2)
                    local_rps = throughput(local, request, n, concurrency)
                    remote_rps = throughput(remote, request, n, concurrency)
                    print(
                        f"   concurrency {concurrency:2d}: in-process {local_rps:6.1f}, "
                        f"http {remote_rps:6.1f}, ratio {remote_rps / local_rps:4.2f}"
                    )


if __name__ == "__main__":
    main()
