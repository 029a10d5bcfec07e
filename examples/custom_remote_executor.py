"""An executor for any OpenAI-compatible images API, on core's remote base; settings in a config subclass.

Its own part is one call (send, read the answer); validation, retries, abort, timings, the health and
shutdown guards and ``collective_rpc("ping")`` come from the base. Runs against ``omni serve`` on 127.0.0.1.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from omni_core import DiffusionEngine, DiffusionOutput, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.executors import (
    ExecutorDeadError,
    RemoteCall,
    RemoteDiffusionExecutor,
    RemoteError,
    RetryLater,
    decode_png_b64,
    parse_retry_after,
)


@dataclass
class RemoteImagesConfig(OmniDiffusionConfig):
    """The engine's config plus this executor's settings; reaches the executor unchanged."""

    api_base: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    api_timeout: float = 120.0


class RemoteImagesExecutor(RemoteDiffusionExecutor):
    """One HTTP call per request to an OpenAI-compatible images endpoint."""

    def _init_remote(self) -> None:
        if not isinstance(config := self.od_config, RemoteImagesConfig):
            raise TypeError(f"{type(self).__name__} needs a RemoteImagesConfig, got {type(config).__name__}")
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.client = httpx.Client(base_url=config.api_base, headers=headers, timeout=config.api_timeout)

    def _call(self, call: RemoteCall) -> Sequence[DiffusionOutput]:
        (request,) = call.requests
        body: dict[str, Any] = {"prompt": request.prompt, "n": request.num_outputs_per_prompt}
        if request.height and request.width:
            body["size"] = f"{request.width}x{request.height}"
        for name in ("negative_prompt", "num_inference_steps", "guidance_scale", "seed"):
            if getattr(request, name) is not None:
                body[name] = getattr(request, name)
        try:
            response = self.client.post(
                "/v1/images/generations", json={**body, "response_format": "b64_json"}
            )
        except httpx.ConnectError as exc:  # never reached the server: safe to send again
            raise RetryLater(f"{self.client.base_url} is unreachable: {exc}") from exc
        if response.status_code in (
            429,
            503,
        ):  # full: the base waits Retry-After, then gives up as overloaded
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RetryLater(f"HTTP {response.status_code}", retry_after=retry_after, overloaded=True)
        if response.is_error:
            raise RemoteError(f"HTTP {response.status_code}: {response.text[:300]}")
        images = [decode_png_b64(item["b64_json"]) for item in response.json()["data"]]
        return [DiffusionOutput(request_id=request.request_id, output=images, seed=request.seed)]

    def _check_remote(self) -> None:
        try:
            self.client.get("/health").raise_for_status()
        except httpx.HTTPError as exc:
            raise ExecutorDeadError(f"{self.client.base_url} is not healthy: {exc}") from exc

    def _close_remote(self) -> None:
        self.client.close()


def main() -> None:
    from omni_core.models.default import default_model_path
    from omni_executor_http.testing import run_server

    with tempfile.TemporaryDirectory() as tmp, run_server(default_model_path(), tmp=Path(tmp)) as server:
        config = RemoteImagesConfig(executor_class=RemoteImagesExecutor, api_base=server.url)
        with DiffusionEngine(config) as engine:
            engine.check_health()
            requests = [OmniDiffusionRequest("a handwritten 4", seed=8), OmniDiffusionRequest("4", height=63)]
            good, bad = engine.step(requests)
            print(f"{type(engine.executor).__name__} via {server.url}: {good.output[0].shape}")
            print(f"a bad size fails alone, before it travels: {bad.error_type}: {bad.exception()}")
            assert good.ok
            assert bad.error_field == "height"


if __name__ == "__main__":
    main()
