"""The model runner on a real (tiny) diffusers pipeline loaded with from_pretrained."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from omni_core import OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.runner import DiffusionModelRunner
from omni_core.testing_images import fraction_of_pixels_off_by_more_than


@pytest.fixture(scope="module")
def runner(tiny_model: Path) -> DiffusionModelRunner:
    runner = DiffusionModelRunner(
        OmniDiffusionConfig(
            model_name_or_path=str(tiny_model), executor_class="inproc", default_num_inference_steps=3
        )
    )
    runner.load_model()
    return runner


def request(prompt: str = "a 7", **fields: object) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt=prompt, **{"height": 64, "width": 64, **fields})  # type: ignore[arg-type]


class BatchRecorder:
    """Records which request ids shared each pipeline call (from real step callbacks)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, request_ids: Sequence[str], step: int, total: int, previews: object) -> None:
        if step == 1:
            self.calls.append(tuple(request_ids))


def test_loads_through_from_pretrained_with_class_dtype_and_device(tiny_model: Path) -> None:
    runner = DiffusionModelRunner(
        OmniDiffusionConfig(
            model_name_or_path=str(tiny_model),
            model_class_name="StableDiffusionPipeline",
            dtype="bfloat16",
            device="cpu",
            executor_class="inproc",
        )
    )
    runner.load_model()
    info = runner.describe()
    assert info["pipeline_class"] == "StableDiffusionPipeline"
    assert (info["device"], info["dtype"]) == ("cpu", "bfloat16")
    import torch

    assert runner.pipeline.unet.dtype == torch.bfloat16
    output = runner.execute([request(num_inference_steps=2, seed=1)])[0]
    assert output.ok, output.error
    assert output.output[0].shape == (64, 64, 3)


@pytest.fixture(scope="module")
def request_mode_runner(tiny_model: Path) -> DiffusionModelRunner:
    runner = DiffusionModelRunner(
        OmniDiffusionConfig(
            model_name_or_path=str(tiny_model),
            executor_class="inproc",
            default_num_inference_steps=3,
            batching="request",
        )
    )
    runner.load_model()
    assert runner.describe()["batching"]["mode"] == "request"
    return runner


def test_compatible_requests_share_one_call_and_others_do_not(
    request_mode_runner: DiffusionModelRunner,
) -> None:
    runner = request_mode_runner
    recorder = BatchRecorder()
    same = [request(seed=i, request_id=f"s{i}") for i in range(3)]
    other_size = request(seed=1, height=32, width=32, request_id="small")
    other_steps = request(seed=1, num_inference_steps=2, request_id="steps")
    other_guidance = request(seed=1, guidance_scale=1.0, request_id="cfg")
    outputs = runner.execute(
        [same[0], other_size, same[1], other_steps, same[2], other_guidance], on_step=recorder
    )
    assert [o.request_id for o in outputs] == ["s0", "small", "s1", "steps", "s2", "cfg"]
    assert all(o.ok for o in outputs)
    assert sorted(recorder.calls) == sorted([("s0", "s1", "s2"), ("small",), ("steps",), ("cfg",)])
    assert outputs[1].output[0].shape == (32, 32, 3)


def test_batches_are_capped_by_max_batch_size(tiny_model: Path) -> None:
    runner = DiffusionModelRunner(
        OmniDiffusionConfig(
            model_name_or_path=str(tiny_model), executor_class="inproc", max_batch_size=2, batching="request"
        )
    )
    runner.load_model()
    recorder = BatchRecorder()
    requests = [request(seed=i, num_inference_steps=2, request_id=f"r{i}") for i in range(5)]
    runner.execute(requests, on_step=recorder)
    assert recorder.calls == [("r0", "r1"), ("r2", "r3"), ("r4",)]


def test_one_generator_per_image_seeded_from_the_request(runner: DiffusionModelRunner) -> None:
    pair = runner.execute([request(seed=5, num_outputs_per_prompt=2)])[0]
    assert len(pair.output) == 2
    assert not np.array_equal(pair.output[0], pair.output[1])
    # Image i uses seed + i: the second image is what seed 6 draws alone.
    alone = runner.execute([request(seed=6)])[0]
    assert fraction_of_pixels_off_by_more_than(pair.output[1], alone.output[0], 1) == 0.0
    assert fraction_of_pixels_off_by_more_than(pair.output[1], alone.output[0], 0) < 0.01


