"""Run the app under uvicorn with a graceful drain on SIGTERM/SIGINT.

uvicorn's own shutdown stops accepting connections at once. Here the first
signal only marks the server as draining: in-flight requests finish, new
ones get 503 with ``Retry-After`` (so a load balancer moves on), and once
nothing is in flight (or ``drain_timeout`` passes) uvicorn is told to exit.
A second signal exits at once.

With an engine to watch (``omni serve --exit-on-dead``) the server also exits,
with status 3, once the executor says it is dead, so a supervisor (systemd,
Kubernetes) starts a fresh one instead of it answering 503 forever.
"""

from __future__ import annotations

import logging
import threading
import time
from types import FrameType

import uvicorn

from omni_core import DiffusionEngine
from omni_executor_http.server.app import ServerState

logger = logging.getLogger(__name__)
DEAD_EXIT_STATUS = 3
DEAD_POLL_SECONDS = 1.0


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        state: ServerState,
        drain_timeout: float,
        *,
        engine: DiffusionEngine | None = None,
    ) -> None:
        super().__init__(config)
        self.omni_state = state
        self.drain_timeout = drain_timeout
        self.exit_status = 0
        if engine is not None:
            threading.Thread(
                target=self._exit_when_dead, args=(engine,), name="omni-dead-watch", daemon=True
            ).start()

    def _exit_when_dead(self, engine: DiffusionEngine) -> None:
        while not self.should_exit:
            reason = engine.executor.dead_reason
            if reason is not None:
                logger.error("the executor is dead (%s); exiting for the supervisor to restart omni", reason)
                self.exit_status = DEAD_EXIT_STATUS
                self.should_exit = True
                return
            time.sleep(DEAD_POLL_SECONDS)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not calling super(): uvicorn would re-raise the signal after serving, killing the
        # process before the engine (and its worker processes) is closed.
        if self.omni_state.draining:
            self.should_exit = True
            self.force_exit = True
            return
        self.omni_state.draining = True
        threading.Thread(target=self._exit_when_drained, name="omni-drain", daemon=True).start()

    def _exit_when_drained(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        while self.omni_state.inflight > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.should_exit = True
