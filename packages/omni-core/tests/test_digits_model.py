"""The built-in digits model (digits-v1, by name): shipped, loaded with from_pretrained, and it draws the
digit asked for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.default import BUILTIN_MODELS, builtin_model_path

sklearn = pytest.importorskip("sklearn", reason="the digits oracle needs scikit-learn (omni-core[train])")

from omni_core.models.digits_oracle import classify, oracle  # noqa: E402
from omni_core.models.train_digits import WORDS  # noqa: E402

PROMPTS = ["{d}", "{w}", "a handwritten {d}"]


def digit_requests(seeds: range) -> list[tuple[int, OmniDiffusionRequest]]:
    return [
        (
            digit,
            OmniDiffusionRequest(
                prompt=template.format(d=digit, w=WORDS[digit]), height=64, width=64, seed=seed
            ),
        )
        for digit in range(10)
        for seed in seeds
        for template in PROMPTS
    ]


@pytest.fixture(scope="module")
def engine() -> Iterator[DiffusionEngine]:
    with DiffusionEngine(
        OmniDiffusionConfig(model_name_or_path="digits-v1", executor_class="inproc")
    ) as engine:
        yield engine


def test_the_digits_model_ships_and_is_found_by_name() -> None:
    shipped = builtin_model_path("digits-v1")
    assert shipped == BUILTIN_MODELS["digits-v1"]
    size = sum(f.stat().st_size for f in shipped.rglob("*") if f.is_file())
    assert size < 5 * 1024 * 1024
    assert "DigitsPipeline" in (shipped / "model_index.json").read_text()


def test_the_oracle_is_accurate_on_held_out_digits() -> None:
    assert oracle()[1] >= 0.97


def test_prompts_naming_a_digit_draw_that_digit(engine: DiffusionEngine) -> None:
    pairs = digit_requests(range(3))
    outputs = engine.step([request for _, request in pairs])
    assert all(o.ok for o in outputs)
    assert all(o.output[0].shape == (64, 64, 3) for o in outputs)
    predicted = classify([o.output[0] for o in outputs])
    wanted = [digit for digit, _ in pairs]
    correct = sum(p == w for p, w in zip(predicted, wanted, strict=True))
    assert correct / len(pairs) >= 0.9, list(zip(wanted, predicted, strict=True))
    info = engine.collective_rpc("describe")[0]
    assert info["pipeline_class"] == "DigitsPipeline"


def test_output_is_upscaled_to_any_requested_size(engine: DiffusionEngine) -> None:
    output = engine.step([OmniDiffusionRequest(prompt="3", height=128, width=96, seed=1)])[0]
    assert output.output[0].shape == (128, 96, 3)
    assert classify(output.output) == [3]
