"""The shapes model's parts: its vocabulary, renderer and oracle, and the pipeline's mechanics on
random weights (the trained default, shapes-v1, is tested in test_default_model.py)."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.shapes_render import render
from omni_core.models.shapes_vocabulary import Scene, parse_prompt, prompt_for, random_scene
from omni_core.testing import tiny_shapes_model

pytest.importorskip("sklearn", reason="the shapes oracle needs scikit-learn (omni-core[train])")

from omni_core.models.shapes_oracle import oracle, score

__all__ = ["tiny_shapes_model"]  # fixture


@pytest.fixture(scope="module")
def engine(tiny_shapes_model: Path) -> Iterator[DiffusionEngine]:
    config = OmniDiffusionConfig(model_name_or_path=str(tiny_shapes_model), executor_class="inproc")
    with DiffusionEngine(config) as engine:
        yield engine


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


def test_inpainting_keeps_every_unmasked_pixel_exactly(engine: DiffusionEngine) -> None:
    source = render(Scene("square", "red", "yellow"))
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[8:56, 8:56] = 255
    request = OmniDiffusionRequest(
        prompt="a green star on a yellow background", image=source, mask_image=mask, seed=2
    )
    result = engine.step([request])[0].raise_for_error().output[0]
    outside = mask == 0
    assert np.array_equal(result[outside], source[outside])


def test_another_size_is_the_64_pixel_image_resized(engine: DiffusionEngine) -> None:
    output = engine.step([OmniDiffusionRequest(prompt="a purple heart", height=128, width=96, seed=1)])[0]
    image = output.raise_for_error().output[0]
    assert image.shape == (128, 96, 3)
    native = (
        engine.step([OmniDiffusionRequest(prompt="a purple heart", seed=1)])[0].raise_for_error().output[0]
    )
    # The same picture, resized (compared at 16x16: random weights draw fine-grained noise).
    small = [
        np.asarray(Image.fromarray(a).resize((16, 16), Image.Resampling.BOX), dtype=int)
        for a in (image, native)
    ]
    assert np.abs(small[0] - small[1]).mean() < 6


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
