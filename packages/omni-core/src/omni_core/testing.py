"""pytest fixtures shared by every omni package's tests.

A package's ``conftest.py`` imports them (``from omni_core.testing import
tiny_model, isolated_omni_cache``) so each package's test session, which
installs only omni-core beside it, gets the same tiny model without copying
fixture code. Needs pytest and the ``[diffusers]`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_omni_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the built-in default model out of the user's ~/.cache during tests."""
    previous = os.environ.get("OMNI_CACHE_DIR")
    path = tmp_path_factory.mktemp("omni-cache")
    os.environ["OMNI_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("OMNI_CACHE_DIR", None)
    else:
        os.environ["OMNI_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Stable-Diffusion pipeline saved with save_pretrained (random weights, seed 0)."""
    from omni_core.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_flux_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Flux pipeline saved with save_pretrained (random weights, seed 0): the transformer family."""
    from omni_core.models.tiny_flux import build_tiny_flux_pipeline

    return build_tiny_flux_pipeline(tmp_path_factory.mktemp("models") / "tiny-flux", seed=0)


@pytest.fixture(scope="session")
def tiny_lora(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter for :func:`tiny_model` (random non-zero weights, seed 1)."""
    from omni_core.models.tiny import build_tiny_lora

    return build_tiny_lora(tmp_path_factory.mktemp("loras") / "sketch", tiny_model, seed=1)


@pytest.fixture(scope="session")
def tiny_shapes_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shapes pipeline (omni's 64x64 pixel-space model, with image-to-image and inpainting)
    with random weights (seed 0), saved with save_pretrained: what it draws means nothing, but its
    mechanics (inpainting keeps unmasked pixels exactly, previews are its exact x0, more steps
    draw a different image) are the real ones. Untrained, the model starts as a flat grey sketch
    that ignores the noise, so its templates, palette and output layer are randomized here."""
    import torch

    from omni_core.models.shapes import ShapesPipeline
    from omni_core.models.train_shapes import build_untrained

    out = tmp_path_factory.mktemp("models") / "tiny-shapes"
    unet, scheduler = build_untrained(seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter, scale in (
            (unet.templates, 2.0),
            (unet.foreground.weight, 1.0),
            (unet.background.weight, 1.0),
            (unet.conv_out.weight, 0.05),
        ):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    ShapesPipeline(unet=unet, scheduler=scheduler).save_pretrained(out)
    return out
