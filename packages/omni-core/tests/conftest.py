"""Shared fixtures: a tiny random-weight model built once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the built-in default model out of the user's ~/.cache during tests."""
    previous = os.environ.get("OMNI_CACHE_DIR")
    os.environ["OMNI_CACHE_DIR"] = str(tmp_path_factory.mktemp("omni-cache"))
    yield
    if previous is None:
        os.environ.pop("OMNI_CACHE_DIR", None)
    else:
        os.environ["OMNI_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Stable-Diffusion pipeline saved with save_pretrained."""
    from omni_core.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny", seed=0)
