"""Requests and outputs are plain JSON-safe data; validation names the field."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from omni_core import (
    DiffusionOutput,
    OmniDiffusionRequest,
    RequestLimits,
    RequestValidationError,
    validate_request,
)


def test_request_round_trips_through_json() -> None:
    request = OmniDiffusionRequest(
        prompt="a 7",
        negative_prompt="blur",
        height=64,
        width=32,
        num_inference_steps=4,
        guidance_scale=3.5,
        seed=9,
        num_outputs_per_prompt=2,
        priority=-1,
        deadline=1e9,
        tenant="t",
    )
    assert OmniDiffusionRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


def test_output_round_trips_images_and_latents_through_json() -> None:
    rng = np.random.default_rng(0)
    output = DiffusionOutput(
        request_id="r1",
        output=[rng.integers(0, 256, (16, 8, 3), dtype=np.uint8) for _ in range(2)],
        seed=3,
        trajectory_latents=rng.standard_normal((2, 1, 4, 2, 1)).astype(np.float32),
        trajectory_timesteps=[999.0, 500.0],
        timings={"inference": 0.5},
    )
    back = DiffusionOutput.from_dict(json.loads(json.dumps(output.to_dict())))
    assert back == output
    assert back.trajectory_latents is not None
    assert np.array_equal(back.trajectory_latents, output.trajectory_latents)
    assert back.trajectory_timesteps == [999.0, 500.0]
    assert back.timings == {"inference": 0.5}


def test_unknown_field_is_named() -> None:
    with pytest.raises(RequestValidationError, match=r"promt: is not a request field") as refused:
        OmniDiffusionRequest.from_dict({"promt": "x"})
    assert refused.value.field == "promt"


def test_array_dtype_allow_list_refuses_objects() -> None:
    data = DiffusionOutput(request_id="r").to_dict()
    data["trajectory_latents"] = {"dtype": "object", "shape": [1], "data": ""}
    with pytest.raises(ValueError, match="not allowed"):
        DiffusionOutput.from_dict(data)


LIMITS = RequestLimits(max_image_pixels=512 * 512, max_num_inference_steps=50, max_outputs_per_prompt=4)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prompt": 5}, "prompt"),
        ({"prompt": "  "}, "prompt"),
        ({"prompt": "x" * 5000}, "prompt"),
        ({"negative_prompt": 1}, "negative_prompt"),
        ({"height": 60}, "height"),
        ({"width": -8}, "width"),
        ({"width": 64.0}, "width"),
        ({"height": 1024, "width": 1024}, "size"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 51}, "num_inference_steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"num_outputs_per_prompt": 0}, "num_outputs_per_prompt"),
        ({"num_outputs_per_prompt": 5}, "num_outputs_per_prompt"),
        ({"priority": "high"}, "priority"),
    ],
)
def test_validation_names_the_field(changes: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = {"prompt": "ok", **changes}
    with pytest.raises(RequestValidationError) as info:
        validate_request(OmniDiffusionRequest(**fields), LIMITS)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_valid_request_passes() -> None:
    validate_request(OmniDiffusionRequest(prompt="ok", height=512, width=512, num_inference_steps=50), LIMITS)
