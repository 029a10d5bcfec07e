"""Hostile requests through the in-process executor (the runner every entry point ends in).

Each case is refused with a validation error naming its field before the model runs;
a good request still succeeds after each; images that would cost seconds to decode
are refused from their structure, and phones' MPO JPEGs are read as JPEG.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest, RequestValidationError
from omni_core.images import decode_input_image, encode_png
from omni_core.testing import tiny_lora
from omni_core.testing_hostile import (
    HOSTILE_EXTRAS,
    HOSTILE_LORA_SCALES,
    HostileExtra,
    jpeg_with_markers,
    mpo_jpeg,
    png_16bit,
    png_with_chunks,
    progressive_jpeg_with_empty_scans,
)
from omni_core.testing_pipelines import sample_image

__all__ = ["tiny_lora"]  # fixture

GOOD = {"prompt": "a 7", "seed": 3, "num_inference_steps": 2, "height": 64, "width": 64}


@pytest.fixture(scope="module")
def engine(tiny_model: Path, tiny_lora: Path) -> Iterator[DiffusionEngine]:
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), executor_class="inproc", loras={"sketch": str(tiny_lora)}
    )
    with DiffusionEngine(config) as engine:
        yield engine


def run(engine: DiffusionEngine, **fields: object) -> object:
    return engine.step([OmniDiffusionRequest(**{**GOOD, **fields})])[0]


@pytest.mark.parametrize("case", HOSTILE_EXTRAS, ids=[case.label for case in HOSTILE_EXTRAS])
def test_hostile_pipeline_arguments_fail_alone_naming_the_argument(
    engine: DiffusionEngine, case: HostileExtra
) -> None:
    bad, good = engine.step(
        [OmniDiffusionRequest(**GOOD, extra=case.extra), OmniDiffusionRequest(**GOOD)]  # type: ignore[arg-type]
    )
    assert bad.error_type == "RequestValidationError", (case.label, bad.error)
    assert bad.error_field == case.field, (case.label, bad.error)
    assert good.error is None
    assert good.output[0].shape == (64, 64, 3)


def test_the_step_cap_counts_custom_timesteps(engine: DiffusionEngine) -> None:
    capped = run(engine, extra={"timesteps": list(range(201, 0, -1))})
    assert capped.error_field == "extra.timesteps"  # type: ignore[attr-defined]
    assert "over the limit of 200" in capped.error  # type: ignore[attr-defined]
    # Within the cap: the tiny model's scheduler (PNDM) takes no custom timesteps, said before it runs.
    short = run(engine, extra={"timesteps": [900, 500, 100]})
    assert short.error_field == "extra.timesteps"  # type: ignore[attr-defined]
    assert "takes no custom timesteps" in short.error  # type: ignore[attr-defined]


@pytest.mark.parametrize("scale", HOSTILE_LORA_SCALES)
def test_lora_scale_past_the_configured_range_is_refused(engine: DiffusionEngine, scale: float) -> None:
    output = run(engine, lora="sketch", lora_scale=scale)
    assert output.error_field == "lora_scale", output.error  # type: ignore[attr-defined]
    assert "max_lora_scale" in output.error  # type: ignore[attr-defined]
    assert run(engine, lora="sketch", lora_scale=4.0).error is None  # type: ignore[attr-defined]


def test_a_pipeline_refusing_its_arguments_before_denoising_is_the_requests_400(
    engine: DiffusionEngine,
) -> None:
    # clip_skip 40 is in range for a real CLIP (up to 48 layers) but the tiny text encoder has 2:
    # diffusers indexes past its hidden states while encoding the prompt, before the first step.
    output = run(engine, extra={"clip_skip": 40})
    assert output.error_type == "RequestValidationError", output.error  # type: ignore[attr-defined]
    assert output.error_field == "extra.clip_skip", output.error  # type: ignore[attr-defined]
    assert "before denoising" in output.error  # type: ignore[attr-defined]


def test_the_same_refusal_in_request_mode(tiny_model: Path) -> None:
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), executor_class="inproc", batching="request"
    )
    with DiffusionEngine(config) as engine:
        output = run(engine, extra={"clip_skip": 40})
        assert output.error_field == "extra.clip_skip", output.error  # type: ignore[attr-defined]
        assert run(engine).error is None  # type: ignore[attr-defined]


def test_errors_never_show_the_models_path(engine: DiffusionEngine, tiny_model: Path) -> None:
    unknown = run(engine, extra={"not_an_argument": 1})
    assert str(tiny_model) not in unknown.error  # type: ignore[attr-defined]
    assert "StableDiffusionPipeline" in unknown.error  # type: ignore[attr-defined]


def test_extra_allowed_naming_an_unsupported_argument_fails_when_the_config_is_read() -> None:
    with pytest.raises(ValueError, match="padding_mask_crop"):
        OmniDiffusionConfig(extra_allowed=["padding_mask_crop"])


EXPENSIVE_IMAGES = {
    "progressive JPEG, 20000 empty scans": progressive_jpeg_with_empty_scans(),
    "PNG, 600000 empty chunks": png_with_chunks(),
    "JPEG, 2000000 comment markers": jpeg_with_markers(),
    "16-bit RGB PNG": png_16bit(channels=3),
    "16-bit RGBA PNG": png_16bit(channels=4),
}


@pytest.mark.parametrize("data", EXPENSIVE_IMAGES.values(), ids=list(EXPENSIVE_IMAGES))
def test_costly_or_lossy_images_are_refused_from_their_structure_in_milliseconds(data: bytes) -> None:
    started = time.process_time()
    with pytest.raises(RequestValidationError) as refused:
        decode_input_image(data, "image")
    assert refused.value.field == "image"
    assert time.process_time() - started < 0.5  # without the checks: 3.8 to 5.2 s each


def test_a_wire_request_with_a_hostile_image_names_the_field() -> None:
    for field in ("image", "mask_image"):
        payload = {"prompt": "a 7", "image": base64.b64encode(encode_png(sample_image(seed=5))).decode()}
        payload[field] = base64.b64encode(png_16bit()).decode()
        with pytest.raises(RequestValidationError) as refused:
            OmniDiffusionRequest.from_dict(payload)
        assert refused.value.field == field


def test_an_mpo_jpeg_from_a_phone_is_read_as_its_first_frame() -> None:
    image = sample_image(seed=5)
    decoded = np.asarray(decode_input_image(mpo_jpeg(image), "image").convert("RGB"))
    assert decoded.shape == image.shape
    # JPEG is lossy; the first frame (not the mirrored second one) is what comes back.
    first_error = np.abs(decoded.astype(int) - image).mean()
    mirrored_error = np.abs(decoded.astype(int) - image[:, ::-1]).mean()
    assert first_error < mirrored_error / 2


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), True, "4"])
def test_max_lora_scale_must_be_a_finite_positive_number(value: object) -> None:
    with pytest.raises(ValueError, match="max_lora_scale"):
        OmniDiffusionConfig(max_lora_scale=value)  # type: ignore[arg-type]
