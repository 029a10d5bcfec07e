"""Cross-package checks with every package installed: one image, whichever executor."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest, ProgressEvent
from omni_core.images import decode_png
from omni_core.testing_images import fraction_of_pixels_off_by_more_than
from omni_core.testing_pipelines import sample_image, sample_mask

# priority runs in front of mp (its default inner); lambda against the local Lambda service.
EXECUTORS = ["inproc", "mp", "priority", "lambda"]


def lambda_config(
    stack: contextlib.ExitStack, model: Path | None, loras: dict[str, str] | None = None
) -> OmniDiffusionConfig:
    """The Lambda executor against a local Lambda service running omni's handler on ``model``."""
    from omni_executor_lambda.local import LocalFunction
    from omni_executor_lambda.testing import local_lambda

    environment = {"OMNI_MODEL": str(model)} if model else {}
    if loras:
        environment["OMNI_LORAS"] = json.dumps(loras)
    service = stack.enter_context(
        local_lambda([LocalFunction("omni", environment=environment, concurrency=2)])
    )
    # No credentials here: the executor signs nothing for a loopback endpoint.
    return OmniDiffusionConfig(
        executor_class="lambda",
        executor_options={"endpoint_url": service.endpoint_url, "region": "us-east-1", "concurrency": 2},
    )


IMAGE = sample_image(seed=5)
MASK = sample_mask()


def requests() -> list[OmniDiffusionRequest]:
    """Text-to-image, image-to-image, inpainting, pipeline arguments and a LoRA adapter."""
    return [
        OmniDiffusionRequest(prompt="a 7", height=64, width=64, num_inference_steps=3, seed=5),
        OmniDiffusionRequest(
            prompt="a 3", height=32, width=64, num_inference_steps=2, seed=6, num_outputs_per_prompt=2
        ),
        OmniDiffusionRequest(prompt="a 7", image=IMAGE, strength=0.6, num_inference_steps=3, seed=7),
        OmniDiffusionRequest(prompt="a 7", image=IMAGE, mask_image=MASK, num_inference_steps=3, seed=8),
        OmniDiffusionRequest(
            prompt="a 7", height=64, width=64, num_inference_steps=3, seed=9, extra={"eta": 1.0}
        ),
        OmniDiffusionRequest(
            prompt="a 7", height=64, width=64, num_inference_steps=3, seed=10, lora="sketch"
        ),
    ]


@pytest.fixture(scope="module")
def images_by_executor(tiny_model: Path, tiny_lora: Path) -> dict[str, list[list[np.ndarray]]]:
    results = {}
    loras = {"sketch": str(tiny_lora)}
    for executor in EXECUTORS:
        with contextlib.ExitStack() as stack:
            if executor == "lambda":
                config = lambda_config(stack, tiny_model, loras)
            else:
                config = OmniDiffusionConfig(
                    model_name_or_path=str(tiny_model), executor_class=executor, loras=loras
                )
            with DiffusionEngine(config) as engine:
                results[executor] = [engine.step([r])[0].raise_for_error().output for r in requests()]
    return results


@pytest.mark.parametrize("executor", EXECUTORS[1:])
def test_same_seed_same_8bit_image_as_inproc(
    images_by_executor: dict[str, list[list[np.ndarray]]], executor: str
) -> None:
    reference = images_by_executor["inproc"]
    for expected, got in zip(reference, images_by_executor[executor], strict=True):
        assert len(expected) == len(got)
        for a, b in zip(expected, got, strict=True):
            assert np.array_equal(a, b)


