"""The built-in default model (shapes-v1): shipped, loaded with from_pretrained, and it draws what
the prompt composes; image-to-image and inpainting change what they are asked to."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.default import BUILTIN_MODELS, SHIPPED_MODEL, default_model_path
from omni_core.models.shapes_render import render
from omni_core.models.shapes_vocabulary import Scene, parse_prompt, prompt_for, random_scene

pytest.importorskip("sklearn", reason="the shapes oracle needs scikit-learn (omni-core[train])")

from omni_core.models.shapes_oracle import oracle, random_prompts, read, score

PROMPTS = 200


@pytest.fixture(scope="module")
def engine() -> Iterator[DiffusionEngine]:
    with DiffusionEngine(OmniDiffusionConfig(executor_class="inproc")) as engine:
        yield engine


def test_the_shipped_shapes_model_is_the_default_and_small() -> None:
    assert default_model_path() == SHIPPED_MODEL == BUILTIN_MODELS["shapes-v1"]
    size = sum(f.stat().st_size for f in SHIPPED_MODEL.rglob("*") if f.is_file())
    assert size < 20 * 1024 * 1024
    assert '"ShapesPipeline"' in (SHIPPED_MODEL / "model_index.json").read_text()


def test_the_oracle_reads_rendered_scenes() -> None:
    assert oracle()[1] >= 0.98
    rng = random.Random(11)
    scenes = [random_scene(rng) for _ in range(100)]
    scores = score(scenes, [render(scene, rng) for scene in scenes])
    assert scores["subject"] >= 0.97, scores
    assert scores["color"] == 1.0, scores
    assert scores["background"] == 1.0, scores


def test_prompts_read_back_into_their_scenes() -> None:
    rng = random.Random(3)
    for _ in range(300):
        scene = random_scene(rng)
        prompt = prompt_for(scene, rng)
        assert parse_prompt(prompt) == scene, prompt
    assert parse_prompt("A red circle on a blue background") == Scene("circle", "red", "blue")
    assert parse_prompt("a big yellow 7") == Scene("7", "yellow", "white", "large")
    assert parse_prompt("a cat") is None


def test_random_prompts_draw_the_asked_subject_and_colors(engine: DiffusionEngine) -> None:
    pairs = random_prompts(PROMPTS, seed=0)
    outputs = engine.step(
        [OmniDiffusionRequest(prompt=prompt, seed=index) for index, (_, prompt) in enumerate(pairs)]
    )
    images = [output.raise_for_error().output[0] for output in outputs]
    assert all(image.shape == (64, 64, 3) for image in images)
    scores = score([scene for scene, _ in pairs], images)
    print(f"oracle over {PROMPTS} random prompts: {scores}")
    assert scores["subject"] >= 0.90, scores
    assert scores["color"] >= 0.95, scores
    assert scores["background"] >= 0.95, scores
    assert engine.collective_rpc("describe")[0]["pipeline_class"] == "ShapesPipeline"


def test_image_to_image_recolors_the_subject(engine: DiffusionEngine) -> None:
    source = render(Scene("circle", "red", "white"))
    request = OmniDiffusionRequest(
        prompt="a blue circle on a white background", image=source, strength=0.8, seed=1
    )
    reading = read(engine.step([request])[0].raise_for_error().output[0])
    assert (reading.subject, reading.color, reading.background) == ("circle", "blue", "white"), reading


def test_inpainting_replaces_the_masked_shape_and_keeps_the_rest(engine: DiffusionEngine) -> None:
    source = render(Scene("square", "red", "yellow"))
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[8:56, 8:56] = 255
    request = OmniDiffusionRequest(
        prompt="a green star on a yellow background", image=source, mask_image=mask, seed=2
    )
    result = engine.step([request])[0].raise_for_error().output[0]
    reading = read(result)
    assert (reading.subject, reading.color, reading.background) == ("star", "green", "yellow"), reading
    outside = mask == 0
    assert np.array_equal(result[outside], source[outside])


def test_another_size_is_the_64_pixel_image_resized(engine: DiffusionEngine) -> None:
    output = engine.step([OmniDiffusionRequest(prompt="a purple heart", height=128, width=96, seed=1)])[0]
    image = output.raise_for_error().output[0]
    assert image.shape == (128, 96, 3)
    reading = read(np.asarray(Image.fromarray(image).resize((64, 64), Image.Resampling.BOX)))
    assert (reading.subject, reading.color) == ("heart", "purple"), reading


def test_a_prompt_it_cannot_draw_warns_once_saying_what_it_can() -> None:
    from omni_core.models.shapes import warn_if_undrawable

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_undrawable(["a cat"])
        warn_if_undrawable(["a red circle", ""])
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "'a cat'" in message
    assert "circle" in message
    assert "A-Z" in message
