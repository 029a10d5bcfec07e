"""``LambdaDiffusionExecutor``: run requests as synchronous AWS Lambda invocations.

Requests are grouped ``requests_per_invocation`` at a time and the groups
fan out over at most ``concurrency`` concurrent invocations, all through one
boto3 client (clients are thread-safe; sessions are not). A 429 is retried
by core's one retry policy (:mod:`omni_core.retry`: full jitter, never sooner
than ``Retry-After``, at least a second for rate-limit reasons); nothing that
may have reached the function is ever re-sent (see :mod:`.invoke`). Failures
come back in omni's classes with AWS's own words.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omni_core import DiffusionOutput, ExecutorDeadError, OmniError, RemoteError, RequestTimeoutError
from omni_core.executors import RemoteCall, RemoteDiffusionExecutor, RetryPolicy, above, at_least
from omni_executor_lambda.invoke import InvokeResult, invoke, make_lambda_client, make_s3_client
from omni_executor_lambda.protocol import build_event


@dataclass(frozen=True)
class LambdaOptions:
    """Options of the Lambda executor (``config.executor_options``)."""

    function_name: str = "omni"
    """Name or ARN of the function."""
    qualifier: str | None = None
    """Version or alias; ``None`` is ``$LATEST``."""
    region: str | None = None
    """``None`` reads ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the AWS config file."""
    endpoint_url: str | None = None
    """Another Invoke API endpoint, e.g. ``omni lambda local``'s ``http://127.0.0.1:9001``."""
    concurrency: int = field(default=4, metadata=at_least(1))
    """Most invocations in flight at once (and boto3's connection pool size)."""
    function_timeout: float = field(default=900.0, metadata=above(0))
    """The function's timeout; the client waits this plus ``read_timeout_margin`` (never giving up first)."""
    read_timeout_margin: float = field(default=30.0, metadata=above(0))
    connect_timeout: float = field(default=5.0, metadata=above(0))
    requests_per_invocation: int = field(default=1, metadata=at_least(1))
    max_throttle_retries: int = field(default=10, metadata=at_least(0))
    backoff_base: float = field(default=0.1, metadata=above(0))
    backoff_max: float = field(default=20.0, metadata=above(0))
    s3_endpoint_url: str | None = None
    """Where offloaded images are read; ``None``: AWS (or ``AWS_ENDPOINT_URL[_S3]``)."""
    log_tail: bool = False
    """Ask for the last 4 KB of the function's log and append it to function errors."""
    health_timeout: float = field(default=5.0, metadata=above(0))
    """Seconds ``check_health`` (a DryRun invocation) may take; a server's /health must answer fast
    even when the Lambda endpoint stalls (the invocation client waits up to the function timeout)."""

    def __post_init__(self) -> None:
        if not self.function_name:
            raise ValueError("function_name must name the Lambda function (name or ARN)")
        for name in ("endpoint_url", "s3_endpoint_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"{name} must start with http:// or https://, got {url!r}")


class LambdaDiffusionExecutor(RemoteDiffusionExecutor):
    """Invokes an omni function (``omni_executor_lambda.function.handler``) on AWS Lambda."""

    options_class = LambdaOptions
    options: LambdaOptions
    remote_name = "the Lambda function"

    def _init_remote(self) -> None:
        options = self.options
        self.region = _resolve_region(options.region)
        self.max_concurrent_submits = options.concurrency
        self.requests_per_call = options.requests_per_invocation
        self.client = make_lambda_client(
            region=self.region,
            endpoint_url=options.endpoint_url,
            read_timeout=options.function_timeout + options.read_timeout_margin,
            connect_timeout=options.connect_timeout,
            max_connections=options.concurrency,
        )
        # Its own client: the invocation client's read timeout is the function's (up to 15 min).
        self.health_client = make_lambda_client(
            region=self.region,
            endpoint_url=options.endpoint_url,
            read_timeout=options.health_timeout,
            connect_timeout=min(options.connect_timeout, options.health_timeout),
            max_connections=1,
        )

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.options.max_throttle_retries, self.options.backoff_base, self.options.backoff_max
        )

    # ------------------------------------------------------------ requests

    def _call(self, call: RemoteCall) -> Sequence[DiffusionOutput]:
        """One synchronous invocation; throttling and unmade connections raise ``RetryLater``."""
        requests = call.requests
        # One key per invocation, kept across throttling retries (which never reached the function).
        memo = call.pending[0].memo
        if "payload" not in memo:
            memo["payload"] = build_event(requests, uuid.uuid4().hex)
        result = invoke(
            self.client,
            function_name=self.options.function_name,
            qualifier=self.options.qualifier,
            payload=memo["payload"],
            log_tail=self.options.log_tail,
        )
        if result.function_error is not None:
            raise _function_error(result)
        return self._outputs_from_payload(call, result.payload)

    def _outputs_from_payload(self, call: RemoteCall, payload: Any) -> list[DiffusionOutput]:
        try:
            by_id = {item["request_id"]: item for item in payload["outputs"]}
        except (KeyError, TypeError) as exc:
            raise RemoteError(
                f"the function returned something that is not an omni response ({exc!r}): "
                f"{str(payload)[:300]}; is function_name pointing at an omni function?"
            ) from exc
        outputs: list[DiffusionOutput] = []
        for request in call.requests:
            item = by_id.get(request.request_id)
            if item is None:
                missing = RemoteError("the function returned no output for this request")
                outputs.append(DiffusionOutput.failure(request.request_id, missing))
                continue
            output = self._restore_output(request.request_id, item)
            output.timings = {f"function_{name}": seconds for name, seconds in output.timings.items()}
            outputs.append(output)
        return outputs

    def _make_s3_client(self) -> Any:
        return make_s3_client(
            region=self.region,
            endpoint_url=self.options.s3_endpoint_url,
            max_connections=self.options.concurrency,
        )

    # ------------------------------------------------------ rpc, health, stop

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        """Only ``ping``: a DryRun invocation (checks the function exists and may be invoked)."""
        if method != "ping":
            raise AttributeError(f"collective_rpc: the Lambda executor supports ['ping'], not {method!r}")
        self._dry_run()
        return ["pong"]

    def _check_remote(self) -> None:
        try:
            self._dry_run()
        except Exception as exc:
            raise ExecutorDeadError(
                f"Lambda function {self.options.function_name!r} cannot be invoked: {exc}"
            ) from exc

    def _dry_run(self) -> None:
        kwargs: dict[str, Any] = {"FunctionName": self.options.function_name, "InvocationType": "DryRun"}
        if self.options.qualifier:
            kwargs["Qualifier"] = self.options.qualifier
        self.health_client.invoke(**kwargs)

    def _close_remote(self) -> None:
        self.client.close()
        self.health_client.close()


def _resolve_region(region: str | None) -> str:
    resolved = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if resolved:
        return resolved
    import boto3

    resolved = boto3.session.Session().region_name
    if not resolved:
        raise ValueError("no AWS region: set executor_options['region'] (e.g. 'us-east-1') or AWS_REGION")
    return str(resolved)


def _function_error(result: InvokeResult) -> OmniError:
    """``X-Amz-Function-Error`` as omni's failure, in AWS's own words (a function timeout is a timeout)."""
    payload = result.payload
    if isinstance(payload, dict):
        error_type = str(payload.get("errorType") or result.function_error or "Unhandled")
        message = f"{error_type}: {payload.get('errorMessage') or payload}"
    else:
        error_type = str(result.function_error or "Unhandled")
        message = f"{error_type}: {payload}"
    if result.log_tail:
        message += f"\n--- function log (tail) ---\n{result.log_tail.strip()}"
    if error_type == "Sandbox.Timedout":
        return RequestTimeoutError(message, retryable=False)
    return RemoteError(message)
