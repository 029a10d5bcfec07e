"""Preview images from the step loop: ``partial_images`` and ``engine.submit(on_progress=...)``.

Real pipelines (the built-in digits model, pixel space, whose previews are its exact x0; the
tiny Stable Diffusion, whose previews go through the fitted latent-to-RGB map), the real
in-process executor in both request and step batching modes.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from omni_core import (
    DiffusionEngine,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
    ProgressEvent,
    RequestLimits,
    RequestValidationError,
    validate_request,
)
from omni_core.previews import preview_steps


class Collector:
    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self.events.append(event)

    @property
    def previews(self) -> list[ProgressEvent]:
        return [event for event in self.events if event.preview is not None]


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_preview_steps_are_evenly_spaced_before_the_last_step() -> None:
    assert preview_steps(20, 3) == [5, 10, 15]
    assert preview_steps(8, 2) == [2, 5]
    assert preview_steps(4, 3) == [1, 2, 3]
    assert preview_steps(2, 3) == [1]  # fewer steps than previews: fewer previews
    assert preview_steps(1, 3) == []
    assert preview_steps(20, 0) == []


@pytest.mark.parametrize("batching", ["request", "step"])
def test_default_model_previews_approach_the_final_image(batching: str) -> None:
    config = OmniDiffusionConfig(model_name_or_path=None, executor_class="inproc", batching=batching)
    prompt = "a handwritten 3"
    with DiffusionEngine(config) as engine:
        collector = Collector()
        asked = OmniDiffusionRequest(prompt, num_inference_steps=8, seed=3, partial_images=3)
        final = engine.submit(asked, on_progress=collector).result().raise_for_error().output[0]
        plain = engine.step([OmniDiffusionRequest(prompt, num_inference_steps=8, seed=3)])[0]
    previews = collector.previews
    assert [event.step for event in previews] == [2, 4, 6]
    assert [event.preview.index for event in previews if event.preview] == [0, 1, 2]
    assert all(event.request_id == asked.request_id for event in collector.events)
    images = [event.preview.images[0] for event in previews if event.preview]
    assert all(image.shape == (64, 64, 3) and image.dtype == np.uint8 for image in images)
    gaps = [distance(image, final) for image in images]
    assert gaps[-1] < gaps[0], gaps
    # Asking for previews changes nothing in the result.
    np.testing.assert_array_equal(final, plain.raise_for_error().output[0])


def test_previews_of_every_image_at_the_requested_size() -> None:
    config = OmniDiffusionConfig(model_name_or_path=None, executor_class="inproc")
    with DiffusionEngine(config) as engine:
        collector = Collector()
        request = OmniDiffusionRequest(
            "a handwritten 5", height=96, width=80, num_outputs_per_prompt=2, seed=1, partial_images=1
        )
        engine.submit(request, on_progress=collector).result().raise_for_error()
    (event,) = collector.previews
    assert event.preview is not None
    assert [image.shape for image in event.preview.images] == [(96, 80, 3), (96, 80, 3)]


def test_latent_pipeline_previews_through_the_linear_map(tiny_model: Path) -> None:
    config = OmniDiffusionConfig(model_name_or_path=str(tiny_model), executor_class="inproc")
    with DiffusionEngine(config) as engine:
        collector = Collector()
        request = OmniDiffusionRequest(
            "a cat", height=64, width=64, num_inference_steps=6, seed=0, partial_images=2
        )
        final = engine.submit(request, on_progress=collector).result().raise_for_error().output[0]
    images = [event.preview.images[0] for event in collector.previews if event.preview]
    assert len(images) == 2
    assert all(image.shape == final.shape for image in images)
    assert not np.array_equal(images[0], images[1])


def test_no_previews_unless_asked_and_only_to_the_asking_request() -> None:
    config = OmniDiffusionConfig(model_name_or_path=None, executor_class="inproc")
    with DiffusionEngine(config) as engine:
        quiet, loud = Collector(), Collector()
        first = engine.submit(OmniDiffusionRequest("a 3", seed=1), on_progress=quiet)
        second = engine.submit(OmniDiffusionRequest("a 4", seed=2, partial_images=2), on_progress=loud)
        first.result().raise_for_error()
        second.result().raise_for_error()
    assert quiet.events, "every step is reported"
    assert not quiet.previews
    assert len(loud.previews) == 2
    assert {event.request_id for event in loud.events} == {loud.events[0].request_id}


@pytest.mark.parametrize("value", [-1, 4, 2.0, True])
def test_partial_images_out_of_range_names_the_field(value: object) -> None:
    request = OmniDiffusionRequest("a 3", partial_images=value)  # type: ignore[arg-type]
    with pytest.raises(RequestValidationError) as caught:
        validate_request(request, RequestLimits())
    assert caught.value.field == "partial_images"
