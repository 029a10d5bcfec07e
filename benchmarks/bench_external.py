"""The external executor: routing overhead against the http executor, and three servers against one.

1. Routing overhead at 64² (1 step): the same requests, sequentially, to one ``omni serve``
   through ``executor_class="http"`` and through ``"external"`` listing only that server,
   alternating request by request; medians. Target: 0.5 ms or less. Also the cost of
   the routing decision alone (pick a server, release it), from many repetitions.
2. Throughput of three servers against one (one torch thread each) at concurrency 8,
   reported: on this project's 2-core machine the three servers and the client share the
   cores, so it cannot reach 3x.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_external.py [--full]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _load import alternating_medians, throughput
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_executor_http.testing import run_servers


def request(seed: int, steps: int = 1) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt="a 7", height=64, width=64, num_inference_steps=steps, seed=seed)


def engine_for(model: Path, executor: str, **options: object) -> DiffusionEngine:
    config = OmniDiffusionConfig(
        model_name_or_path=str(model), executor_class=executor, executor_options=options
    )
    return DiffusionEngine(config)


def routing_decision_seconds(engine: DiffusionEngine, repetitions: int) -> float:
    fleet = engine.executor.fleet  # type: ignore[attr-defined]
    started = time.perf_counter()
    for _ in range(repetitions):
        server = fleet.acquire(set())
        fleet.release(server, completed=False)
    return (time.perf_counter() - started) / repetitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    from omni_core.models.tiny import build_tiny_pipeline

    count = 200 if args.full else 30
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_pipeline(Path(tmp) / "tiny")
        threads = ("--option", "torch_threads=1")
        with run_servers(model, 3, *threads, tmp=Path(tmp)) as servers:
            first = servers[0].url
            print("external benchmarks: tiny model, 64², three omni serve processes (one thread each)")
            with (
                engine_for(model, "http", base_url=first) as http,
                engine_for(model, "external", urls=[first]) as one,
                engine_for(model, "external", urls=[s.url for s in servers]) as three,
            ):
                http_s, external_s = alternating_medians([http, one], request, count)
                extra = external_s - http_s
                decision = routing_decision_seconds(three, 20_000)
                print(
                    f"1. sequential, 1 step: http {http_s * 1e3:6.2f} ms, "
                    f"external {external_s * 1e3:6.2f} ms, "
                    f"routing overhead {extra * 1e3:+5.2f} ms/request (target <= 0.5 ms: "
                    f"{verdict(extra <= 0.0005)}); the routing decision alone {decision * 1e6:4.1f} µs"
                )
                single = throughput(one, lambda seed: request(seed, steps=4), count, concurrency=8)
                triple = throughput(three, lambda seed: request(seed, steps=4), count, concurrency=8)
                print(
                    f"2. throughput, 4 steps, concurrency 8: 1 server {single:5.1f} req/s, "
                    f"3 servers {triple:5.1f} req/s, ratio {triple / single:4.2f} (reported; 2 cores)"
                )


if __name__ == "__main__":
    main()
