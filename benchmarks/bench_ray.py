"""The Ray executor against the mp executor, on a local Ray cluster; ratios from one run.

1. Per-request overhead at 64² (4 steps), sequential, one worker with one torch thread
   each: Ray actor vs mp worker process, alternating request by request; medians.
   Target: +5 ms or less.
2. Throughput of two actors on two nodes against one actor (one thread each), the same
   requests at concurrency 8. Target: 1.7x or more.
3. Cold start: seconds for a new actor to become ready (placement + model load), reported.

Ray binds to the host's primary address, so this script re-runs itself inside a private
network namespace (``unshare -rn``, ``lo`` up) when it is not in one already.
Run: ``nox -s benchmarks`` or ``python benchmarks/bench_ray.py [--full]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _load import throughput
from _plot import save_bars
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest

STEPS = 4


def only_loopback() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def request(seed: int) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt="a 7", height=64, width=64, num_inference_steps=STEPS, seed=seed)


def overhead(mp: DiffusionEngine, ray_engine: DiffusionEngine, count: int) -> tuple[float, float]:
    for engine in (mp, ray_engine):
        engine.step([request(999)])[0].raise_for_error()
    mp_times, ray_times = [], []
    for seed in range(count):
        for engine, sink in ((mp, mp_times), (ray_engine, ray_times)):
            started = time.perf_counter()
            engine.step([request(seed)])[0].raise_for_error()
            sink.append(time.perf_counter() - started)
    return statistics.median(mp_times), statistics.median(ray_times)


def ray_config(model: Path, address: str, workers: int) -> OmniDiffusionConfig:
    return OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="ray",
        max_batch_size=1,
        executor_options={"ray_address": address, "num_workers": workers, "threads_per_worker": 1},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    args = parser.parse_args()
    if not only_loopback():
        command = " ".join(shlex.quote(part) for part in [sys.executable, *sys.argv])
        os.execvp("unshare", ["unshare", "-rn", "sh", "-c", f"ip link set lo up && exec {command}"])
    from omni_core.models.tiny import build_tiny_pipeline
    from omni_executor_ray.testing import local_cluster

    count = 40 if args.full else 8
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_pipeline(Path(tmp) / "tiny")
        with local_cluster() as (cluster, _):
            print(f"ray benchmarks: tiny model, 64², {STEPS} steps, a head and two 1-CPU nodes on loopback")
            started = time.perf_counter()
            one = DiffusionEngine(ray_config(model, cluster.address, 1))
            cold = time.perf_counter() - started
            mp_config = OmniDiffusionConfig(
                model_name_or_path=str(model),
                executor_class="mp",
                max_batch_size=1,
                executor_options={"num_workers": 1, "threads_per_worker": 1},
            )
            with one, DiffusionEngine(mp_config) as mp:
                mp_s, ray_s = overhead(mp, one, count)
                met = verdict(ray_s - mp_s <= 0.005)
                print(
                    f"1. sequential: mp {mp_s * 1e3:6.1f} ms, ray {ray_s * 1e3:6.1f} ms, overhead "
                    f"{(ray_s - mp_s) * 1e3:+5.2f} ms/request (target <= 5 ms: {met})"
                )
                one.step([request(998)])[0].raise_for_error()
                single = throughput(one, request, count * 2, concurrency=8)
            with DiffusionEngine(ray_config(model, cluster.address, 2)) as two:
                two.step([request(998)])[0].raise_for_error()
                double = throughput(two, request, count * 2, concurrency=8)
            ratio = double / single
            print(
                f"2. throughput: 1 actor {single:5.1f} req/s, 2 actors on 2 nodes {double:5.1f} req/s, "
                f"ratio {ratio:4.2f} (target >= 1.7: {verdict(ratio >= 1.7)})"
            )
            print(f"3. cold start: a new actor ready (placement + model load) in {cold:5.2f} s")
            save_bars(
                args.plot_dir,
                "ray",
                "Ray executor vs mp, 64², 4 steps (median per request)",
                ["mp", "ray"],
                [mp_s * 1e3, ray_s * 1e3],
                "ms per request",
            )


if __name__ == "__main__":
    main()
