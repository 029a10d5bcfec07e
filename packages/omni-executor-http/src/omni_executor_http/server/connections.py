"""Connection-level limits uvicorn lacks: a deadline for a request's headers.

uvicorn closes idle keep-alive connections, but a client that sends headers
a byte at a time (slowloris) holds its connection and a slot forever. This
protocol gives each request ``header_timeout`` seconds, counted from the
connection or from the previous response, to complete its headers; then it
answers 408 in OpenAI's error shape and closes. (The body's deadline is the
app's: ``ServerSettings.body_timeout``.)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


def header_timeout_protocol(header_timeout: float) -> type[H11Protocol]:
    """An h11 protocol class for ``uvicorn.Config(http=...)`` with this header deadline."""

    class HeaderDeadlineProtocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._omni_timer: asyncio.TimerHandle | None = None
            self._omni_arm()

        def _omni_arm(self) -> None:
            self._omni_disarm()
            self._omni_cycle = self.cycle
            self._omni_timer = self.loop.call_later(header_timeout, self._omni_expired)

        def _omni_disarm(self) -> None:
            timer = getattr(self, "_omni_timer", None)
            if timer is not None:
                timer.cancel()
                self._omni_timer = None

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not None and self.cycle is not getattr(self, "_omni_cycle", None):
                self._omni_disarm()  # this request's headers are complete

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._omni_arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._omni_disarm()
            super().connection_lost(exc)

        def _omni_expired(self) -> None:
            self._omni_timer = None
            if self.transport.is_closing() or (self.cycle is not None and self.cycle is not self._omni_cycle):
                return
            body = json.dumps(
                {
                    "error": {
                        "message": f"request headers did not arrive within {header_timeout:g} s",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "request_timeout",
                    }
                }
            ).encode()
            head = (
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            ).encode()
            self.transport.write(head + body)
            self.transport.close()

    return HeaderDeadlineProtocol
