"""Step-level batching against request-level batching, on a tiny SD pipeline (inproc, CPU).

1. Head of line: a 4-step request submitted 0.3 s after a 60-step one; its latency
   against its solo time. Target (step mode): at most 2x (request mode: it waits).
2. Mixed traffic: 16 requests (48 with --full) with steps {4, 8, 16, 30} and guidance {1.5, 4.0, 7.5}
   against as many that share one key, per denoising step (the totals differ slightly).
   Target (step mode): mixed at most 1.2x uniform.
3. Open-loop Poisson arrivals of mixed requests at 50/80/95 % of the capacity measured
   in (2): p50/p99 latency and throughput per mode. Target: step-mode p50 at 80 % at
   most half of request mode's. ``--plot-dir`` draws latency against throughput.
4. No regression where batching cannot help: one request at a time, step mode against
   the pipeline's own call (diffusers directly), at 64, 256 and 512. Target >= 0.98
   (the ratio is baseline time / omni time).

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_step_batching.py [--full] [--plot-dir DIR]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _plot import save_bars, save_lines
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.tiny import build_tiny_pipeline

SIZE = 128
STEPS = (4, 8, 16, 30)
GUIDANCE = (1.5, 4.0, 7.5)


def engine(model: Path, mode: str) -> DiffusionEngine:
    config = OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="inproc",
        batching=mode,
        max_batch_size=16,
        executor_options={"torch_threads": 2},
    )
    return DiffusionEngine(config)


def request(
    prompt: str, seed: int, steps: int, guidance: float = 7.5, size: int = SIZE
) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(
        prompt, seed=seed, height=size, width=size, num_inference_steps=steps, guidance_scale=guidance
    )


def latency(eng: DiffusionEngine, req: OmniDiffusionRequest) -> float:
    return eng.submit(req).result(timeout=600).raise_for_error().timings["total"]


def head_of_line(eng: DiffusionEngine) -> tuple[float, float]:
    """(solo seconds, seconds when it arrives 0.3 s into a 60-step request) for a 4-step request."""
    solo = statistics.median(latency(eng, request("short", i, 4)) for i in range(3))
    started = threading.Event()
    remove = eng.add_progress_listener(lambda event: started.set())
    long = eng.submit(request("long", 1, 60))
    started.wait(60)
    remove()
    time.sleep(0.3)
    behind = latency(eng, request("short", 2, 4))
    long.result(timeout=600).raise_for_error()
    return solo, behind


def mixed(count: int, seed: int) -> list[OmniDiffusionRequest]:
    rng = random.Random(seed)
    return [request(f"mixed {i}", i, rng.choice(STEPS), rng.choice(GUIDANCE)) for i in range(count)]


def run_all(eng: DiffusionEngine, requests: list[OmniDiffusionRequest]) -> float:
    started = time.perf_counter()
    for future in [eng.submit(r) for r in requests]:
        future.result(timeout=600).raise_for_error()
    return time.perf_counter() - started


def mixed_vs_uniform(eng: DiffusionEngine, count: int) -> tuple[float, float, float]:
    """(mixed seconds per step, uniform seconds per step, mixed requests per second)."""
    traffic = mixed(count, seed=0)
    total_steps = sum(r.num_inference_steps or 0 for r in traffic)
    uniform_steps = round(total_steps / count)
    uniform = [request(f"uniform {i}", i, uniform_steps) for i in range(count)]
    mixed_s = run_all(eng, traffic)
    uniform_s = run_all(eng, uniform)
    return mixed_s / total_steps, uniform_s / (uniform_steps * count), count / mixed_s


def poisson(eng: DiffusionEngine, rate: float, count: int, seed: int) -> tuple[float, float, float]:
    """Open loop: mixed requests at exponential gaps; (p50 s, p99 s, completed per second)."""
    rng = random.Random(seed)
    traffic = mixed(count, seed)
    futures = []
    started = time.perf_counter()
    for req in traffic:
        futures.append(eng.submit(req))
        time.sleep(rng.expovariate(rate))
    latencies = sorted(f.result(timeout=600).raise_for_error().timings["total"] for f in futures)
    elapsed = time.perf_counter() - started
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return statistics.median(latencies), p99, count / elapsed


def no_regression(
    model: Path, eng: DiffusionEngine, sizes: tuple[int, ...], repeats: int
) -> dict[int, float]:
    """Pipeline's own call time / omni's time, one request at a time, taking turns."""
    import torch
    from diffusers import DiffusionPipeline

    pipeline = DiffusionPipeline.from_pretrained(str(model), local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    ratios = {}
    for size in sizes:
        steps = 10 if size < 512 else 4
        direct, omni = [], []
        for i in range(repeats + 1):
            started = time.perf_counter()
            with torch.inference_mode():
                pipeline(
                    prompt=["x"],
                    height=size,
                    width=size,
                    num_inference_steps=steps,
                    generator=[torch.Generator().manual_seed(i)],
                    output_type="np",
                )
            took = time.perf_counter() - started
            ours = eng.step([request("x", i, steps, size=size)])[0].raise_for_error().timings["total"]
            if i:  # the first of each is a warm-up
                direct.append(took)
                omni.append(ours)
        ratios[size] = statistics.median(direct) / statistics.median(omni)
    return ratios


@dataclass
class ModeFigures:
    """One batching mode's results, measured on one engine."""

    info: dict[str, Any]
    solo: float
    behind: float
    mixed: float
    uniform: float
    capacity: float
    poisson: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def head_of_line(self) -> float:
        return self.behind / self.solo

    @property
    def mixed_ratio(self) -> float:
        return self.mixed / self.uniform


