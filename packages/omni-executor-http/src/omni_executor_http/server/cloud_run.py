"""omni's OpenAI-compatible API as a Google Cloud Run function: the same application ``omni serve`` runs.

functions-framework (the runtime Cloud Run functions use) calls the ``omni`` target for every
path; in its ASGI mode the target hands the request to omni's Starlette application
(:mod:`omni_executor_http.server.hosted`, configured from the environment), so the routes,
limits, failures and metrics are exactly ``omni serve``'s.

Run locally: ``functions-framework --asgi --target omni --source main.py`` where ``main.py``
holds ``from omni_executor_http.server.cloud_run import omni`` (examples/cloud_run/).
"""

from __future__ import annotations

from typing import Any

import functions_framework.aio
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from omni_executor_http.server.hosted import application


class _Delegate:
    """What the target returns: Starlette calls it with the request's scope, omni's app answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@functions_framework.aio.http  # type: ignore[untyped-decorator]
async def omni(request: Request) -> Any:
    """The function target: every path goes to omni's application."""
    return _Delegate(application())
