"""The worker side: one Celery worker process per device, the pipeline loaded once at start.

``omni celery worker`` starts ``celery worker`` processes with ``--pool threads
--concurrency 1`` (one task at a time, while the main thread still answers remote
control: pings, revokes, aborts) and this module as the app; settings come from
the environment it sets (``OMNI_CELERY_*``). The task takes a request dict and returns
an output dict (JSON; images as base64 PNG). A request id already finished returns its
stored result instead of running again, and a broadcast ``omni_abort`` stops a running
request at its next denoising step.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from celery import signals
from celery.worker.control import control_command

from omni_core import DiffusionOutput, OmniDiffusionRequest, RequestTimeoutError, RequestValidationError
from omni_executor_celery.app import ABORT_COMMAND, TASK_NAME, CelerySettings, make_app

logger = logging.getLogger(__name__)

ENV_SETTINGS = "OMNI_CELERY_SETTINGS"
ENV_CONFIG = "OMNI_CELERY_CONFIG"
ENV_RUN_LOG = "OMNI_CELERY_RUN_LOG"
"""If set, a file each run of a task appends a line to (tests count runs with it)."""


def _settings() -> CelerySettings:
    raw = os.environ.get(ENV_SETTINGS)
    if not raw:
        return CelerySettings(broker_url=os.environ.get("OMNI_CELERY_BROKER", "redis://127.0.0.1:6379/0"))
    return CelerySettings(**json.loads(raw))


app = make_app(_settings(), name="omni-worker")
_runner: Any = None
_aborted: dict[str, bool] = {}
"""Requests a client aborted (so a cancelled run is not reported as a timeout)."""


@signals.worker_process_init.connect
@signals.worker_init.connect
def _load_model(**_: Any) -> None:
    """Load the pipeline once per worker process, before the first task arrives."""
    global _runner
    if _runner is not None:
        return
    from omni_core import OmniDiffusionConfig
    from omni_core.executors import DiffusionModelRunner

    fields = json.loads(os.environ.get(ENV_CONFIG, "{}"))
    runner = DiffusionModelRunner(OmniDiffusionConfig(**fields))
    runner.load_model()
    _runner = runner
    logger.warning("omni worker ready: %s", runner.describe())


@app.task(name=TASK_NAME, bind=True)  # type: ignore[untyped-decorator]
def generate(task: Any, request_dict: dict[str, Any]) -> dict[str, Any]:
    request_id = str(task.request.id)
    stored = app.backend.get_task_meta(request_id)
    if stored.get("status") == "SUCCESS" and isinstance(stored.get("result"), dict):
        return dict(stored["result"])  # seen before: the stored result, not a second run
    _record_run(request_id)
    try:
        request = OmniDiffusionRequest.from_dict(request_dict)
    except (TypeError, ValueError) as exc:
        error = RequestValidationError("request", f"not a valid request: {exc}")
        return DiffusionOutput.failure(str(request_dict.get("request_id", request_id)), error).to_dict()
    if _runner is None:
        _load_model()
    # The threads pool enforces no time limit: stop the request at its next step instead.
    limit = float(app.conf.task_time_limit or 0)
    timer = threading.Timer(limit, _runner.cancel, args=(request.request_id,)) if limit else None
    if timer is not None:
        timer.start()
    try:
        (output,) = _runner.execute([request])
    finally:
        if timer is not None:
            timer.cancel()
    timed_out = timer is not None and not timer.is_alive() and output.error_type == "RequestCancelledError"
    if timed_out and not _aborted.pop(request.request_id, False):
        error = RequestTimeoutError(f"request {request.request_id} ran past task_time_limit ({limit:g} s)")
        output = DiffusionOutput.failure(request.request_id, error)
    return dict(output.to_dict())


@control_command(args=[("request_id", str)], signature="<request_id>")  # type: ignore[untyped-decorator]
def omni_abort(state: Any, request_id: str) -> dict[str, Any]:
    """Stop ``request_id`` at its next denoising step if this worker is running it."""
    cancelled = _runner is not None and _runner.cancel(request_id)
    if cancelled:
        _aborted[request_id] = True
    return {"ok": "cancelled" if cancelled else "not running here"}


def _record_run(request_id: str) -> None:
    path = os.environ.get(ENV_RUN_LOG)
    if path:
        with open(path, "a") as log:
            log.write(f"{request_id} {os.getpid()}\n")


assert omni_abort.__name__ == ABORT_COMMAND
