"""The built-in default model (shapes-v1) draws what the prompt composes through every executor.

The same requests (random prompts, an image-to-image recolor and an inpainting) through inproc,
worker processes, the priority scheduler, omni serve over HTTP, the local Lambda service and Celery
workers over Redis (Ray: test_ray.py, beside the other Ray test, so the two run one after the
other); the shapes oracle reads every image back (``check_images``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conformance_setups import require

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest, ProgressEvent
from omni_core.models.default import default_model_path
from omni_core.models.shapes_render import render
from omni_core.models.shapes_vocabulary import Scene

pytest.importorskip("sklearn", reason="the shapes oracle needs scikit-learn (omni-core[train])")

from omni_core.models.shapes_oracle import random_prompts, read, score

PROMPTS = random_prompts(20, seed=7)
SOURCE = render(Scene("circle", "red", "white"))
MASK = np.zeros((64, 64), dtype=np.uint8)
MASK[6:58, 6:58] = 255
EDITS = [
    # (what the oracle must read, the request)
    (
        Scene("circle", "blue", "white"),
        {
            "prompt": "a blue circle on a white background",
            "image": SOURCE,
            "strength": 0.9,
            "num_inference_steps": 8,
            "seed": 3,
        },
    ),
    (
        Scene("star", "green", "white"),
        {"prompt": "a green star on a white background", "image": SOURCE, "mask_image": MASK, "seed": 2},
    ),
]


def requests() -> list[OmniDiffusionRequest]:
    drawn = [OmniDiffusionRequest(prompt, seed=i) for i, (_, prompt) in enumerate(PROMPTS)]
    return drawn + [OmniDiffusionRequest(**fields) for _, fields in EDITS]  # type: ignore[arg-type]


def check_images(executor: str, images: list[np.ndarray]) -> None:
    scenes = [scene for scene, _ in PROMPTS]
    scores = score(scenes, images[: len(scenes)])
    assert scores["subject"] >= 0.9, (executor, scores)
    assert scores["color"] >= 0.95, (executor, scores)
    assert scores["background"] >= 0.95, (executor, scores)
    for (scene, _), image in zip(EDITS, images[len(scenes) :], strict=True):
        reading = read(image)
        assert (reading.subject, reading.color, reading.background) == (
            scene.subject,
            scene.color,
            scene.background,
        ), executor
    assert np.array_equal(images[-1][MASK == 0], SOURCE[MASK == 0]), executor


@contextlib.contextmanager
def engine_config(name: str, model: Path, tmp: Path) -> Iterator[OmniDiffusionConfig]:
    """A config for executor ``name`` with the real service behind it, running ``model``."""
    if name in ("inproc", "mp", "priority"):
        yield OmniDiffusionConfig(executor_class=name)  # no model named: the built-in default
    elif name == "http":
        from omni_executor_http.testing import run_server

        with run_server(model, executor="mp", tmp=tmp) as server:
            yield OmniDiffusionConfig(executor_class="http", executor_options={"base_url": server.url})
    elif name == "lambda":
        from omni_executor_lambda.local import LocalFunction
        from omni_executor_lambda.testing import local_lambda

        # No OMNI_MODEL: the handler loads the built-in default too.
        with local_lambda([LocalFunction("omni", concurrency=2)]) as service:
            options = {"endpoint_url": service.endpoint_url, "region": "us-east-1", "concurrency": 2}
            yield OmniDiffusionConfig(executor_class="lambda", executor_options=options)
    elif name == "celery":
        require("redis-server", "apt-get install redis-server")
        from omni_executor_celery.brokers import redis_server
        from omni_executor_celery.testing import celery_config, celery_workers, wait_for_workers

        with redis_server(tmp) as broker:
            backend = broker.rsplit("/", 1)[0] + "/1"
            with celery_workers(broker, backend, model):
                config = celery_config(model, broker, backend)
                with DiffusionEngine(config) as probe:
                    wait_for_workers(probe)
                yield config
    else:
        raise ValueError(name)


@pytest.mark.parametrize("executor", ["inproc", "mp", "priority", "http", "lambda", "celery"])
def test_the_default_model_draws_what_the_prompt_composes(executor: str, tmp_path: Path) -> None:
    with engine_config(executor, default_model_path(), tmp_path) as config, DiffusionEngine(config) as engine:
        outputs = engine.step(requests())
        images = [output.raise_for_error().output[0] for output in outputs]
        previews: list[ProgressEvent] = []
        watched = OmniDiffusionRequest("a purple heart", seed=0, num_inference_steps=8, partial_images=2)
        final = engine.submit(watched, on_progress=previews.append).result(timeout=120)
    check_images(executor, images)
    # Previews reach the caller through every executor that sees steps (http: as its server's
    # stream events); one Lambda invocation or Celery task has none, and still answers.
    shown = [event.preview for event in previews if event.preview is not None]
    assert [p.index for p in shown] == ([] if executor in ("lambda", "celery") else [0, 1]), executor
    assert all(p.images[0].shape == (64, 64, 3) for p in shown)
    assert read(final.raise_for_error().output[0]).subject == "heart"
