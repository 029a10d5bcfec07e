"""Image-to-image, inpainting, pipeline arguments and LoRA through the in-process executor.

Each image is compared with what diffusers gives when called directly
(``omni_core.testing_pipelines``): the same 8-bit pixels, or the request's
error naming its field before anything ran.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest, RequestValidationError
from omni_core.runner.batching import PlannedRequest, plan_batches
from omni_core.testing import tiny_flux_model, tiny_lora
from omni_core.testing_images import fraction_of_pixels_off_by_more_than
from omni_core.testing_pipelines import direct_images, sample_image, sample_mask

__all__ = ["tiny_flux_model", "tiny_lora"]  # fixtures

IMAGE = sample_image(seed=5)
MASK = sample_mask()


def engine_for(model: Path, **config: Any) -> DiffusionEngine:
    return DiffusionEngine(
        OmniDiffusionConfig(model_name_or_path=str(model), executor_class="inproc", **config)
    )


@pytest.fixture(scope="module")
def sd_engine(tiny_model: Path, tiny_lora: Path) -> Iterator[DiffusionEngine]:
    loras = {"sketch": str(tiny_lora), "sketch-soft": {"path": str(tiny_lora), "scale": 0.4}}
    with engine_for(tiny_model, loras=loras, max_loaded_loras=1) as engine:
        yield engine


def one_image(engine: DiffusionEngine, **fields: Any) -> np.ndarray:
    output = engine.step([OmniDiffusionRequest(**{"prompt": "a 7", "seed": 3, **fields})])[0]
    return output.raise_for_error().output[0]


@pytest.mark.parametrize("family", ["stable-diffusion", "flux"])
def test_image_to_image_and_inpainting_equal_the_derived_pipeline(
    family: str, tiny_model: Path, tiny_flux_model: Path
) -> None:
    model = tiny_model if family == "stable-diffusion" else tiny_flux_model
    # SD's image-to-image call takes its size from the image; Flux's wants it said.
    size: dict[str, Any] = {} if family == "stable-diffusion" else {"height": 64, "width": 64}
    with engine_for(model) as engine:
        edited = one_image(engine, image=IMAGE, strength=0.6, num_inference_steps=4)
        inpainted = one_image(engine, image=IMAGE, mask_image=MASK, strength=0.9, num_inference_steps=4)
        generated = one_image(engine, height=64, width=64, num_inference_steps=4)
    common = {"prompt": "a 7", "seed": 3, "num_inference_steps": 4}
    assert np.array_equal(edited, direct_images(model, image=IMAGE, strength=0.6, **size, **common)[0])
    assert np.array_equal(
        inpainted,
        direct_images(model, image=IMAGE, mask_image=MASK, strength=0.9, height=64, width=64, **common)[0],
    )
    # Conditioning matters: each differs from the others and from plain text-to-image.
    assert not np.array_equal(edited, generated)
    assert not np.array_equal(inpainted, edited)
    # Inpainting keeps what the mask keeps: the border stays nearer the source than the hole.
    keep = MASK == 0
    border_error = np.abs(inpainted.astype(int) - IMAGE.astype(int))[keep].mean()
    hole_error = np.abs(inpainted.astype(int) - IMAGE.astype(int))[~keep].mean()
    assert border_error < hole_error


def test_an_edit_keeps_the_image_size_or_resizes_to_the_requested_one(sd_engine: DiffusionEngine) -> None:
    wide = sample_image(seed=2, size=64)[:48]  # 64 wide, 48 high
    assert one_image(sd_engine, image=wide, num_inference_steps=2).shape == (48, 64, 3)
    assert one_image(sd_engine, image=wide, height=32, width=32, num_inference_steps=2).shape == (32, 32, 3)


def test_several_images_are_each_edited_n_times(sd_engine: DiffusionEngine) -> None:
    second = sample_image(seed=6)
    request = OmniDiffusionRequest(
        "a 7", image=[IMAGE, second], num_outputs_per_prompt=2, seed=3, num_inference_steps=2
    )
    output = sd_engine.step([request])[0].raise_for_error()
    assert len(output.output) == 4
    # Image-major order, one seed per output image: the third is the second image's first edit.
    alone = one_image(sd_engine, image=second, seed=3 + 2, num_inference_steps=2)
    assert fraction_of_pixels_off_by_more_than(output.output[2], alone, 1) == 0
    assert not np.array_equal(output.output[0], output.output[2])


def test_a_model_without_an_image_pipeline_names_what_it_supports() -> None:
    config = OmniDiffusionConfig(model_name_or_path="digits-v1", executor_class="inproc")
    with DiffusionEngine(config) as engine:
        output = engine.step([OmniDiffusionRequest("a 7", image=IMAGE, seed=1)])[0]
    assert output.error_type == "RequestValidationError"
    assert output.error_field == "image"
    assert "DigitsPipeline" in output.error
    assert "supports: text-to-image" in output.error


def test_extra_reaches_the_pipeline_call(sd_engine: DiffusionEngine, tiny_model: Path) -> None:
    # DDIM's eta adds fresh noise per step: a real change, and the same one diffusers makes.
    with_eta = one_image(sd_engine, height=64, width=64, num_inference_steps=3, extra={"eta": 1.0})
    direct = direct_images(
        tiny_model, prompt="a 7", seed=3, height=64, width=64, num_inference_steps=3, eta=1.0
    )
    assert np.array_equal(with_eta, direct[0])
    assert not np.array_equal(with_eta, one_image(sd_engine, height=64, width=64, num_inference_steps=3))


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"etaa": 1.0}, "extra.etaa", "it accepts: clip_skip, eta, guidance_rescale"),
        ({"generator": 1}, "extra.generator", "use seed"),
        ({"num_images_per_prompt": 2}, "extra.num_images_per_prompt", "num_outputs_per_prompt"),
        ({"latents": [0.0]}, "extra.latents", "extra_denied"),
        ({"eta": float("nan")}, "extra.eta", "finite"),
        ({"eta": {1, 2}}, "extra.eta", "JSON value"),
        ({"eta": np.float32(1.0)}, "extra.eta", "JSON value"),
        ({"clip_skip": [[[[[[[[[[1]]]]]]]]]]}, "extra.clip_skip", "deeper"),
    ],
)
def test_bad_extra_fails_alone_naming_the_argument(
    sd_engine: DiffusionEngine, extra: dict[str, Any], field: str, words: str
) -> None:
    bad = OmniDiffusionRequest("a 7", seed=1, height=64, width=64, num_inference_steps=2, extra=extra)
    good = OmniDiffusionRequest("a 7", seed=1, height=64, width=64, num_inference_steps=2)
    failed, succeeded = sd_engine.step([bad, good])
    assert (failed.error_type, failed.error_field) == ("RequestValidationError", field)
    assert words in failed.error
    assert succeeded.ok


def test_the_operator_allow_list_limits_extra(tiny_model: Path) -> None:
    with engine_for(tiny_model, extra_allowed=["guidance_rescale"]) as engine:
        refused = engine.step([OmniDiffusionRequest("a 7", height=64, width=64, extra={"eta": 1.0})])[0]
        allowed = engine.step(
            [
                OmniDiffusionRequest(
                    "a 7", height=64, width=64, num_inference_steps=2, extra={"guidance_rescale": 0.5}
                )
            ]
        )[0]
    assert refused.error_field == "extra.eta"
    assert "extra_allowed" in refused.error
    assert allowed.ok, allowed.error


def test_only_requests_with_equal_extras_lora_and_conditioning_batch_together() -> None:
    def planned(index: int, **fields: Any) -> PlannedRequest:
        request = OmniDiffusionRequest("a", seed=index, **fields)
        return PlannedRequest(index, request, 64, 64, 2, None, index)

    batches = plan_batches(
        [
            planned(0, extra={"eta": 1.0, "clip_skip": 1}),
            planned(1, extra={"clip_skip": 1, "eta": 1.0}),  # same arguments, other order
            planned(2, extra={"eta": 0.5}),
            planned(3),
            planned(4, lora="sketch"),
            planned(5, lora="sketch", lora_scale=0.5),
            planned(6, image=IMAGE),
            planned(7, image=IMAGE, strength=0.5),
            planned(8, image=IMAGE, mask_image=MASK),
            planned(9, image=sample_image(seed=9)),
        ],
        max_batch_images=8,
    )
    assert [[item.index for item in batch] for batch in batches] == [
        [0, 1],
        [2],
        [3],
        [4],
        [5],
        [6, 9],
        [7],
        [8],
    ]


def test_a_lora_changes_the_image_repeatably_and_leaves_the_base_model(
    sd_engine: DiffusionEngine, tiny_model: Path, tiny_lora: Path
) -> None:
    fields: dict[str, Any] = {"height": 64, "width": 64, "num_inference_steps": 3}
    base = one_image(sd_engine, **fields)
    styled = one_image(sd_engine, lora="sketch", **fields)
    assert not np.array_equal(base, styled)
    assert np.array_equal(styled, one_image(sd_engine, lora="sketch", **fields))
    assert np.array_equal(base, one_image(sd_engine, **fields))
    assert np.array_equal(
        styled, direct_images(tiny_model, prompt="a 7", seed=3, lora=tiny_lora, **fields)[0]
    )
    # A second adapter past max_loaded_loras=1 evicts the first; each still draws its own image.
    soft = one_image(sd_engine, lora="sketch-soft", **fields)
    assert not np.array_equal(soft, styled)
    assert not np.array_equal(soft, base)
    assert np.array_equal(soft, one_image(sd_engine, lora="sketch", lora_scale=0.4, **fields))
    assert np.array_equal(styled, one_image(sd_engine, lora="sketch", **fields))
    assert sd_engine.collective_rpc("describe")[0]["loras_loaded"] == ["sketch"]
    # LoRA applies to the derived pipelines too (they share the UNet).
    assert not np.array_equal(
        one_image(sd_engine, image=IMAGE, num_inference_steps=3),
        one_image(sd_engine, image=IMAGE, num_inference_steps=3, lora="sketch"),
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"lora": "/etc/passwd"}, "lora"),
        ({"lora_scale": 0.5}, "lora_scale"),
        ({"lora": "sketch", "lora_scale": float("inf")}, "lora_scale"),
    ],
)
def test_lora_names_only_what_the_operator_configured(
    sd_engine: DiffusionEngine, fields: dict[str, Any], field: str
) -> None:
    output = sd_engine.step([OmniDiffusionRequest("a 7", height=64, width=64, **fields)])[0]
    assert (output.error_type, output.error_field) == ("RequestValidationError", field)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"image": IMAGE.astype(np.float32)}, "image", "uint8"),
        ({"image": IMAGE[:, :, 0]}, "image", "(height, width, 3)"),
        ({"image": IMAGE, "mask_image": MASK[:32]}, "mask_image", "the image's size"),
        ({"image": IMAGE, "mask_image": np.stack([MASK] * 3, axis=2)}, "mask_image", "(height, width)"),
        ({"image": [IMAGE] * 5}, "image", "max_input_images"),
        ({"image": IMAGE, "strength": 1.5}, "strength", "(0, 1]"),
        ({"strength": 0.5}, "strength", "needs an image"),
        ({"image": IMAGE, "num_inference_steps": 1}, "num_inference_steps", "at least 2 steps"),
        ({"image": "a.png"}, "image", "numpy uint8 array"),
    ],
)
def test_bad_images_fail_alone_naming_the_field(
    sd_engine: DiffusionEngine, fields: dict[str, Any], field: str, words: str
) -> None:
    failed, succeeded = sd_engine.step(
        [
            OmniDiffusionRequest("a 7", seed=1, **fields),
            OmniDiffusionRequest("a 7", image=IMAGE, seed=1, num_inference_steps=2),
        ]
    )
    assert (failed.error_type, failed.error_field) == ("RequestValidationError", field)
    assert words in failed.error
    assert succeeded.ok, succeeded.error


def test_conditioned_requests_round_trip_through_json_as_png() -> None:
    request = OmniDiffusionRequest(
        "a 7",
        image=[IMAGE, sample_image(seed=1)],
        mask_image=MASK,
        strength=0.5,
        extra={"eta": 0.3},
        lora="x",
    )
    wire = json.loads(json.dumps(request.to_dict()))
    assert isinstance(wire["image"][0], str)
    assert isinstance(wire["mask_image"], str)
    assert OmniDiffusionRequest.from_dict(wire) == request
    with pytest.raises(RequestValidationError) as caught:
        OmniDiffusionRequest.from_dict({**wire, "mask_image": "bm90IGEgcG5n"})  # "not a png"
    assert caught.value.field == "mask_image"
