"""Where omni's built-in models live, and which one is the default.

The default is ``shapes-v1``: colored shapes, digits and letters at 64x64,
composed from the prompt (:mod:`omni_core.models.shapes`, trained by
:mod:`omni_core.models.train_shapes`, ``omni train-default``). Its predecessor,
``digits-v1`` (8x8 handwritten digits, upscaled), stays available by name. Both
ship inside this package as safetensors (2.1 MB and 2.7 MB), load with
``from_pretrained`` like any other model, and their names are accepted wherever a
model path is. If the weights are missing (a source checkout trimmed of
package data), the tiny random-weight pipeline is built into the cache
instead, atomically (build in a temporary folder, then rename), so worker
processes that start together never see a half-written model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_MODEL_NAME = "shapes-v1"
BUILTIN_MODELS = {"shapes-v1": WEIGHTS / "shapes-v1", "digits-v1": WEIGHTS / "digits-v1"}
"""Built-in model names and their shipped folders: a fixed table, never a path from a request."""
SHIPPED_MODEL = BUILTIN_MODELS[DEFAULT_MODEL_NAME]
FALLBACK_MODEL_NAME = "tiny-random-sd-v1"
CACHE_ENV = "OMNI_CACHE_DIR"


def cache_dir() -> Path:
    """``$OMNI_CACHE_DIR``, else ``$XDG_CACHE_HOME/omni``, else ``~/.cache/omni``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "omni"


def default_model_path() -> Path:
    """The built-in default model's folder."""
    if (SHIPPED_MODEL / "model_index.json").is_file():
        return SHIPPED_MODEL
    return random_model_path()


def builtin_model_path(name: str) -> Path | None:
    """The shipped folder of built-in model ``name``, or None if ``name`` is not one."""
    folder = BUILTIN_MODELS.get(name)
    return folder if folder is not None and (folder / "model_index.json").is_file() else None


def random_model_path() -> Path:
    """The tiny random-weight pipeline in the cache, built first if needed."""
    target = cache_dir() / "models" / FALLBACK_MODEL_NAME
    if (target / "model_index.json").is_file():
        return target
    from omni_core.models.tiny import build_tiny_pipeline

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{FALLBACK_MODEL_NAME}-", dir=target.parent))
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
