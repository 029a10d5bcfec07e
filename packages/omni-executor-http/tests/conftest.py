"""Fixtures: the shared tiny model, and real `omni serve` processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omni_core.testing import isolated_omni_cache, tiny_lora, tiny_model, tiny_shapes_model
from omni_executor_http.testing import ServerProcess, free_port, run_server

__all__ = [
    "ServerProcess",
    "free_port",
    "isolated_omni_cache",
    "run_server",
    "tiny_lora",
    "tiny_model",
    "tiny_shapes_model",
]


@pytest.fixture(scope="session")
def server_factory(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., object]:
    def factory(*args: str, model: Path | None = None, env: dict[str, str] | None = None) -> object:
        return run_server(model or tiny_model, *args, env=env, tmp=tmp_path_factory.mktemp("serve"))

    return factory


EDIT_MAX_IMAGE_BYTES = 64 * 1024


@pytest.fixture(scope="session")
def server(
    tiny_model: Path, tiny_lora: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server for the session (each start loads a model), with small, explicit limits so the
    limit tests are cheap, and a LoRA adapter named ``sketch``. Tests that stop, kill or
    reconfigure a server start their own (``server_factory``)."""
    with run_server(
        tiny_model,
        "--lora",
        f"sketch={tiny_lora}",
        "--max-image-bytes",
        str(EDIT_MAX_IMAGE_BYTES),
        "--max-body-bytes",
        "4096",
        "--max-steps",
        "50",
        "--max-prompt-length",
        "100",
        "--max-image-pixels",
        str(256 * 256),
        tmp=tmp_path_factory.mktemp("serve"),
    ) as process:
        yield process


SHAPES_KEY = "shapes-test-key"
"""The API key of :func:`shapes_server`."""


@pytest.fixture(scope="session")
def shapes_server(
    tiny_shapes_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with the shapes pipeline (random weights: pixel space, so previews are its exact
    x0, and inpainting that keeps unmasked pixels exactly), an API key and images kept 3 s for
    ``response_format=url``; shared by the streaming and playground tests."""
    with run_server(
        tiny_shapes_model,
        "--api-key",
        SHAPES_KEY,
        "--image-url-ttl",
        "3",
        tmp=tmp_path_factory.mktemp("serve"),
    ) as process:
        yield process


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's thread count after each test.

    An in-process engine with ``torch_threads`` sets it for the whole process, and the last
    8-bit level of an image can depend on it: a later test comparing this process's images
    with a server's (which runs at torch's default) must not inherit another test's setting.
    """
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
