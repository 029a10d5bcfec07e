"""`omni serve` offered three times its capacity: fast rejections, bounded latency, no wasted work.

1. Service time S: sequential requests to one mp worker (tiny model, 64², batch size 1).
2. Overload: requests arrive open-loop at 3/S for 30 s (``--full``; 8 s short) against
   ``--max-queued-requests Q``. Targets: rejected requests (429) answered in <= 10 ms
   at p99; admitted requests' p99 under (Q / workers + 1) x S.
3. Abandoned heavy requests: clients that give up after 0.3 s on 200-step requests.
   Target: at most one denoising step each runs after the client left (counted by the
   server's ``omni_abandoned_steps_total``).

Ratios are against S, measured in the same run. Run: ``nox -s benchmarks`` or
``python benchmarks/bench_overload.py [--full]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _plot import save_bars
from _targets import verdict

from omni_executor_http.testing import run_server

QUEUE_CAP = 4
WORKERS = 1
LIGHT = {"prompt": "a 7", "size": "64x64", "num_inference_steps": 4}
HEAVY = {"prompt": "a 7", "size": "256x256", "num_inference_steps": 200}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def service_time(url: str, count: int) -> float:
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/v1/images/generations", json={**LIGHT, "seed": 0}).raise_for_status()
        times = []
        for seed in range(count):
            started = time.perf_counter()
            client.post("/v1/images/generations", json={**LIGHT, "seed": seed}).raise_for_status()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


async def offer(url: str, rate: float, seconds: float) -> tuple[list[float], list[float], int]:
    """Open-loop arrivals at ``rate``/s; (admitted latencies, rejected latencies, other answers)."""
    admitted: list[float] = []
    rejected: list[float] = []
    other = 0
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(seed: int) -> None:
            nonlocal other
            started = time.perf_counter()
            response = await client.post("/v1/images/generations", json={**LIGHT, "seed": seed})
            elapsed = time.perf_counter() - started
            if response.status_code == 200:
                admitted.append(elapsed)
            elif response.status_code == 429 and response.headers.get("retry-after"):
                rejected.append(elapsed)
            else:
                other += 1

        tasks = []
        started = time.perf_counter()
        seed = 0
        while (now := time.perf_counter() - started) < seconds:
            due = seed / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(one(seed)))
            seed += 1
        await asyncio.gather(*tasks)
    return admitted, rejected, other


def abandoned_steps(url: str, count: int) -> tuple[float, float]:
    """(abandoned requests the server saw, denoising steps it ran for them after the client left)."""
    with httpx.Client(base_url=url) as client:
        for seed in range(count):
            with contextlib.suppress(httpx.ReadTimeout):
                client.post("/v1/images/generations", json={**HEAVY, "seed": seed}, timeout=0.3)
        time.sleep(3)  # let the server notice the last disconnect
        metrics = client.get("/metrics").text
    requests = sum(
        float(m) for m in re.findall(r"omni_requests_abandoned_total\{[^}]*\} ([0-9.e+]+)", metrics)
    )
    steps = re.search(r"^omni_abandoned_steps_total ([0-9.e+]+)", metrics, re.M)
    return requests, float(steps.group(1)) if steps else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    args = parser.parse_args()
    from omni_core.models.tiny import build_tiny_pipeline

    seconds = 30.0 if args.full else 5.0
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_pipeline(Path(tmp) / "tiny")
        flags = (
            "--max-queued-requests",
            str(QUEUE_CAP),
            "--max-batch-size",
            "1",
            "--option",
            f"num_workers={WORKERS}",
            "--option",
            "threads_per_worker=1",  # the load generator and the server need the other core
        )
        with run_server(model, *flags, executor="mp", tmp=Path(tmp)) as server:
            service = service_time(server.url, 10 if args.full else 5)
            rate = 3 * WORKERS / service
            print(f"overload benchmark: tiny model, 64², 4 steps, {WORKERS} mp worker, queue cap {QUEUE_CAP}")
            print(f"1. service time S {service * 1e3:6.1f} ms (capacity {WORKERS / service:5.1f} req/s)")
            admitted, rejected, other = asyncio.run(offer(server.url, rate, seconds))
            reject_p99 = percentile(rejected, 0.99) if rejected else float("nan")
            admit_p99 = percentile(admitted, 0.99) if admitted else float("nan")
            bound = (QUEUE_CAP / WORKERS + 1) * service
            print(
                f"2. offered {rate:5.1f} req/s for {seconds:g} s: {len(admitted)} admitted, "
                f"{len(rejected)} rejected with 429 + Retry-After, {other} other"
            )
            met = verdict(reject_p99 <= 0.010)
            print(f"   rejected p99 {reject_p99 * 1e3:6.1f} ms (target <= 10 ms: {met})")
            print(
                f"   admitted p99 {admit_p99 * 1e3:6.1f} ms = {admit_p99 / service:4.1f} S "
                f"(target < {bound / service:g} S: {verdict(admit_p99 < bound)})"
            )
            count = 6 if args.full else 2
            seen, steps = abandoned_steps(server.url, count)
            per_request = steps / max(seen, 1.0)
            print(
                f"3. {count} abandoned 200-step requests: server saw {seen:g}, ran {steps:g} steps after the "
                f"clients left, {per_request:.2f} per request (target <= 1: {verdict(per_request <= 1)})"
            )
            save_bars(
                args.plot_dir,
                "overload",
                "omni serve at 3x capacity: p99 latency in service times S",
                ["rejected (429)", "admitted"],
                [reject_p99 / service, admit_p99 / service],
                "p99 / service time S",
            )


if __name__ == "__main__":
    main()