def report(mode: str, text: str, ratio: float, target: float | None, better: str = "<=") -> None:
    """One result line; the target (step mode's) and whether it was met, where it has one."""
    goal = ""
    if target is not None:
        met = ratio <= target if better == "<=" else ratio >= target
        goal = f" (target {better} {target:g}x: {verdict(met)})"
    print(f"   {mode:7s} {text}: {ratio:.2f}x{goal}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    args = parser.parse_args()
    count = 48 if args.full else 16
    loads = (0.5, 0.8, 0.95)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_pipeline(Path(tmp) / "tiny")
        print(f"step batching benchmarks: tiny SD at {SIZE}x{SIZE}, inproc, 2 threads")
        results: dict[str, ModeFigures] = {}
        for mode in ("step", "request"):
            with engine(model, mode) as eng:
                info = eng.collective_rpc("describe")[0]["batching"]
                figures = ModeFigures(info, *head_of_line(eng), *mixed_vs_uniform(eng, count))
                results[mode] = figures
                if mode == "step":
                    step_capacity = figures.capacity
                    ratios = no_regression(model, eng, (64, 256, 512), 5 if args.full else 3)
                # Both modes get the same arrival rates: fractions of step mode's capacity.
                figures.poisson = [
                    poisson(eng, load * step_capacity, count, seed=int(load * 100)) for load in loads
                ]
        step, req = results["step"], results["request"]
        print(f"   cap: {step.info['cap_rows']} rows ({step.info['calibration']['why']})")
        print(f"   step times at load: {step.info['calibration']['step_seconds']}")
        print("1. head of line: a 4-step request 0.3 s into a 60-step one, latency / solo")
        for mode, f in results.items():
            text = f"solo {f.solo * 1e3:6.0f} ms, behind it {f.behind * 1e3:6.0f} ms"
            report(mode, text, f.head_of_line, 2.0 if mode == "step" else None)
        print(f"2. mixed traffic ({count} requests, steps {STEPS}, guidance {GUIDANCE}) / uniform, per step")
        for mode, f in results.items():
            text = (
                f"mixed {f.mixed * 1e3:5.1f} ms/step, uniform {f.uniform * 1e3:5.1f} ms/step, "
                f"{f.capacity:.1f} req/s"
            )
            report(mode, text, f.mixed_ratio, 1.2 if mode == "step" else None)
        print(f"3. Poisson arrivals of mixed requests at a fraction of step mode's {step_capacity:.1f} req/s")
        for mode, f in results.items():
            for load, (p50, p99, rate) in zip(loads, f.poisson, strict=True):
                latency = f"p50 {p50 * 1e3:6.0f} ms, p99 {p99 * 1e3:6.0f} ms"
                print(f"   {mode:7s} {load:4.0%} load: {latency}, {rate:4.1f} req/s")
        step_p50, request_p50 = step.poisson[1][0], req.poisson[1][0]
        report(
            "step",
            f"p50 at 80 % {step_p50 * 1e3:.0f} ms vs request {request_p50 * 1e3:.0f} ms",
            step_p50 / request_p50,
            0.5,
        )
        print("4. one request at a time: the pipeline's own call time / step mode's time")
        for size, ratio in ratios.items():
            report("step", f"{size}x{size}", ratio, 0.98, better=">=")
        series: dict[str, tuple[Sequence[float], Sequence[float]]] = {
            mode: ([rate for *_, rate in f.poisson], [p50 for p50, *_ in f.poisson])
            for mode, f in results.items()
        }
        save_lines(
            args.plot_dir,
            "step_batching_poisson",
            "Mixed Poisson traffic: p50 latency against throughput",
            series,
            "completed requests / s",
            "p50 latency (s)",
        )
        save_bars(
            args.plot_dir,
            "step_batching_head_of_line",
            "A 4-step request behind a 60-step one: latency / solo",
            list(results),
            [f.head_of_line for f in results.values()],
            "latency / solo time",
        )


if __name__ == "__main__":
    main()
