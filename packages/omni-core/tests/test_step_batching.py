"""Step-level batching on real pipelines: requests join and leave the running batch per step.

Every image is compared with the pipeline's own ``__call__`` (diffusers called
directly, ``omni_core.testing_pipelines``): equal 8-bit pixels for a request
alone, and within the documented last-bit tolerance (no value more than one
level off) for a request that shared its forwards with others.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omni_core import (
    DiffusionEngine,
    DiffusionOutput,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
    ProgressEvent,
)
from omni_core.models.default import default_model_path
from omni_core.runner.batching import choose_batching
from omni_core.testing import tiny_flux_model, tiny_lora
from omni_core.testing_images import fraction_of_pixels_off_by_more_than
from omni_core.testing_pipelines import direct_images, sample_image, sample_mask

__all__ = ["tiny_flux_model", "tiny_lora"]  # fixtures

IMAGE = sample_image(seed=5)
MASK = sample_mask()
WAIT = 120


class Steps:
    """The last denoising step each request reported, and events to wait on one."""

    def __init__(self, engine: DiffusionEngine) -> None:
        self.last: dict[str, int] = {}
        self._cond = threading.Condition()
        self.remove = engine.add_progress_listener(self._on_event)

    def _on_event(self, event: ProgressEvent) -> None:
        with self._cond:
            self.last[event.request_id] = event.step
            self._cond.notify_all()

    def wait_for(self, request_id: str, step: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.last.get(request_id, 0) >= step, WAIT), (
                f"{request_id} never reached step {step}"
            )


def engine_for(model: Path | str, **config: Any) -> DiffusionEngine:
    return DiffusionEngine(
        OmniDiffusionConfig(model_name_or_path=str(model), executor_class="inproc", **config)
    )


@pytest.fixture(scope="module")
def sd_engine(tiny_model: Path, tiny_lora: Path) -> Iterator[DiffusionEngine]:
    # A fixed cap (the measured one depends on the machine's load): room for every test's rows.
    loras = {"sketch": str(tiny_lora)}
    with engine_for(tiny_model, loras=loras, max_batch_size=8, calibrate_batch_cap=False) as engine:
        yield engine


def direct(model: Path | str, request: OmniDiffusionRequest, lora: Path | None = None) -> np.ndarray:
    """The pipeline's own call for ``request`` (its fields as diffusers' arguments)."""
    arguments: dict[str, Any] = {"num_inference_steps": request.num_inference_steps}
    for name in ("guidance_scale", "strength"):
        if getattr(request, name) is not None:
            arguments[name] = getattr(request, name)
    if request.height is not None or request.image is None:
        arguments.update(height=request.height or 64, width=request.width or 64)
    return direct_images(
        model,
        prompt=request.prompt,
        seed=request.seed or 0,
        image=request.image,  # type: ignore[arg-type]
        mask_image=request.mask_image,
        lora=lora,
        **arguments,
    )[0]


def within_tolerance(a: np.ndarray, b: np.ndarray) -> bool:
    """The documented tolerance for a request batched with others: no value off by more than one."""
    return fraction_of_pixels_off_by_more_than(a, b, 1) == 0


def result(future: Future[DiffusionOutput]) -> DiffusionOutput:
    return future.result(timeout=WAIT)


def test_sd_requests_joining_mid_way_equal_their_solo_images(
    sd_engine: DiffusionEngine, tiny_model: Path
) -> None:
    steps = Steps(sd_engine)
    long = OmniDiffusionRequest("a long one", seed=1, height=64, width=64, num_inference_steps=40)
    joiners = [
        OmniDiffusionRequest("fewer steps", seed=2, height=64, width=64, num_inference_steps=4),
        OmniDiffusionRequest(
            "no guidance", seed=3, height=64, width=64, num_inference_steps=6, guidance_scale=1.0
        ),
        OmniDiffusionRequest(
            "more guidance", seed=4, height=64, width=64, num_inference_steps=5, guidance_scale=9.0
        ),
        OmniDiffusionRequest("an edit", seed=5, image=IMAGE, strength=0.5, num_inference_steps=8),
        OmniDiffusionRequest(
            "inpaint", seed=6, image=IMAGE, mask_image=MASK, strength=0.9, num_inference_steps=5
        ),
    ]
    try:
        long_future = sd_engine.submit(long)
        steps.wait_for(long.request_id, 3)
        futures = [sd_engine.submit(request) for request in joiners]
        outputs = [result(f).raise_for_error() for f in futures]
        long_output = result(long_future).raise_for_error()
        # They joined the long request's batch (it was still running when they finished).
        assert all(o.timings["batch_rows"] > 2 for o in outputs)
        assert all(o.timings["total"] < long_output.timings["total"] for o in outputs)
    finally:
        steps.remove()
    for request, output in zip([long, *joiners], [long_output, *outputs], strict=True):
        assert within_tolerance(output.output[0], direct(tiny_model, request)), request.prompt


def test_a_request_alone_gives_exactly_the_pipelines_image(
    sd_engine: DiffusionEngine, tiny_model: Path
) -> None:
    request = OmniDiffusionRequest("alone", seed=9, height=64, width=64, num_inference_steps=5)
    output = sd_engine.step([request])[0].raise_for_error()
    assert output.timings["batch_rows"] == 2  # its own two guidance rows, nothing else
    assert np.array_equal(output.output[0], direct(tiny_model, request))


def test_lora_requests_batch_by_step_apart_from_plain_ones(
    sd_engine: DiffusionEngine, tiny_model: Path, tiny_lora: Path
) -> None:
    with_lora = OmniDiffusionRequest(
        "sketched", seed=3, height=64, width=64, num_inference_steps=6, lora="sketch"
    )
    plain = OmniDiffusionRequest("plain", seed=3, height=64, width=64, num_inference_steps=6)
    first, second = [
        result(f).raise_for_error() for f in [sd_engine.submit(with_lora), sd_engine.submit(plain)]
    ]
    # Another LoRA state is another group: never in one forward with the plain request.
    assert first.timings["batch_rows"] == second.timings["batch_rows"] == 2
    assert within_tolerance(first.output[0], direct(tiny_model, with_lora, lora=tiny_lora))
    assert within_tolerance(second.output[0], direct(tiny_model, plain))
    assert not np.array_equal(first.output[0], second.output[0])


def test_abort_mid_batch_drops_only_that_request(sd_engine: DiffusionEngine, tiny_model: Path) -> None:
    steps = Steps(sd_engine)
    requests = [
        OmniDiffusionRequest(f"r{i}", seed=10 + i, height=64, width=64, num_inference_steps=30)
        for i in range(3)
    ]
    try:
        futures = [sd_engine.submit(request) for request in requests]
        steps.wait_for(requests[1].request_id, 5)
        assert sd_engine.abort(requests[1].request_id)
        outputs = [result(f) for f in futures]
        aborted_at = steps.last[requests[1].request_id]
    finally:
        steps.remove()
    assert outputs[1].error_type == "RequestCancelledError"
    assert aborted_at < 30
    for request, output in (requests[0], outputs[0]), (requests[2], outputs[2]):
        output.raise_for_error()
        assert within_tolerance(output.output[0], direct(tiny_model, request))


def test_short_requests_do_not_wait_for_a_long_one_of_any_size(sd_engine: DiffusionEngine) -> None:
    steps = Steps(sd_engine)
    long = OmniDiffusionRequest("long", seed=1, height=64, width=64, num_inference_steps=60)
    same_size = OmniDiffusionRequest("short", seed=2, height=64, width=64, num_inference_steps=4)
    other_size = OmniDiffusionRequest("small", seed=3, height=32, width=32, num_inference_steps=4)
    try:
        long_future = sd_engine.submit(long)
        steps.wait_for(long.request_id, 2)
        for request in (same_size, other_size):
            result(sd_engine.submit(request)).raise_for_error()
            # Finished while the long one still ran: it started at the next step, not after it.
            assert steps.last[long.request_id] < 60, request.prompt
        result(long_future).raise_for_error()
    finally:
        steps.remove()


def test_flux_requests_join_mid_way(tiny_flux_model: Path) -> None:
    # On this CPU the measured cap for tiny Flux is 2 rows; 8 lets all three share forwards.
    with engine_for(tiny_flux_model, calibrate_batch_cap=False, max_batch_size=8) as engine:
        steps = Steps(engine)
        long = OmniDiffusionRequest("long", seed=1, height=64, width=64, num_inference_steps=20)
        short = OmniDiffusionRequest(
            "short", seed=2, height=64, width=64, num_inference_steps=3, guidance_scale=2.0
        )
        edit = OmniDiffusionRequest(
            "edit", seed=3, height=64, width=64, image=IMAGE, strength=0.7, num_inference_steps=4
        )
        try:
            long_future = engine.submit(long)
            steps.wait_for(long.request_id, 2)
            joined = [result(engine.submit(r)).raise_for_error() for r in (short, edit)]
            long_output = result(long_future).raise_for_error()
        finally:
            steps.remove()
        assert all(o.timings["batch_rows"] >= 2 for o in joined)  # Flux: one row per image, shared
        assert engine.collective_rpc("describe")[0]["batching"]["denoiser"] == "transformer"
    for request, output in zip((long, short, edit), (long_output, *joined), strict=True):
        assert within_tolerance(output.output[0], direct(tiny_flux_model, request)), request.prompt


def test_the_default_model_batches_by_step_and_matches_its_pipeline() -> None:
    """Text, image-to-image and inpainting requests of the built-in model share forwards and each
    equals its own pipeline's call."""
    from omni_core.models.shapes_render import render
    from omni_core.models.shapes_vocabulary import Scene

    model = default_model_path()
    source = render(Scene("circle", "red", "white"))
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[8:40, 8:40] = 255
    prompts = ("a red circle on a blue background", "a big yellow 7", "a small green A at the top left")
    requests = [
        OmniDiffusionRequest(prompt, seed=d, num_inference_steps=4 + d) for d, prompt in enumerate(prompts)
    ]
    requests += [
        OmniDiffusionRequest("a blue circle", image=source, strength=0.9, num_inference_steps=8, seed=5),
        OmniDiffusionRequest("a green star", image=source, mask_image=mask, num_inference_steps=6, seed=6),
    ]
    with engine_for(model) as engine:
        info = engine.collective_rpc("describe")[0]["batching"]
        outputs = [o.raise_for_error() for o in engine.step(requests)]
    assert info["mode"] == "step"
    assert info["denoiser"] == "unet"
    assert any(o.timings["batch_rows"] >= 2 for o in outputs)
    import torch

    from omni_core.models.shapes import ShapesPipeline

    pipeline = ShapesPipeline.from_pretrained(str(model))
    tasks = pipeline.omni_task_pipelines()
    for request, output in zip(requests, outputs, strict=True):
        call = {
            "num_inference_steps": request.num_inference_steps,
            "generator": [torch.Generator().manual_seed(request.seed or 0)],
            "output_type": "np",
        }
        if request.mask_image is not None:
            expected = tasks["inpaint"](
                request.prompt, image=source, mask_image=request.mask_image, **call
            ).images
        elif request.images:
            expected = tasks["image"](request.prompt, image=source, strength=request.strength, **call).images
        else:
            expected = pipeline(request.prompt, **call).images
        pixels = (np.clip(expected, 0, 1) * 255).round().astype(np.uint8)[0]
        assert within_tolerance(output.output[0], pixels), request.prompt


