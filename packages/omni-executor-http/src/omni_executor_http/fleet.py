"""The external executor's servers and their state: who is in rotation, who is busy, who is down.

Routing is least-in-flight: a request goes to the healthy, not-busy server with the
fewest requests in flight from this client, ties broken at random (so idle servers
share the first requests instead of all going to the first one). A server that fails
a connection or a health check is *down*: out of rotation, probed with exponential
back-off until ``/health`` answers. A server that answers 429/503 is *busy* until its
``Retry-After`` passes: skipped, not probed. Servers that discovery no longer lists
are dropped once their requests in flight finish.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from omni_executor_http.client import ImageServerClient

DEFAULT_BUSY_SECONDS = 1.0
"""How long a server that said 429/503 without ``Retry-After`` is skipped."""


@dataclass(eq=False)
class Server:
    url: str
    client: ImageServerClient
    healthy: bool = False
    """False until its first health check passes."""
    in_flight: int = 0
    busy_until: float = 0.0
    next_check: float = 0.0
    probe_backoff: float = 0.0
    last_error: str | None = None
    completed: int = 0
    listed: bool = True
    """False once discovery stops listing it (dropped when ``in_flight`` reaches 0)."""

    def state(self, now: float) -> str:
        if not self.listed:
            return "leaving"
        if not self.healthy:
            return "down"
        return "busy" if self.busy_until > now else "healthy"


@dataclass
class Fleet:
    make_client: Callable[[str], ImageServerClient]
    health_interval: float
    max_probe_backoff: float
    servers: dict[str, Server] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    # ----------------------------------------------------------- membership

    def update(self, urls: list[str]) -> None:
        """Make the fleet ``urls``: new servers join (checked before use), missing ones leave."""
        closing = []
        with self.lock:
            wanted = set(urls)
            for url in urls:
                if url not in self.servers:
                    self.servers[url] = Server(url, self.make_client(url))
                self.servers[url].listed = True
            for url, server in list(self.servers.items()):
                if url not in wanted:
                    server.listed = False
                    if server.in_flight == 0:
                        closing.append(self.servers.pop(url))
        for server in closing:
            server.client.close()

    # -------------------------------------------------------------- routing

    def acquire(self, skip: set[str]) -> Server | None:
        """The routable server with the fewest requests in flight (not in ``skip``), now counted busier."""
        now = time.monotonic()
        with self.lock:
            ready = [s for s in self.servers.values() if s.url not in skip and s.state(now) == "healthy"]
            if not ready:
                return None
            fewest = min(s.in_flight for s in ready)
            server = random.choice([s for s in ready if s.in_flight == fewest])
            server.in_flight += 1
            return server

    def release(self, server: Server, *, completed: bool) -> None:
        with self.lock:
            server.in_flight -= 1
            server.completed += int(completed)
            drop = not server.listed and server.in_flight == 0 and self.servers.get(server.url) is server
            if drop:
                del self.servers[server.url]
            self.changed.notify_all()
        if drop:
            server.client.close()

    def mark_down(self, server: Server, reason: str) -> None:
        with self.lock:
            self._down(server, reason, time.monotonic())

    def mark_busy(self, server: Server, retry_after: float | None) -> None:
        with self.lock:
            server.busy_until = time.monotonic() + (retry_after if retry_after else DEFAULT_BUSY_SECONDS)

    def soonest_free(self) -> float | None:
        """Seconds until the first busy server may be tried again (``None``: none is busy)."""
        now = time.monotonic()
        with self.lock:
            waits = [s.busy_until - now for s in self.servers.values() if s.healthy and s.busy_until > now]
        return max(0.0, min(waits)) if waits else None

    # --------------------------------------------------------------- health

    def due_for_check(self) -> list[Server]:
        """Servers whose check is due; each is not due again until :meth:`record_check`."""
        now = time.monotonic()
        with self.lock:
            due = [s for s in self.servers.values() if s.listed and s.next_check <= now]
            for server in due:
                server.next_check = float("inf")
            return due

    def record_check(self, server: Server, error: str | None) -> None:
        now = time.monotonic()
        with self.lock:
            if error is None:
                server.healthy, server.last_error, server.probe_backoff = True, None, 0.0
                server.next_check = now + self.health_interval
            else:
                self._down(server, error, now)
            self.changed.notify_all()

    def _down(self, server: Server, reason: str, now: float) -> None:
        server.healthy = False
        server.last_error = reason
        server.probe_backoff = min(
            self.max_probe_backoff, max(self.health_interval / 4, server.probe_backoff * 2 or 0.1)
        )
        server.next_check = now + server.probe_backoff

    def states(self) -> list[dict[str, object]]:
        now = time.monotonic()
        with self.lock:
            return [
                {
                    "url": s.url,
                    "state": s.state(now),
                    "in_flight": s.in_flight,
                    "completed": s.completed,
                    "last_error": s.last_error,
                }
                for s in sorted(self.servers.values(), key=lambda s: s.url)
            ]

    def healthy_servers(self) -> list[Server]:
        with self.lock:
            return [s for s in sorted(self.servers.values(), key=lambda s: s.url) if s.healthy and s.listed]

    def close(self) -> None:
        with self.lock:
            servers = list(self.servers.values())
            self.servers.clear()
        for server in servers:
            server.client.close()
