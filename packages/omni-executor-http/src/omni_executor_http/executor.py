"""``HTTPDiffusionExecutor``: run requests on an OpenAI-compatible image server.

Built on core's remote base (:class:`~omni_core.executors.RemoteDiffusionExecutor`:
validation, retries, timings, abort, shutdown); what is its own is one call. One
pooled client (:mod:`omni_executor_http.client`) serves every call, up to
``max_connections`` at once. Which failures are re-sent is :mod:`omni_executor_http.retry`;
when, core's :mod:`omni_core.retry`. A server's error answer becomes the request's error
in omni's failure class: omni's own server states it, any other server is classified by
status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omni_core import DiffusionOutput
from omni_core.executors import RemoteCall, RemoteDiffusionExecutor, RetryPolicy
from omni_executor_http.client import (
    ClientOptions,
    ImageServerClient,
    api_key_of,
    output_from_payload,
    rpc_path,
)
from omni_executor_http.event_stream import RemotePreviews
from omni_executor_http.protocol import build_payload


@dataclass(frozen=True)
class HTTPOptions(ClientOptions):
    """Options of the HTTP executor (``config.executor_options``)."""

    base_url: str = "http://127.0.0.1:8000"
    """Server root; ``/v1/images/generations`` is appended."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")


class HTTPDiffusionExecutor(RemoteDiffusionExecutor):
    """Client of ``POST /v1/images/generations`` on omni's server or any compatible one."""

    options_class = HTTPOptions
    options: HTTPOptions
    remote_name = "the image server"

    def _init_remote(self) -> None:
        self.max_concurrent_submits = self.options.max_connections
        self.server = ImageServerClient(self.options.base_url, self.options, api_key_of(self.options))
        self.client = self.server.http  # the pooled httpx.Client, for callers that used it

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.options.retry_policy()

    def _call(self, call: RemoteCall) -> Sequence[DiffusionOutput]:
        (request,) = call.requests
        body = call.pending[0].memo.get("body")
        if body is None:
            body = call.pending[0].memo["body"] = build_payload(request, model=self.options.model)
        previews = RemotePreviews(request, self._emit_progress) if request.partial_images else None
        payload = self.server.generate(body, idempotent=request.seed is not None, on_preview=previews)
        return [output_from_payload(request, payload)]

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        return [self.server.get_json(rpc_path(method, "HTTP"), timeout or self.options.timeout)]

    def _check_remote(self) -> None:
        self.server.check_health(self.options.connect_timeout + 5)

    def _close_remote(self) -> None:
        self.server.close()
