"""``ExternalDiffusionExecutor``: a fleet of image servers that omni did not start, as one executor.

For ``omni serve`` instances (or any OpenAI-compatible image servers) launched by a
Slurm job array, Kubernetes pods or systemd units: the servers come from ``urls`` or
from discovery (:mod:`omni_executor_http.discovery`), their state is kept by
:mod:`omni_executor_http.fleet`, and each request goes to the healthy server with the
fewest requests in flight. Talking to one server is the ``http`` executor's client,
so the failure rules are the same: a request is sent again, to another server, only if
it cannot have run (connection refused, 429, 503) or carries a seed; a 429/503 moves
it to another server at once instead of waiting out ``Retry-After``. Retries, validation,
abort and shutdown are core's remote base; what is its own is routing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from omni_core import DiffusionOutput, ExecutorDeadError
from omni_core.executors import RemoteCall, RemoteDiffusionExecutor, RetryLater, RetryPolicy, above
from omni_executor_http.client import (
    ClientOptions,
    ImageServerClient,
    MaybeRanError,
    api_key_of,
    output_from_payload,
    rpc_path,
)
from omni_executor_http.discovery import discovery_for
from omni_executor_http.event_stream import RemotePreviews
from omni_executor_http.fleet import Fleet, Server
from omni_executor_http.protocol import build_payload
from omni_executor_http.retry import RetryableHTTPError

logger = logging.getLogger(__name__)

MONITOR_TICK = 0.05
HEALTH_CHECK_THREADS = 8


@dataclass(frozen=True)
class ExternalOptions(ClientOptions):
    """Options of the external executor (``config.executor_options``); give ``urls`` or ``discovery``."""

    urls: list[str] | None = None
    """Base URLs of the servers, e.g. ``["http://10.0.0.5:8000", "http://10.0.0.6:8000"]``."""
    discovery: str | None = None
    """``http://name:port``: the name's A/AAAA records are the servers; or a file path, one URL a line."""
    discovery_interval: float = field(default=5.0, metadata=above(0))
    """Seconds between re-resolving the name or looking at the file."""
    health_interval: float = field(default=2.0, metadata=above(0))
    """Seconds between ``/health`` checks of a server in rotation; a dead one leaves within it."""
    max_probe_backoff: float = field(default=30.0, metadata=above(0))
    """A server out of rotation is probed with back-off up to this many seconds apart."""

    def __post_init__(self) -> None:
        super().__post_init__()
        discovery_for(self.urls, self.discovery)  # exactly one, well formed: refused here, named


class NoServerAvailable(RetryLater):
    """Every server is down, busy or leaving: wait for one (this spends the retry budget too)."""


class ExternalDiffusionExecutor(RemoteDiffusionExecutor):
    """Routes requests across image servers launched outside omni (least requests in flight)."""

    options_class = ExternalOptions
    options: ExternalOptions
    remote_name = "the image server"

    def _init_remote(self) -> None:
        options = self.options
        api_key = api_key_of(options)
        self.max_concurrent_submits = options.max_connections
        self._discovery = discovery_for(options.urls, options.discovery)
        self.fleet = Fleet(
            make_client=lambda url: ImageServerClient(url, options, api_key),
            health_interval=options.health_interval,
            max_probe_backoff=options.max_probe_backoff,
        )
        self._checks = ThreadPoolExecutor(HEALTH_CHECK_THREADS, thread_name_prefix="omni-external-health")
        self._stop = threading.Event()
        self._refresh_discovery()
        list(self._checks.map(self._check, self.fleet.due_for_check()))  # first requests find servers
        self._next_discovery = time.monotonic() + options.discovery_interval
        self._monitor = threading.Thread(target=self._watch, name="omni-external-monitor", daemon=True)
        self._monitor.start()

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.options.retry_policy()

    # -------------------------------------------------------------- requests

    def _call(self, call: RemoteCall) -> Sequence[DiffusionOutput]:
        """One attempt on the least-busy server; a failure that may be retried sets that server aside."""
        (item,) = call.pending
        request = item.request
        if "body" not in item.memo:
            item.memo["body"] = build_payload(request, model=self.options.model)
            item.memo["previews"] = (
                RemotePreviews(request, self._emit_progress) if request.partial_images else None
            )
        server = self.fleet.acquire(set())
        if server is None:
            # retry_after: when the first busy server frees; None (all down): core's backoff.
            raise NoServerAvailable(str(self._no_server_error()), retry_after=self.fleet.soonest_free())
        try:
            payload = server.client.generate(
                item.memo["body"], idempotent=request.seed is not None, on_preview=item.memo["previews"]
            )
        except RetryableHTTPError as exc:
            self._set_aside(server, exc)
            exc.wait = 0.0  # another server may take it now; if none can, the next attempt waits
            raise
        except MaybeRanError as exc:  # unseeded, and the server may have run it: not re-sent
            self.fleet.release(server, completed=False)
            self.fleet.mark_down(server, str(exc))
            raise
        except Exception:  # the server's answer (final), or a bug: the server did its part
            self.fleet.release(server, completed=True)
            raise
        self.fleet.release(server, completed=True)
        return [output_from_payload(request, payload)]

    def _set_aside(self, server: Server, exc: RetryableHTTPError) -> None:
        """A connection failure takes the server out of rotation; 429/503 skip it for Retry-After."""
        self.fleet.release(server, completed=False)
        if exc.status is None:
            self.fleet.mark_down(server, str(exc))
        else:
            self.fleet.mark_busy(server, exc.retry_after)

    def _no_server_error(self) -> ExecutorDeadError:
        states = "; ".join(f"{s['url']}: {s['state']}" for s in self.fleet.states()) or "none listed"
        return ExecutorDeadError(f"no image server is available ({states})", retryable=True)

    # --------------------------------------------------- discovery and health

    def _watch(self) -> None:
        while not self._stop.wait(MONITOR_TICK):
            if time.monotonic() >= self._next_discovery:
                self._next_discovery = time.monotonic() + self.options.discovery_interval
                self._refresh_discovery()
            for server in self.fleet.due_for_check():
                self._checks.submit(self._check, server)

    def _refresh_discovery(self) -> None:
        try:
            urls = self._discovery.urls()
        except (OSError, ValueError) as exc:  # a half-written file, an unreadable one: keep the fleet
            logger.warning("server discovery failed, keeping the current servers: %s", exc)
            return
        if urls is not None:
            self.fleet.update(urls)

    def _check(self, server: Server) -> None:
        try:
            server.client.check_health(self.options.connect_timeout)
        except ExecutorDeadError as exc:
            self.fleet.record_check(server, str(exc))
        else:
            self.fleet.record_check(server, None)

    def server_states(self) -> list[dict[str, object]]:
        """Each server's URL, state (healthy, busy, down, leaving), requests in flight and completed."""
        return self.fleet.states()

    # --------------------------------------------------- rpc, health, stop

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        """``{"url": ..., "result": ...}`` (or ``"error"``) from every healthy server, by URL."""
        path = rpc_path(method, "external")
        replies = []
        for server in self.fleet.healthy_servers():
            try:
                replies.append({"url": server.url, "result": server.client.get_json(path, timeout or 10.0)})
            except Exception as exc:  # noqa: BLE001 - one server's failure is its own entry
                replies.append({"url": server.url, "error": f"{type(exc).__name__}: {exc}"})
        return replies

    def _check_remote(self) -> None:
        if not self.fleet.healthy_servers():
            raise self._no_server_error()

    def _close_remote(self) -> None:
        self._stop.set()
        self._monitor.join()
        self._checks.shutdown(wait=True, cancel_futures=True)
        self.fleet.close()
