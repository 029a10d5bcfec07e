"""A complete executor for a remote image API, written on the ABC, with its settings in a config subclass.

It speaks the OpenAI Images API (``POST /v1/images/generations``), so it works
against ``omni serve`` (started here on 127.0.0.1) or any compatible service.
Five methods make it complete; ``submit``, progress listeners and the
idempotent ``shutdown`` come from :class:`DiffusionExecutor`.

Run: python examples/custom_remote_executor.py
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from omni_core import DiffusionEngine, DiffusionOutput, OmniDiffusionRequest
from omni_core.config import OmniDiffusionConfig
from omni_core.errors import ExecutorDeadError, RemoteError
from omni_core.executors import DiffusionExecutor
from omni_core.images import decode_png_b64


@dataclass
class RemoteImagesConfig(OmniDiffusionConfig):
    """The engine's config plus this executor's settings; reaches the executor unchanged."""

    api_base: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    request_timeout: float = 120.0


class RemoteImagesExecutor(DiffusionExecutor):
    """One HTTP call per request to an OpenAI-compatible images endpoint."""

    def _init_executor(self) -> None:
        config = self.od_config
        if not isinstance(config, RemoteImagesConfig):
            raise TypeError(f"{type(self).__name__} needs a RemoteImagesConfig, got {type(config).__name__}")
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.client = httpx.Client(base_url=config.api_base, headers=headers, timeout=config.request_timeout)

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        return [self._generate(request) for request in requests]

    def _generate(self, request: OmniDiffusionRequest) -> DiffusionOutput:
        body: dict[str, Any] = {"prompt": request.prompt, "n": request.num_outputs_per_prompt}
        body["response_format"] = "b64_json"
        if request.height and request.width:
            body["size"] = f"{request.width}x{request.height}"
        for name in ("negative_prompt", "num_inference_steps", "guidance_scale", "seed"):
            if getattr(request, name) is not None:
                body[name] = getattr(request, name)
        try:
            response = self.client.post("/v1/images/generations", json=body)
            if response.is_error:
                # A failed request fails alone: its output carries the server's words, the executor goes on.
                message = response.json().get("error", {}).get("message", response.text)
                error = RemoteError(f"HTTP {response.status_code}: {message}")
                return DiffusionOutput.failure(request.request_id, error)
            images = [decode_png_b64(item["b64_json"]) for item in response.json()["data"]]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return DiffusionOutput.failure(request.request_id, RemoteError(f"{type(exc).__name__}: {exc}"))
        return DiffusionOutput(request_id=request.request_id, output=images, seed=request.seed)

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        if method != "models":
            raise AttributeError(f"{type(self).__name__} supports collective_rpc('models') only")
        return [self.client.get("/v1/models", timeout=timeout).json()]

    def check_health(self) -> None:
        try:
            self.client.get("/health").raise_for_status()
        except httpx.HTTPError as exc:
            raise ExecutorDeadError(f"{self.client.base_url} is not healthy: {exc}") from exc

    def shutdown(self) -> None:
        self.client.close()


def main() -> None:
    from omni_core.models.default import default_model_path
    from omni_executor_http.testing import run_server

    with tempfile.TemporaryDirectory() as tmp, run_server(default_model_path(), tmp=Path(tmp)) as server:
        config = RemoteImagesConfig(executor_class=RemoteImagesExecutor, api_base=server.url)
        with DiffusionEngine(config) as engine:
            engine.check_health()
            good, bad = engine.step(
                [
                    OmniDiffusionRequest(prompt="a handwritten 4", height=64, width=64, seed=8),
                    OmniDiffusionRequest(prompt="a handwritten 4", height=63, width=64, seed=8),
                ]
            )
            print(
                f"{type(engine.executor).__name__} via {server.url}: {good.output[0].shape}, seed {good.seed}"
            )
            print(f"a bad size fails alone: {bad.error_type}: {bad.error}")
            assert good.ok
            assert not bad.ok


if __name__ == "__main__":
    main()
