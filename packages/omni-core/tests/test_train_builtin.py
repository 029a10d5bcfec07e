"""`omni train-digits` and `omni train-default` are reproducible: the same seed writes the same weights,
another seed others, and what they write loads and draws."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="training needs scikit-learn (omni-core[train])")

from omni_core import DiffusionEngine, OmniDiffusionConfig

TRAINERS = {
    # module, a short run's steps and batch size, a prompt it understands
    "digits-v1": ("omni_core.models.train_digits", 12, 16, "7"),
    "shapes-v1": ("omni_core.models.train_shapes", 6, 8, "a red circle"),
}


def weights_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("model", list(TRAINERS))
def test_short_training_twice_gives_identical_weights_that_load(model: str, tmp_path: Path) -> None:
    module, steps, batch_size, prompt = TRAINERS[model]
    train = importlib.import_module(module).train
    first = train(tmp_path / "a", steps=steps, batch_size=batch_size, log_every=100)
    second = train(tmp_path / "b", steps=steps, batch_size=batch_size, log_every=100)
    assert weights_digest(first) == weights_digest(second)
    third = train(tmp_path / "c", steps=steps, batch_size=batch_size, seed=1, log_every=100)
    assert weights_digest(third) != weights_digest(first)
    with DiffusionEngine(
        OmniDiffusionConfig(model_name_or_path=str(first), executor_class="inproc")
    ) as engine:
        output = engine.generate(prompt, height=32, width=32, seed=0).raise_for_error()
    assert output.output[0].shape == (32, 32, 3)
