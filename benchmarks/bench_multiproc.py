"""Benchmarks for the multiprocess executor; ratios against baselines measured in this run.

1. Overhead: one worker (2 threads) vs calling the same diffusers pipeline
   directly in this process (2 threads), sequential requests at 64², 256²,
   512², the two paths alternating request by request: throughput ratio
   (direct median / omni median) and per-request overhead in ms.
2. Scaling: 2 workers x 1 thread vs 1 worker x 1 thread on the same queue of
   requests (batching off, so only process parallelism is measured).
3. Image transport: shared memory vs pickling through the pipe, for the
   same batches sent by a real child process.

Run: ``nox -s benchmarks`` (short run) or ``nox -s benchmarks -- --full``.
Figures go to stdout and, with ``--json PATH``, to a file.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from _plot import save_bars
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest

STEPS = 4


def request(size: int, seed: int) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(
        prompt="a benchmark", height=size, width=size, num_inference_steps=STEPS, seed=seed
    )


class DirectPipeline:
    """The baseline: the same diffusers pipeline called directly, as a user would."""

    def __init__(self, model: Path) -> None:
        import torch
        from diffusers import DiffusionPipeline

        torch.set_num_threads(2)
        self.torch = torch
        self.pipe = DiffusionPipeline.from_pretrained(model, local_files_only=True)
        self.pipe.set_progress_bar_config(disable=True)

    def run(self, size: int, seed: int) -> None:
        generator = self.torch.Generator().manual_seed(seed)
        with self.torch.inference_mode():
            result = self.pipe(
                "a benchmark",
                height=size,
                width=size,
                num_inference_steps=STEPS,
                generator=[generator],
                output_type="np",
            )
        (np.clip(result.images, 0, 1) * 255).round().astype(np.uint8)


def interleaved_medians(
    direct: DirectPipeline, engine: DiffusionEngine, size: int, count: int
) -> tuple[float, float]:
    """Median seconds per request for each path, alternating them so drift hits both alike."""
    direct.run(size, 999)
    engine.step([request(size, 999)])
    direct_times, omni_times = [], []
    for seed in range(count):
        started = time.perf_counter()
        direct.run(size, seed)
        direct_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        engine.step([request(size, seed)])[0].raise_for_error()
        omni_times.append(time.perf_counter() - started)
    return statistics.median(direct_times), statistics.median(omni_times)


def time_engine_throughput(engine: DiffusionEngine, size: int, count: int) -> float:
    engine.step([request(size, 999)])
    started = time.perf_counter()
    futures = [engine.submit(request(size, seed)) for seed in range(count)]
    for future in futures:
        future.result().raise_for_error()
    return count / (time.perf_counter() - started)


def mp_engine(
    model: Path, workers: int, threads: int, max_batch_size: int = 8, **options: Any
) -> DiffusionEngine:
    return DiffusionEngine(
        OmniDiffusionConfig(
            model_name_or_path=str(model),
            executor_class="mp",
            max_batch_size=max_batch_size,
            executor_options={"num_workers": workers, "threads_per_worker": threads, **options},
        )
    )


def bench_overhead(model: Path, full: bool) -> list[dict[str, float]]:
    counts = {64: 60, 256: 20, 512: 6} if full else {64: 10, 256: 4, 512: 2}
    rows = []
    baseline = DirectPipeline(model)
    with mp_engine(model, workers=1, threads=2) as engine:
        for size, count in counts.items():
            direct, omni = interleaved_medians(baseline, engine, size, count)
            rows.append(
                {
                    "size": size,
                    "direct_ms": direct * 1e3,
                    "omni_ms": omni * 1e3,
                    "throughput_ratio": direct / omni,
                    "overhead_ms": (omni - direct) * 1e3,
                }
            )
            print(
                f"  {size}x{size}: direct {direct * 1e3:8.1f} ms  omni mp(1 worker) {omni * 1e3:8.1f} ms  "
                f"throughput ratio {direct / omni:5.3f}  overhead {(omni - direct) * 1e3:+6.2f} ms/request"
            )
    return rows


def bench_scaling(model: Path, full: bool) -> dict[str, float]:
    size, count = (256, 48) if full else (128, 16)
    with mp_engine(model, workers=1, threads=1, max_batch_size=1) as one:
        single = time_engine_throughput(one, size, count)
    with mp_engine(model, workers=2, threads=1, max_batch_size=1) as two:
        double = time_engine_throughput(two, size, count)
    print(
        f"  {size}x{size}, {count} requests: 1 worker x 1 thread {single:6.2f} req/s, "
        f"2 workers x 1 thread {double:6.2f} req/s, ratio {double / single:5.2f} "
        f"(target >= 1.7: {verdict(double / single >= 1.7)})"
    )
    return {"size": size, "one_worker_rps": single, "two_workers_rps": double, "ratio": double / single}


def _transport_child(
    conn: Connection, transport: str, shape: tuple[int, ...], batches: int, per_batch: int
) -> None:
    from omni_executor_multiproc.transport import pack_images

    rng = np.random.default_rng(0)
    images = [[rng.integers(0, 256, shape, dtype=np.uint8)] for _ in range(per_batch)]
    conn.send("ready")
    conn.recv()
    for _ in range(batches):
        conn.send(pack_images(images, transport))
    conn.close()


def bench_transport(full: bool) -> list[dict[str, float]]:
    from omni_executor_multiproc.transport import unpack_images

    batches = 40 if full else 8
    rows = []
    for side, per_batch in ((64, 8), (512, 8), (1024, 4)):
        shape = (side, side, 3)
        seconds = {}
        for transport in ("pipe", "shm"):
            context = multiprocessing.get_context("spawn")
            parent, child = context.Pipe()
            process = context.Process(
                target=_transport_child, args=(child, transport, shape, batches, per_batch)
            )
            process.start()
            child.close()
            assert parent.recv() == "ready"
            parent.send("go")
            started = time.perf_counter()
            for _ in range(batches):
                unpack_images(parent.recv())
            seconds[transport] = (time.perf_counter() - started) / batches
            process.join()
        mb = side * side * 3 * per_batch / 1e6
        rows.append(
            {
                "image": side,
                "batch_mb": mb,
                "pipe_ms": seconds["pipe"] * 1e3,
                "shm_ms": seconds["shm"] * 1e3,
                "shm_speedup": seconds["pipe"] / seconds["shm"],
            }
        )
        print(
            f"  {per_batch} x {side}x{side} ({mb:5.1f} MB/batch): pipe {seconds['pipe'] * 1e3:7.2f} ms  "
            f"shm {seconds['shm'] * 1e3:7.2f} ms  shm speedup {seconds['pipe'] / seconds['shm']:5.2f}x"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="more sizes and repeats (slower)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    args = parser.parse_args()
    from omni_core.models.tiny import build_tiny_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_pipeline(Path(tmp) / "tiny")
        print(f"multiproc benchmarks on the tiny model, {STEPS} steps, {os.cpu_count()} CPU cores")
        print("1. one worker vs the diffusers pipeline called directly (sequential requests)")
        overhead = bench_overhead(model, args.full)
        print("2. process scaling on this machine")
        scaling = bench_scaling(model, args.full)
    print("3. image transport from a worker: pickled through the pipe vs shared memory")
    transport = bench_transport(args.full)
    save_bars(
        args.plot_dir,
        "multiproc",
        "mp (1 worker) throughput / diffusers called directly",
        [f"{r['size']}²" for r in overhead],
        [r["throughput_ratio"] for r in overhead],
        "ratio (1.0 = no overhead)",
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "overhead": overhead,
                    "scaling": scaling,
                    "transport": transport,
                    "median_overhead_ms": statistics.median(r["overhead_ms"] for r in overhead),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
