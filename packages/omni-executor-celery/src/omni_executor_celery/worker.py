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
from omni_core.executors import OffloadSettings, ResultOffloader
from omni_executor_celery.app import ABORT_COMMAND, TASK_NAME, CelerySettings, make_app

logger = logging.getLogger(__name__)

ENV_SETTINGS = "OMNI_CELERY_SETTINGS"
ENV_CONFIG = "OMNI_CELERY_CONFIG"
ENV_OFFLOAD = "OMNI_CELERY_OFFLOAD"
"""JSON of :class:`OffloadSettings`: where images above a size go instead of the result backend."""
ENV_RUN_LOG = "OMNI_CELERY_RUN_LOG"
"""If set, a file each run of a task appends ``start|done ID PID`` lines to (tests count runs)."""


def _offload_settings() -> OffloadSettings | None:
    raw = os.environ.get(ENV_OFFLOAD)
    return OffloadSettings(**json.loads(raw)) if raw else None


def _settings() -> CelerySettings:
    raw = os.environ.get(ENV_SETTINGS)
    if not raw:
        return CelerySettings(broker_url=os.environ.get("OMNI_CELERY_BROKER", "redis://127.0.0.1:6379/0"))
    return CelerySettings(**json.loads(raw))


app = make_app(_settings(), name="omni-worker")
_offload = ResultOffloader(_offload_settings())
_host: Any = None
"""The process's :class:`~omni_core.executors.RunnerHost`, loaded at worker start."""
_aborted: dict[str, bool] = {}
"""Requests a client aborted (so a cancelled run is not reported as a timeout)."""


def _load_model(**_: Any) -> None:
    """Load the pipeline once per worker process, before the first task arrives."""
    global _host
    if _host is not None:
        return
    from omni_core.executors import RunnerHost

    host = RunnerHost(json.loads(os.environ.get(ENV_CONFIG, "{}")))
    _host = host
    logger.warning("omni worker ready: %s", host.describe())


signals.worker_init.connect(_load_model)


@app.task(name=TASK_NAME, bind=True)  # type: ignore[untyped-decorator]
def generate(task: Any, request_dict: dict[str, Any]) -> dict[str, Any]:
    request_id = str(task.request.id)
    stored = app.backend.get_task_meta(request_id)
    if stored.get("status") == "SUCCESS" and isinstance(stored.get("result"), dict):
        return dict(stored["result"])  # seen before: the stored result, not a second run
    _record_run(request_id, "start")
    try:
        request = OmniDiffusionRequest.from_dict(request_dict)
    except RequestValidationError as exc:  # the field at fault named, as every entry point names it
        sent_id = request_dict.get("request_id", request_id) if isinstance(request_dict, dict) else request_id
        return dict(DiffusionOutput.failure(str(sent_id), exc).to_dict())
    if _host is None:
        _load_model()
    # The threads pool enforces no time limit: stop the request at its next step instead.
    limit = float(app.conf.task_time_limit or 0)
    timer = threading.Timer(limit, _host.cancel, args=(request.request_id,)) if limit else None
    if timer is not None:
        timer.start()
    try:
        (output,) = _host.execute([request])
    finally:
        if timer is not None:
            timer.cancel()
    timed_out = timer is not None and not timer.is_alive() and output.error_type == "RequestCancelledError"
    if timed_out and not _aborted.pop(request.request_id, False):
        timeout = RequestTimeoutError(f"request {request.request_id} ran past task_time_limit ({limit:g} s)")
        output = DiffusionOutput.failure(request.request_id, timeout)
    _record_run(request_id, "done")
    return _offload(output.to_dict())


@control_command(args=[("request_id", str)], signature="<request_id>")  # type: ignore[untyped-decorator]
def omni_abort(state: Any, request_id: str) -> dict[str, Any]:
    """Stop ``request_id`` at its next denoising step if this worker is running it."""
    cancelled = _host is not None and _host.cancel(request_id)
    if cancelled:
        _aborted[request_id] = True
    return {"ok": "cancelled" if cancelled else "not running here"}


def _record_run(request_id: str, event: str) -> None:
    path = os.environ.get(ENV_RUN_LOG)
    if path:
        with open(path, "a") as log:
            log.write(f"{event} {request_id} {os.getpid()}\n")


assert omni_abort.__name__ == ABORT_COMMAND
