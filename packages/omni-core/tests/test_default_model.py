"""The built-in default model, shapes-v1: shipped, loaded with from_pretrained, and it draws what the
prompt composes (subject, colors, size, position) and edits meaningfully (its training:
test_train_builtin.py)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.default import BUILTIN_MODELS, DEFAULT_MODEL_NAME, builtin_model_path
from omni_core.models.shapes_render import render
from omni_core.models.shapes_vocabulary import Scene

pytest.importorskip("sklearn", reason="the shapes oracle needs scikit-learn (omni-core[train])")

from omni_core.models.shapes_oracle import random_prompts, read, score


@pytest.fixture(scope="module")
def engine() -> Iterator[DiffusionEngine]:
    # No model named: the built-in default.
    with DiffusionEngine(OmniDiffusionConfig(executor_class="inproc")) as engine:
        yield engine


def test_the_default_is_shapes_v1_shipped_small_and_found_by_name() -> None:
    assert DEFAULT_MODEL_NAME == "shapes-v1"
    shipped = builtin_model_path("shapes-v1")
    assert shipped == BUILTIN_MODELS["shapes-v1"]
    size = sum(f.stat().st_size for f in shipped.rglob("*") if f.is_file())
    assert size < 3 * 1024 * 1024
    assert "ShapesPipeline" in (shipped / "model_index.json").read_text()


def test_200_random_prompts_draw_the_subject_and_colors_they_ask_for(engine: DiffusionEngine) -> None:
    pairs = random_prompts(200, seed=0)
    requests = [OmniDiffusionRequest(prompt, seed=i) for i, (_, prompt) in enumerate(pairs)]
    outputs = [o.raise_for_error() for o in engine.step(requests)]
    assert all(o.output[0].shape == (64, 64, 3) for o in outputs)
    scores = score([scene for scene, _ in pairs], [o.output[0] for o in outputs])
    assert scores["subject"] >= 0.90, scores
    assert scores["color"] >= 0.95, scores
    assert scores["background"] >= 0.95, scores
    # Reported in docs/architecture.md; held loosely here so a regression still shows.
    assert scores["size"] >= 0.9, scores
    assert scores["position"] >= 0.8, scores


def test_seeds_vary_the_drawing_and_a_seed_repeats_it(engine: DiffusionEngine) -> None:
    prompt = "a red circle on a blue background"
    images = [engine.generate(prompt, seed=seed).raise_for_error().output[0] for seed in (1, 2, 1)]
    assert np.array_equal(images[0], images[2])
    assert not np.array_equal(images[0], images[1])
    for image in images:
        reading = read(image)
        assert (reading.subject, reading.color, reading.background) == ("circle", "red", "blue")


def test_image_to_image_recolors_at_high_strength_and_keeps_the_input_at_low(engine: DiffusionEngine) -> None:
    # As with any diffusion model, colors survive moderate noise (a large uniform area is strong
    # evidence): recoloring takes strength 0.9 and enough steps to start that noisy (7 of 8).
    source = render(Scene("circle", "red", "white"))
    recolored = engine.generate(
        "a blue circle on a white background", image=source, strength=0.9, num_inference_steps=8, seed=3
    ).raise_for_error()
    reading = read(recolored.output[0])
    assert (reading.subject, reading.color, reading.background) == ("circle", "blue", "white")
    kept = engine.generate("a blue circle", image=source, strength=0.2, seed=3).raise_for_error()
    reading = read(kept.output[0])
    assert (reading.subject, reading.color, reading.background) == ("circle", "red", "white")
    assert np.abs(kept.output[0].astype(int) - source.astype(int)).mean() < 20  # drifts toward blue


def test_inpainting_replaces_the_masked_shape_and_keeps_the_rest(engine: DiffusionEngine) -> None:
    source = render(Scene("circle", "red", "yellow"))
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[6:58, 6:58] = 255
    output = engine.generate(
        "a green star on a yellow background", image=source, mask_image=mask, seed=2
    ).raise_for_error()
    image = output.output[0]
    assert np.array_equal(image[mask == 0], source[mask == 0])
    reading = read(image)
    assert (reading.subject, reading.color, reading.background) == ("star", "green", "yellow")


def test_a_prompt_naming_no_subject_warns_and_still_draws_one(engine: DiffusionEngine) -> None:
    from omni_core.models.shapes import ShapesPipeline

    pipeline = ShapesPipeline.from_pretrained(str(builtin_model_path("shapes-v1")))
    pipeline.set_progress_bar_config(disable=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = np.asarray(pipeline("something red on blue").images[0])
    assert any("cannot draw 'something red on blue'" in str(w.message) for w in caught)
    reading = read(image)
    assert reading.subject is not None
    assert (reading.color, reading.background) == ("red", "blue")
