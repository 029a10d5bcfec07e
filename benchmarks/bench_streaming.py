"""Streaming overhead: the same request streamed with 0 and 3 previews against it unstreamed.

A local ``omni serve`` (in-process executor) and plain HTTP from here (httpx, one request at a
time, alternating the three kinds request by request so drift hits them alike); 256x256, 20
steps. Models: the built-in default (its previews are its exact x0, folded pixels) and the tiny
random Stable Diffusion (latents, previews through the fitted linear latent-to-RGB map).
Reports the median time of each kind, the overhead of streaming with 3 previews (target <= 5 %)
and the time to the first partial image against the whole request's.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_streaming.py [--full]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _targets import verdict

from omni_core.models.default import SHIPPED_MODEL
from omni_executor_http.testing import run_server

SIZE = "256x256"
STEPS = 20


def once(client: httpx.Client, seed: int, previews: int | None) -> tuple[float, float | None]:
    """(seconds for the whole answer, seconds to the first partial image or None)."""
    body: dict[str, object] = {"prompt": "a red circle on a blue background", "size": SIZE}
    body.update({"num_inference_steps": STEPS, "seed": seed})
    started = time.perf_counter()
    if previews is None:
        response = client.post("/v1/images/generations", json=body)
        response.raise_for_status()
        return time.perf_counter() - started, None
    body.update({"stream": True, "partial_images": previews})
    first: float | None = None
    with client.stream("POST", "/v1/images/generations", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith("event: image_generation.partial_image"):
                first = time.perf_counter() - started
    return time.perf_counter() - started, first


def measure(model: Path, tmp: Path, count: int, label: str) -> None:
    with run_server(model, tmp=tmp) as server, httpx.Client(base_url=server.url, timeout=300) as client:
        for kind in (None, 0, 3):
            once(client, 999, kind)  # warm up every path
        plain, stream0, stream3, first = [], [], [], []
        for seed in range(count):
            plain.append(once(client, seed, None)[0])
            stream0.append(once(client, seed, 0)[0])
            total, to_first = once(client, seed, 3)
            stream3.append(total)
            if to_first is not None:
                first.append(to_first)
    base, zero, three = (statistics.median(values) for values in (plain, stream0, stream3))
    overhead = three / base - 1
    print(f"{label}, {SIZE}, {STEPS} steps, {count} requests each (medians)")
    print(f"  unstreamed {base * 1e3:7.1f} ms")
    print(f"  streamed, 0 previews {zero * 1e3:7.1f} ms ({zero / base - 1:+.1%})")
    print(
        f"  streamed, 3 previews {three * 1e3:7.1f} ms "
        f"({overhead:+.1%}; target <= 5 %: {verdict(overhead <= 0.05)})"
    )
    if first:
        to_first = statistics.median(first)
        print(f"  first partial image after {to_first * 1e3:7.1f} ms = {to_first / three:.0%} of the request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="accepted for the benchmarks session; no charts")
    args = parser.parse_args()
    count = 30 if args.full else 8
    from omni_core.models.tiny import build_tiny_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        measure(SHIPPED_MODEL, Path(tmp), count, "built-in model (pixels, exact previews)")
        tiny = build_tiny_pipeline(Path(tmp) / "tiny")
        measure(tiny, Path(tmp), count, "tiny Stable Diffusion (latents, linear-map previews)")


if __name__ == "__main__":
    main()
