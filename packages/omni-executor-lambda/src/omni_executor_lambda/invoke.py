"""One synchronous Lambda invocation through boto3, classified into outcomes the executor acts on.

botocore's defaults would undo the executor's guarantees: in "standard" mode
it retries read timeouts, so a generation longer than 60 s is silently sent
again and the model runs twice. The client built here makes exactly one
attempt per call and waits longer than the function can run; the executor
does its own backoff, and only for errors that prove the function never ran
(throttling, a connection that was never made).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
from botocore import UNSIGNED

from omni_core import RemoteError, RequestTimeoutError
from omni_core.executors import RetryLater, parse_retry_after

# Throttle reasons that mean "too many calls per second" rather than "too many at once":
# waiting for a running invocation to finish does not help, so wait at least a second.
RATE_LIMIT_REASONS = frozenset(
    {
        "FunctionInvocationRateLimitExceeded",
        "ReservedFunctionInvocationRateLimitExceeded",
        "CallerRateLimitExceeded",
    }
)
RATE_LIMIT_MIN_WAIT = 1.0


class ThrottledError(RetryLater):
    """HTTP 429: the function did not run; retry after a while (at least a second for rate limits)."""

    def __init__(self, message: str, *, reason: str | None, retry_after: float | None) -> None:
        min_wait = RATE_LIMIT_MIN_WAIT if reason in RATE_LIMIT_REASONS else 0.0
        super().__init__(message, retry_after=retry_after, min_wait=min_wait, overloaded=True)
        self.reason = reason


class NotReachedError(RetryLater):
    """The connection was never made: the function did not run; safe to retry."""


@dataclass(frozen=True)
class InvokeResult:
    """A 200 answer: the function's return value, or its error (``function_error`` set)."""

    payload: Any
    function_error: str | None
    log_tail: str | None
    executed_version: str | None


def make_lambda_client(
    *,
    region: str,
    endpoint_url: str | None,
    read_timeout: float,
    connect_timeout: float,
    max_connections: int,
) -> Any:
    """A boto3 Lambda client that never re-sends an invocation on its own.

    ``read_timeout`` must be longer than the function's timeout, so the
    client never gives up on an invocation that is still running.
    """
    session = boto3.session.Session(region_name=region)
    config = botocore.config.Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=read_timeout,
        connect_timeout=connect_timeout,
        max_pool_connections=max_connections,
        tcp_keepalive=True,
        signature_version=_signature_version(session, endpoint_url),
    )
    return session.client("lambda", endpoint_url=endpoint_url, config=config)


def make_s3_client(*, region: str, endpoint_url: str | None, max_connections: int) -> Any:
    """The S3 client that reads offloaded images (``endpoint_url`` ``None``: AWS, or ``AWS_ENDPOINT_URL``)."""
    session = boto3.session.Session(region_name=region)
    config = botocore.config.Config(
        retries={"total_max_attempts": 3, "mode": "standard"},  # reads are safe to repeat
        max_pool_connections=max_connections,
        signature_version=_signature_version(session, endpoint_url) or "s3v4",
    )
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def _signature_version(session: Any, endpoint_url: str | None) -> Any:
    """Unsigned requests to a loopback endpoint when no credentials exist (the local service checks none)."""
    if endpoint_url is None or session.get_credentials() is not None:
        return None
    host = urllib.parse.urlsplit(endpoint_url).hostname or ""
    return UNSIGNED if host in {"127.0.0.1", "localhost", "::1"} else None


def invoke(
    client: Any,
    *,
    function_name: str,
    qualifier: str | None,
    payload: bytes,
    log_tail: bool,
) -> InvokeResult:
    """Invoke once, synchronously; raise :class:`ThrottledError`, :class:`NotReachedError` (retried)
    or omni's :class:`RemoteError`/:class:`RequestTimeoutError` (final), else return the 200 answer."""
    kwargs: dict[str, Any] = {
        "FunctionName": function_name,
        "InvocationType": "RequestResponse",
        "LogType": "Tail" if log_tail else "None",
        "Payload": payload,
    }
    if qualifier:
        kwargs["Qualifier"] = qualifier
    try:
        response = client.invoke(**kwargs)
    except botocore.exceptions.ClientError as exc:
        raise _classify_client_error(exc) from exc
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError) as exc:
        raise NotReachedError(f"{type(exc).__name__}: {exc}") from exc
    except botocore.exceptions.ReadTimeoutError as exc:
        raise RequestTimeoutError(
            f"LambdaReadTimeout: no answer from Lambda within the read timeout ({exc}); not re-sent "
            "because the function may have run: raise function_timeout if the function's timeout is longer",
            retryable=False,
        ) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise RemoteError(f"{type(exc).__name__}: {exc}") from exc
    raw = response["Payload"].read()
    log = response.get("LogResult")
    return InvokeResult(
        payload=_decode_payload(raw),
        function_error=response.get("FunctionError"),
        log_tail=base64.b64decode(log).decode("utf-8", "replace") if log else None,
        executed_version=response.get("ExecutedVersion"),
    )


def _decode_payload(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _classify_client_error(exc: botocore.exceptions.ClientError) -> Exception:
    """AWS's error, in its own words: throttling is retried, anything else fails the invocation."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "ServiceException")
    message = str(error.get("Message") or exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "TooManyRequestsException" or status == 429:
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        reason = exc.response.get("Reason") or error.get("Reason")
        return ThrottledError(
            f"{code}: {message}" + (f" (reason: {reason})" if reason else ""),
            reason=str(reason) if reason else None,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
    return RemoteError(f"{code}: {message}")
