"""How many bytes of edit uploads the server reads and parses at once.

An edit's body is held whole while it is parsed (the raw bytes, then its files and
decoded images): measured with 5 x 8 MiB files, four such uploads at once took the
server from 565 to 1104 MB. Connection limits do not bound that, since each upload
is one connection; this does, by the bytes each upload declares (or the cap, when it
declares none). Past the budget a new upload gets 429 with ``Retry-After``
before a byte of it is read; at least one upload is always admitted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from omni_executor_http.protocol import APIError

RETRY_AFTER_SECONDS = 1.0


class UploadBudget:
    """Bytes of uploads in flight, under one limit; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        with self._lock:
            return self._held

    @contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        """Hold ``size`` bytes while the block reads and parses its upload, or raise a 429."""
        with self._lock:
            if self._held and self._held + size > self.max_bytes:
                error = APIError(
                    429,
                    f"{self._held} bytes of uploads are being read; this server takes {self.max_bytes} at "
                    "once (omni serve --max-upload-bytes-in-flight); retry shortly",
                    code="too_many_uploads",
                )
                error.retry_after = RETRY_AFTER_SECONDS
                raise error
            self._held += size
        try:
            yield
        finally:
            with self._lock:
                self._held -= size
