"""The JSON that crosses Lambda's Invoke API, shared by the executor and the handler.

Event (the invocation's payload)::

    {"omni": 1, "idempotency_key": "<hex>", "requests": [<OmniDiffusionRequest.to_dict()>, ...]}

Response (the function's return value)::

    {"omni": 1, "outputs": [<DiffusionOutput.to_dict()>, ...]}

where an item of an output's ``output`` list is either a base64 PNG (inline)
or ``{"s3": <S3ImageRef>}`` when the function wrote the images to S3 because
the inline response would pass Lambda's 6 MB limit. Plain JSON both ways:
nothing received is ever unpickled.
"""

from __future__ import annotations

import json
from typing import Any

from omni_core import OmniDiffusionRequest

PROTOCOL_VERSION = 1

# Lambda's synchronous payload limits (bytes), the same both ways.
SYNC_REQUEST_LIMIT = 6 * 1024 * 1024
SYNC_RESPONSE_LIMIT = 6 * 1024 * 1024
# Asynchronous (Event) invocations: 1 MB.
EVENT_REQUEST_LIMIT = 1024 * 1024


class InvalidEventError(ValueError):
    """The event is not an omni event; the message names the field and the fix."""


def build_event(requests: list[OmniDiffusionRequest], idempotency_key: str) -> bytes:
    """The invocation payload for ``requests`` (UTF-8 JSON)."""
    event = {
        "omni": PROTOCOL_VERSION,
        "idempotency_key": idempotency_key,
        "requests": [request.to_dict() for request in requests],
    }
    return json.dumps(event, separators=(",", ":")).encode()


def parse_event(event: Any, *, max_requests: int) -> tuple[str | None, list[Any]]:
    """Check the event's envelope; return its idempotency key and raw request dicts.

    Each request dict is parsed later, one by one, so that a bad request fails
    alone instead of failing the invocation.
    """
    if not isinstance(event, dict):
        raise InvalidEventError(
            f"the event must be a JSON object like {{'requests': [...]}}, got {type(event).__name__}"
        )
    version = event.get("omni", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise InvalidEventError(
            f"event field 'omni' is {version!r}; this function speaks version {PROTOCOL_VERSION}: "
            "upgrade the client or the function so they match"
        )
    unknown = sorted(set(event) - {"omni", "idempotency_key", "requests"})
    if unknown:
        raise InvalidEventError(
            f"unknown event field(s) {unknown}; valid fields are ['idempotency_key', 'omni', 'requests']"
        )
    requests = event.get("requests")
    if not isinstance(requests, list) or not requests:
        raise InvalidEventError("event field 'requests' must be a non-empty list of request objects")
    if len(requests) > max_requests:
        raise InvalidEventError(
            f"event field 'requests' has {len(requests)} items, over this function's limit of "
            f"{max_requests}; send fewer per invocation (the executor's requests_per_invocation)"
        )
    key = event.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not key or len(key) > 128):
        raise InvalidEventError("event field 'idempotency_key' must be a string of 1 to 128 characters")
    return key, requests


def build_response(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The handler's return value for already-serialised outputs."""
    return {"omni": PROTOCOL_VERSION, "outputs": outputs}


def response_size(response: dict[str, Any]) -> int:
    """Bytes of ``response`` as Lambda will serialise it."""
    return len(json.dumps(response, separators=(",", ":")).encode())
