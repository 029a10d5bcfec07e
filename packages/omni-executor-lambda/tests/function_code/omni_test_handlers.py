"""Handlers the local service runs in the tests: omni's handler, counted, plus misbehaving ones.

Every run appends a line to ``$OMNI_TEST_RUN_LOG`` (the invocation's
idempotency key and pid), so a test can prove that nothing ran twice.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from omni_executor_lambda.function.handler import handler as omni_handler


def _record(event: Any) -> None:
    key = event.get("idempotency_key") if isinstance(event, dict) else None
    with open(os.environ["OMNI_TEST_RUN_LOG"], "a") as log:
        log.write(json.dumps({"key": key, "pid": os.getpid()}) + "\n")


def counted(event: Any, context: Any) -> Any:
    _record(event)
    prompts = [r.get("prompt") for r in event.get("requests", []) if isinstance(r, dict)]
    if "__raise__" in prompts:
        raise ValueError("the test handler was asked to raise")
    if "__sleep__" in prompts:
        print("sleeping past the timeout", flush=True)
        time.sleep(float(os.environ.get("OMNI_TEST_SLEEP", "30")))
    return omni_handler(event, context)


def echo(event: Any, context: Any) -> Any:
    print(f"echo in {context.function_name} pid {os.getpid()}", flush=True)
    if isinstance(event, dict) and event.get("sleep"):
        time.sleep(float(event["sleep"]))
    return {"event": event, "pid": os.getpid()}


def too_big(event: Any, context: Any) -> str:
    return "x" * (7 * 1024 * 1024)