def test_describe_reports_the_mode_and_the_measured_cap(tiny_model: Path) -> None:
    with engine_for(tiny_model, max_batch_size=16) as engine:
        info = engine.collective_rpc("describe")[0]["batching"]
    assert info["mode"] == "step"
    calibration = info["calibration"]
    assert 1 <= info["cap_rows"] <= 32  # 16 guided images
    assert calibration["cap_rows"] == info["cap_rows"]
    assert calibration["step_seconds"]  # measured at load, by rows
    assert all(seconds > 0 for seconds in calibration["step_seconds"].values())
    with engine_for(tiny_model, batching="request") as request_mode:
        plain = request_mode.collective_rpc("describe")[0]["batching"]
    assert plain["mode"] == "request"
    assert "config.batching" in plain["reason"]


def test_only_decomposed_families_batch_by_step() -> None:
    class CustomPipeline:
        unet = object()

    class OptedIn:
        omni_step_denoiser = "transformer"

    assert choose_batching("step", {"text": CustomPipeline()}).mode == "request"
    assert "not a family" in choose_batching("step", {"text": CustomPipeline()}).reason
    assert choose_batching("step", {"text": OptedIn()}).denoiser == "transformer"


def test_batching_must_be_a_known_mode() -> None:
    with pytest.raises(ValueError, match="batching must be one of 'step', 'request', got str 'steps'"):
        OmniDiffusionConfig(batching="steps")


