"""omni's application for platforms that host it (Cloud Run functions, Azure Functions), from the environment.

The same application ``omni serve`` runs (:func:`omni_executor_http.server.app.create_app`),
with the engine built from environment variables, as those platforms configure a service:

- ``OMNI_MODEL``: model folder or hub id (unset: the built-in model);
- ``OMNI_EXECUTOR``: executor shorthand (unset: ``mp``; ``inproc`` on a CPU-only instance),
  ``OMNI_EXECUTOR_OPTIONS``: its options as JSON (``{"torch_threads": 4}``);
- ``OMNI_API_KEY``: require ``Authorization: Bearer KEY`` (often unset: the platform checks
  the caller before the request reaches the instance);
- ``OMNI_MAX_QUEUED_REQUESTS``, ``OMNI_REQUEST_TIMEOUT``: as the ``omni serve`` flags.
"""

from __future__ import annotations

import json
import os
import threading

from starlette.types import ASGIApp

from omni_core import DiffusionEngine, OmniDiffusionConfig, RequestLimits
from omni_executor_http.server.app import ServerSettings, create_app

_lock = threading.Lock()
_application: ASGIApp | None = None
_built_in: int | None = None
"""The pid that built ``_application``: functions-framework imports the source in gunicorn's
master, then forks the worker, and an engine's threads and worker processes do not survive a
fork, so each serving process builds its own, on its first request."""


def application() -> ASGIApp:
    """The application of this process's engine, built on first use (a startup probe on /health)."""
    global _application, _built_in
    with _lock:
        if _application is None or _built_in != os.getpid():
            _built_in = os.getpid()
            queued = os.environ.get("OMNI_MAX_QUEUED_REQUESTS")
            timeout = os.environ.get("OMNI_REQUEST_TIMEOUT")
            config = OmniDiffusionConfig(
                model_name_or_path=os.environ.get("OMNI_MODEL") or None,
                executor_class=os.environ.get("OMNI_EXECUTOR") or None,
                executor_options=json.loads(os.environ.get("OMNI_EXECUTOR_OPTIONS") or "{}"),
                max_queued_requests=int(queued) if queued else None,
                request_timeout=float(timeout) if timeout else None,
            )
            engine = DiffusionEngine(config)  # lives as long as the instance
            settings = ServerSettings(
                api_key=os.environ.get("OMNI_API_KEY") or None, limits=RequestLimits.from_config(config)
            )
            _application = create_app(engine, settings)
        return _application
