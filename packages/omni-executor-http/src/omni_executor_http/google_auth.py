"""Google ID tokens for servers behind Google's front door (Cloud Run, Cloud Functions, IAP).

Cloud Run lets a request in only with ``Authorization: Bearer <ID token>`` whose audience is
the service's URL. ``google-auth`` finds the credentials as every Google client does (the
metadata server on Google Cloud, else ``GOOGLE_APPLICATION_CREDENTIALS``), mints the token
and refreshes it before it expires; this is the httpx side of that. Install with the
``[google]`` extra.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

import httpx


class GoogleIdTokenAuth(httpx.Auth):
    """Adds a Google-signed ID token for ``audience`` to every request, refreshed when stale."""

    def __init__(self, audience: str) -> None:
        try:
            import google.auth.transport.requests
            import google.oauth2.id_token
        except ImportError as exc:
            raise ImportError(
                f"auth='google' needs google-auth and requests ({exc}); "
                "pip install 'omni-executor-http[google]'"
            ) from exc
        self.audience = audience
        self._transport = google.auth.transport.requests.Request()
        self._fetch_credentials = google.oauth2.id_token.fetch_id_token_credentials
        self._credentials: Any = None
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._credentials is None:
                self._credentials = self._fetch_credentials(self.audience, request=self._transport)
            if not self._credentials.valid:  # none yet, or about to expire
                self._credentials.refresh(self._transport)
            return str(self._credentials.token)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request