@pytest.mark.parametrize("family", ["sdxl", "sd3", "pixart"])
def test_other_families_join_mid_way_and_match_their_pipeline(
    family: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from omni_core.models.tiny_families import BUILDERS

    model = BUILDERS[family](tmp_path_factory.mktemp("models") / family)
    long = OmniDiffusionRequest("long", seed=1, height=64, width=64, num_inference_steps=16)
    joiners = [
        OmniDiffusionRequest("short", seed=2, height=64, width=64, num_inference_steps=3, guidance_scale=2.0)
    ]
    if family != "pixart":  # diffusers derives no image-to-image pipeline for PixArt
        joiners.append(OmniDiffusionRequest("edit", seed=3, image=IMAGE, strength=0.7, num_inference_steps=4))
    with engine_for(model, calibrate_batch_cap=False) as engine:
        assert engine.collective_rpc("describe")[0]["batching"]["mode"] == "step"
        steps = Steps(engine)
        try:
            long_future = engine.submit(long)
            steps.wait_for(long.request_id, 2)
            joined = [result(engine.submit(r)).raise_for_error() for r in joiners]
            long_output = result(long_future).raise_for_error()
        finally:
            steps.remove()
    assert all(o.timings["batch_rows"] == 4 for o in joined)  # beside the long request's two rows
    for request, output in zip((long, *joiners), (long_output, *joined), strict=True):
        assert within_tolerance(output.output[0], direct(model, request)), request.prompt
