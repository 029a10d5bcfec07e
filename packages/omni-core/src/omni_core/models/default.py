"""Where omni's built-in default model lives.

Until a trained model ships (issue 7), the default is the tiny random-weight
pipeline, built on first use into a per-user cache directory and then
loaded like any other model with ``from_pretrained``. The build is atomic
(build in a temporary folder, then rename), so worker processes that start
together never see a half-written model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL_NAME = "tiny-random-sd-v1"
CACHE_ENV = "OMNI_CACHE_DIR"


def cache_dir() -> Path:
    """``$OMNI_CACHE_DIR``, else ``$XDG_CACHE_HOME/omni``, else ``~/.cache/omni``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "omni"


def default_model_path() -> Path:
    """The built-in default model's folder, building it first if needed."""
    target = cache_dir() / "models" / DEFAULT_MODEL_NAME
    if (target / "model_index.json").is_file():
        return target
    from omni_core.models.tiny import build_tiny_pipeline

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_NAME}-", dir=target.parent))
    try:
        build_tiny_pipeline(staging, seed=0)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model_index.json").is_file():
                raise
            # Another process finished first; its build is identical (fixed seed).
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
