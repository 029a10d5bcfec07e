"""The Kafka executor against the mp executor, with a real Tansu broker on loopback; one run.

1. Per-request overhead at 64² (4 steps), sequential, one worker with one torch thread: Kafka
   vs an mp worker, alternating request by request; medians. Target: +10 ms or less.
2. Throughput of two workers in the group against one (one thread each), the same requests at
   concurrency 8; reported.
3. Failover: seconds from SIGKILLing the worker running a request to its result (the group
   gives the dead worker's partitions to the other after the 6 s session timeout), reported.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_kafka.py [--full]``. Needs the Tansu
broker (``pip install 'omni-executor-kafka[broker]'``); without it it says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from _load import alternating_medians, throughput
from _plot import save_bars
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest

STEPS = 4


def request(seed: int, steps: int = STEPS) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt="a 7", height=64, width=64, num_inference_steps=steps, seed=seed)


def run_pids(log: Path) -> list[tuple[str, str, int]]:
    if not log.exists():
        return []
    return [
        (kind, rid, int(pid)) for kind, rid, pid in (line.split() for line in log.read_text().splitlines())
    ]


def wait_for_start(log: Path, request_id: str, seconds: float = 60.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for kind, rid, pid in run_pids(log):
            if kind == "start" and rid == request_id:
                return pid
        time.sleep(0.01)
    raise TimeoutError(f"request {request_id} did not start within {seconds:g} s")


def wait_for_two_workers(engine: DiffusionEngine, log: Path, seconds: float = 120.0) -> None:
    """Until the group has given partitions to both (each has run a request)."""
    deadline = time.monotonic() + seconds
    seed = 10_000
    while len({pid for _, _, pid in run_pids(log)}) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the second worker never took a partition")
        futures = [engine.submit(request(seed + i, steps=1)) for i in range(8)]
        for future in futures:
            future.result().raise_for_error()
        seed += 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    args = parser.parse_args()
    from omni_executor_kafka.testing import (
        BrokerMissing,
        kafka_broker,
        kafka_config,
        kafka_workers,
        tansu_binary,
        wait_for_workers,
    )

    from omni_core.models.tiny import build_tiny_pipeline

    try:
        tansu_binary()
    except BrokerMissing as exc:
        print(f"kafka benchmarks skipped: {exc}")
        return
    count = 40 if args.full else 10
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        log = Path(tmp) / "runs.log"
        model = build_tiny_pipeline(Path(tmp) / "tiny")
        broker = stack.enter_context(kafka_broker(Path(tmp)))
        print(f"kafka benchmarks: tiny model, 64², {STEPS} steps, one-thread workers, Tansu on loopback")
        mp_config = OmniDiffusionConfig(
            model_name_or_path=str(model),
            executor_class="mp",
            max_batch_size=1,
            executor_options={"num_workers": 1, "threads_per_worker": 1},
        )
        mp = stack.enter_context(DiffusionEngine(mp_config))
        stack.enter_context(kafka_workers(broker.bootstrap, model, run_log=log))
        kafka = stack.enter_context(DiffusionEngine(kafka_config(model, broker.bootstrap)))
        wait_for_workers(kafka)
        mp_s, kafka_s = alternating_medians([mp, kafka], request, count)
        print(
            f"1. sequential: mp {mp_s * 1e3:6.1f} ms, kafka {kafka_s * 1e3:6.1f} ms, "
            f"overhead {(kafka_s - mp_s) * 1e3:+6.2f} ms/request "
            f"(target <= 10 ms: {verdict(kafka_s - mp_s <= 0.010)})"
        )
        single = throughput(kafka, request, count * 2, concurrency=8)
        stack.enter_context(kafka_workers(broker.bootstrap, model, run_log=log))
        wait_for_two_workers(kafka, log)
        double = throughput(kafka, request, count * 2, concurrency=8)
        print(
            f"2. throughput: 1 worker {single:5.1f} req/s, 2 workers {double:5.1f} req/s, "
            f"ratio {double / single:4.2f}"
        )
        victim = request(4242, steps=60)
        future = kafka.submit(victim)
        pid = wait_for_start(log, victim.request_id)
        killed = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        future.result().raise_for_error()
        print(
            f"3. failover: result {time.perf_counter() - killed:5.2f} s after SIGKILL of its worker "
            "(session timeout 6 s; 60 steps)"
        )
        save_bars(
            args.plot_dir,
            "kafka",
            "Kafka executor vs mp, 64², 4 steps (median per request)",
            ["mp", "kafka"],
            [mp_s * 1e3, kafka_s * 1e3],
            "ms per request",
        )


if __name__ == "__main__":
    sys.exit(main())