def test_readme_main_command_uses_the_default_executor(tmp_path: Path) -> None:
    omni = shutil.which("omni")
    assert omni
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    found = re.search(r'omni generate "([^"]+)" -o seven\.png', readme)
    assert found, "README command 1 no longer writes seven.png with omni generate"
    result = subprocess.run(
        [omni, "generate", found.group(1), "-o", "seven.png", "--seed", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "executor 'mp'" in result.stderr
    image = decode_png((tmp_path / "seven.png").read_bytes())
    assert image.shape == (64, 64, 3)
    from omni_core.models.shapes_oracle import read
    from omni_core.models.shapes_vocabulary import parse_prompt

    asked = parse_prompt(found.group(1))
    assert asked is not None
    assert read(image).matches(asked) == dict.fromkeys(
        ("subject", "color", "background", "size", "position"), True
    )


def test_http_in_front_of_mp_gives_the_inproc_image(
    images_by_executor: dict[str, list[list[np.ndarray]]], tiny_model: Path, tiny_lora: Path, tmp_path: Path
) -> None:
    from omni_executor_http.testing import run_server

    lora = f"sketch={tiny_lora}"
    with run_server(
        tiny_model, "--option", "num_workers=2", "--lora", lora, executor="mp", tmp=tmp_path
    ) as server:
        config = OmniDiffusionConfig(executor_class="http", executor_options={"base_url": server.url})
        with DiffusionEngine(config) as engine:
            got = [engine.step([r])[0].raise_for_error().output for r in requests()]
    # Two workers run one torch thread each, inproc runs the machine's default: a different
    # thread count, so last-bit float noise may move a value by one 8-bit level
    # (docs/architecture.md, Determinism).
    for expected, images in zip(images_by_executor["inproc"], got, strict=True):
        for a, b in zip(expected, images, strict=True):
            assert fraction_of_pixels_off_by_more_than(a, b, 1) == 0


def test_a_transformer_family_edits_alike_through_inproc_and_http_over_mp(
    tiny_flux_model: Path, tmp_path: Path
) -> None:
    from omni_executor_http.testing import run_server

    cases = [
        OmniDiffusionRequest(
            "a 7", image=IMAGE, strength=0.6, height=64, width=64, num_inference_steps=3, seed=1
        ),
        OmniDiffusionRequest(
            "a 7", image=IMAGE, mask_image=MASK, strength=0.9, num_inference_steps=3, seed=2
        ),
        OmniDiffusionRequest(
            "a 7", height=64, width=64, num_inference_steps=2, seed=3, extra={"max_sequence_length": 16}
        ),
    ]
    results: dict[str, list[list[np.ndarray]]] = {}
    # omni serve over mp: the requests cross HTTP (an edit form) and then a worker process.
    with run_server(tiny_flux_model, "--option", "num_workers=1", executor="mp", tmp=tmp_path) as server:
        configs = {
            "inproc": OmniDiffusionConfig(model_name_or_path=str(tiny_flux_model), executor_class="inproc"),
            "http+mp": OmniDiffusionConfig(executor_class="http", executor_options={"base_url": server.url}),
        }
        for name, config in configs.items():
            with DiffusionEngine(config) as engine:
                results[name] = [engine.step([case])[0].raise_for_error().output for case in cases]
    for expected, got in zip(results["inproc"], results["http+mp"], strict=True):
        # One worker runs one torch thread, inproc the machine's default: last-bit float noise may
        # move a value by one 8-bit level (docs/architecture.md, Determinism).
        assert all(
            fraction_of_pixels_off_by_more_than(a, b, 1) == 0 for a, b in zip(expected, got, strict=True)
        )


def test_priority_in_front_of_mp_preempts_between_steps(tiny_model: Path) -> None:
    import threading

    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model),
        executor_class="priority",
        executor_options={"inner": "mp", "inner_options": {"num_workers": 1}, "max_inflight": 1},
    )
    low_request = OmniDiffusionRequest(
        prompt="low", height=128, width=128, num_inference_steps=80, seed=1, priority=5
    )
    with DiffusionEngine(config) as engine:
        running = threading.Event()

        def listener(event: ProgressEvent) -> None:
            if event.request_id == low_request.request_id:
                running.set()

        engine.add_progress_listener(listener)
        low = engine.submit(low_request)
        assert running.wait(60)
        high = engine.submit(
            OmniDiffusionRequest(prompt="high", height=64, width=64, num_inference_steps=2, seed=2)
        )
        assert high.result(timeout=60).ok
        assert not low.done()  # high finished first although low started first
        low_output = low.result(timeout=120)
        assert low_output.ok
        assert low_output.timings["preemptions"] == 1
