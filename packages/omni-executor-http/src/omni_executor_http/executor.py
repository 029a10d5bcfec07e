"""``HTTPDiffusionExecutor``: run requests on an OpenAI-compatible image server.

One pooled client (:mod:`omni_executor_http.client`) serves every call; ``submit``
runs up to ``max_connections`` requests at once. Which failures are re-sent is
:mod:`omni_executor_http.retry`; when, core's :mod:`omni_core.retry`. A server's
error answer becomes the request's error in omni's failure class: omni's own
server states it, any other server is classified by status.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from omni_core import DiffusionOutput, ExecutorDeadError, OmniDiffusionRequest, OmniError
from omni_core.executors import DiffusionExecutor, call_with_retries
from omni_executor_http.client import (
    ClientOptions,
    ImageServerClient,
    api_key_of,
    failure_after_retries,
    output_from_payload,
    rpc_path,
)
from omni_executor_http.event_stream import RemotePreviews
from omni_executor_http.protocol import build_payload
from omni_executor_http.retry import RetryableHTTPError


@dataclass(frozen=True)
class HTTPOptions(ClientOptions):
    """Options of the HTTP executor (``config.executor_options``)."""

    base_url: str = "http://127.0.0.1:8000"
    """Server root; ``/v1/images/generations`` is appended."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")


class HTTPDiffusionExecutor(DiffusionExecutor):
    """Client of ``POST /v1/images/generations`` on omni's server or any compatible one."""

    options_class = HTTPOptions
    options: HTTPOptions

    def _init_executor(self) -> None:
        self.max_concurrent_submits = self.options.max_connections
        self.server = ImageServerClient(self.options.base_url, self.options, api_key_of(self.options))
        self.client = self.server.http  # the pooled httpx.Client, for callers that used it

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        return self._run_on_pool(self._run, request)

    def _run(self, request: OmniDiffusionRequest) -> DiffusionOutput:
        started = time.perf_counter()
        try:
            body = build_payload(request, model=self.options.model)
            previews = RemotePreviews(request, self._emit_progress) if request.partial_images else None
            payload, attempts = call_with_retries(
                lambda: self.server.generate(body, idempotent=request.seed is not None, on_preview=previews),
                max_retries=self.options.max_retries,
                base=self.options.backoff_base,
                cap=self.options.backoff_max,
            )
        except RetryableHTTPError as exc:
            return DiffusionOutput.failure(request.request_id, failure_after_retries(exc))
        except OmniError as exc:
            return DiffusionOutput.failure(request.request_id, exc)
        return output_from_payload(request, payload, attempts=attempts, started=started)

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        return [self.server.get_json(rpc_path(method, "HTTP"), timeout or self.options.timeout)]

    def check_health(self) -> None:
        if self.is_shutdown:
            raise ExecutorDeadError("HTTPDiffusionExecutor is shut down")
        self.server.check_health(self.options.connect_timeout + 5)

    def shutdown(self) -> None:
        self.server.close()