def test_random_seed_is_chosen_reported_and_reproducible(runner: DiffusionModelRunner) -> None:
    first = runner.execute([request()])[0]
    assert first.seed is not None
    again = runner.execute([request(seed=first.seed)])[0]
    assert np.array_equal(first.output[0], again.output[0])


def test_same_seed_same_image_different_seed_different_image(runner: DiffusionModelRunner) -> None:
    a, b, c = runner.execute([request(seed=1), request(seed=1), request(seed=2)])
    # Rows of one batched call may differ by last-bit float noise (docs/architecture.md,
    # Determinism): at most one 8-bit level, on a handful of values; seen on main's CI machine.
    assert fraction_of_pixels_off_by_more_than(a.output[0], b.output[0], 1) == 0
    assert fraction_of_pixels_off_by_more_than(a.output[0], c.output[0], 8) > 0.1


def test_bad_requests_fail_alone_naming_the_field(runner: DiffusionModelRunner) -> None:
    bad_size = request(height=60)
    bad_steps = request(num_inference_steps=0)
    bad_n = request(num_outputs_per_prompt=0)
    bad_prompt = OmniDiffusionRequest(prompt=7)  # type: ignore[arg-type]
    good = request(seed=3)
    outputs = runner.execute([bad_size, good, bad_steps, bad_n, bad_prompt])
    assert [o.request_id for o in outputs] == [
        r.request_id for r in (bad_size, good, bad_steps, bad_n, bad_prompt)
    ]
    assert outputs[1].ok
    failed = (outputs[0], outputs[2], outputs[3], outputs[4])
    # The field travels as error_field, the reason as error: nothing to strip off a message.
    assert [o.error_field for o in failed] == [
        "height",
        "num_inference_steps",
        "num_outputs_per_prompt",
        "prompt",
    ]
    assert (outputs[0].error or "").startswith("must be a positive multiple of 8")
    assert (outputs[4].error or "").startswith("must be a string")
    assert str(outputs[0].exception()).startswith("height: must be a positive multiple of 8")
    assert all(o.error_type == "RequestValidationError" for o in (outputs[0], outputs[2]))


def test_size_defaults_to_the_model_and_is_capped(tiny_model: Path) -> None:
    runner = DiffusionModelRunner(
        OmniDiffusionConfig(
            model_name_or_path=str(tiny_model), executor_class="inproc", max_image_pixels=32 * 32
        )
    )
    runner.load_model()
    assert runner.default_size() == (64, 64)
    over_cap = runner.execute([OmniDiffusionRequest(prompt="x", num_inference_steps=1)])[0]
    assert over_cap.error is not None
    assert (over_cap.error_field, over_cap.error[:5]) == ("size", "64x64")


def test_trajectory_is_returned_on_request(runner: DiffusionModelRunner) -> None:
    plain, traced = runner.execute(
        [
            request(seed=1, num_inference_steps=3),
            request(seed=1, num_inference_steps=3, return_trajectory=True),
        ]
    )
    assert plain.trajectory_latents is None
    assert traced.trajectory_latents is not None
    assert traced.trajectory_latents.shape == (3, 1, 4, 8, 8)
    assert traced.trajectory_timesteps is not None
    assert len(traced.trajectory_timesteps) == 3
    assert traced.trajectory_timesteps == sorted(traced.trajectory_timesteps, reverse=True)


def test_a_non_finite_image_is_the_requests_error_not_a_black_picture() -> None:
    # An operator who lifts the guidance cap gets NaN latents from guidance 1e30 on the real
    # digits pipeline: that request fails; its batch neighbour still gets its image.
    config = OmniDiffusionConfig(executor_class="inproc", max_guidance_scale=1e38)
    runner = DiffusionModelRunner(config)
    runner.load_model()
    broken, fine = runner.execute(
        [
            OmniDiffusionRequest(prompt="7", seed=1, guidance_scale=1e30),
            OmniDiffusionRequest(prompt="7", seed=2),
        ]
    )
    assert broken.error_type == "ModelError"
    assert "non-finite" in (broken.error or "")
    assert broken.output == []
    assert fine.ok


def test_guidance_is_capped_by_default_naming_the_config_field(runner: DiffusionModelRunner) -> None:
    (output,) = runner.execute([request(guidance_scale=1e30)])
    assert (output.error_type, output.error_field) == ("RequestValidationError", "guidance_scale")
    assert "max_guidance_scale" in (output.error or "")
