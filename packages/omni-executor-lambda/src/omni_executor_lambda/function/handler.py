"""The Lambda handler: set ``Handler`` (or the image's ``CMD``) to
``omni_executor_lambda.function.handler.handler``.

The model is loaded once per execution environment, on the first
invocation, through core's :class:`DiffusionModelRunner` (the same runner
as every other executor, so the same seed gives the same image). By default it
loads lazily rather than at import, which keeps the init phase under
Lambda's 10 s limit for large models; ``OMNI_EAGER_LOAD=1`` loads during
init instead (with provisioned concurrency or SnapStart, so no invocation
pays for it). Later invocations in the environment reuse it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from omni_core import DiffusionOutput, OmniDiffusionRequest, RequestValidationError
from omni_core.executors import RunnerHost, S3ImageRef, offload_images, put_png
from omni_executor_lambda.function.settings import FunctionSettings
from omni_executor_lambda.protocol import build_response, parse_event, response_size

# Responses kept per environment by idempotency key, so a repeated event is answered, not re-run.
RECENT_RESPONSES = 8


class ResponseTooLargeError(RuntimeError):
    """The images do not fit Lambda's response and no bucket is configured."""


class _Environment:
    """What lives as long as the execution environment: settings, the loaded model, recent answers."""

    def __init__(self) -> None:
        self.settings = FunctionSettings.from_environ()
        started = time.perf_counter()
        self.host = RunnerHost(self.settings.diffusion_config())
        print(
            f"omni: loaded {self.host.runner.model_path} in {time.perf_counter() - started:.2f}s", flush=True
        )
        self.recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._s3: Any = None

    def s3(self) -> Any:
        if self._s3 is None:
            import boto3
            import botocore.config

            # AWS_ENDPOINT_URL (set for local S3) is honoured by boto3 itself.
            self._s3 = boto3.client("s3", config=botocore.config.Config(signature_version="s3v4"))
        return self._s3


_environment: _Environment | None = None
_environment_lock = threading.Lock()


def _get_environment() -> _Environment:
    global _environment
    with _environment_lock:
        if _environment is None:
            _environment = _Environment()
        return _environment


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Run the event's requests; one output per request, a bad request failing alone."""
    environment = _get_environment()
    settings = environment.settings
    key, raw_requests = parse_event(event, max_requests=settings.max_requests_per_invocation)
    if key is not None and key in environment.recent:
        print(f"omni: idempotency key {key} seen before in this environment; answering again", flush=True)
        return environment.recent[key]
    started = time.perf_counter()
    outputs: list[DiffusionOutput | None] = [None] * len(raw_requests)
    runnable: list[tuple[int, OmniDiffusionRequest]] = []
    for index, raw in enumerate(raw_requests):
        try:
            runnable.append((index, OmniDiffusionRequest.from_dict(raw)))
        except RequestValidationError as exc:  # the field at fault named, as every entry point names it
            request_id = raw.get("request_id") if isinstance(raw, dict) else None
            outputs[index] = DiffusionOutput.failure(str(request_id or f"request-{index}"), exc)
    if runnable:
        results = environment.host.execute([request for _, request in runnable])
        for (index, _), output in zip(runnable, results, strict=True):
            outputs[index] = output
    response = build_response([output.to_dict() for output in outputs if output is not None])
    size = response_size(response)
    if size > settings.response_limit:
        response = _offload_images(environment, response, key or uuid.uuid4().hex, size)
    ok = sum(1 for output in outputs if output is not None and output.ok)
    print(
        f"omni: {len(raw_requests)} request(s), {ok} ok, {time.perf_counter() - started:.3f}s, "
        f"response {response_size(response)} bytes",
        flush=True,
    )
    if key is not None:
        environment.recent[key] = response
        while len(environment.recent) > RECENT_RESPONSES:
            environment.recent.popitem(last=False)
    return response


def _offload_images(
    environment: _Environment, response: dict[str, Any], key: str, size: int
) -> dict[str, Any]:
    settings = environment.settings
    if settings.s3_bucket is None:
        raise ResponseTooLargeError(
            f"the response is {size} bytes, over Lambda's limit of {settings.response_limit}; set the "
            "function's OMNI_S3_BUCKET so images are written to S3, or ask for fewer/smaller images"
        )

    def uploader(request_id: str) -> Callable[[int, bytes], S3ImageRef]:
        def put(number: int, png: bytes) -> S3ImageRef:
            return put_png(
                environment.s3(),
                bucket=str(settings.s3_bucket),
                key=f"{settings.s3_prefix}{key}/{request_id}/{number}.png",
                png=png,
                presign_seconds=settings.presign_seconds,
            )

        return put

    response["outputs"] = [
        offload_images(output, uploader(output["request_id"])) for output in response["outputs"]
    ]
    remaining = response_size(response)
    if remaining > settings.response_limit:
        raise ResponseTooLargeError(
            f"even with its images in S3 the response is {remaining} bytes (return_trajectory latents?), "
            f"over Lambda's limit of {settings.response_limit}"
        )
    return response


if os.environ.get("OMNI_EAGER_LOAD", "").lower() in {"1", "true", "yes"}:
    _get_environment()
