"""`omni train-digits` is reproducible: the same seed writes the same weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="training needs scikit-learn (omni-core[train])")

from omni_core.models.train_digits import train


def weights_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_short_training_twice_gives_identical_weights_that_load(tmp_path: Path) -> None:
    first = train(tmp_path / "a", steps=12, batch_size=16, log_every=100)
    second = train(tmp_path / "b", steps=12, batch_size=16, log_every=100)
    assert weights_digest(first) == weights_digest(second)
    third = train(tmp_path / "c", steps=12, batch_size=16, seed=1, log_every=100)
    assert weights_digest(third) != weights_digest(first)

    from omni_core import DiffusionEngine, OmniDiffusionConfig

    with DiffusionEngine(
        OmniDiffusionConfig(model_name_or_path=str(first), executor_class="inproc")
    ) as engine:
        output = engine.generate("7", height=32, width=32, seed=0)
    assert output.output[0].shape == (32, 32, 3)
