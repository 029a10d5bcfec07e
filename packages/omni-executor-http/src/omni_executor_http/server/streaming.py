"""``stream=true``: OpenAI's image events as Server-Sent Events.

The shapes are OpenAI's (``image_generation.partial_image`` /
``image_generation.completed``, ``image_edit.*`` for edits): ``type``,
``b64_json``, ``created_at``, ``size``, ``quality``, ``background``,
``output_format``, ``partial_image_index`` on partial images and ``usage`` on
completion, each sent as ``event: <type>`` plus one ``data:`` line of JSON,
which is what the ``openai`` client reads. With ``n`` > 1 every image gets its
own events, in order, each carrying ``image_index`` (OpenAI's events have no
such field; clients that do not know it ignore it). A failure after the
stream began is an ``error`` event with OpenAI's error object, which the
``openai`` client raises as an ``APIError``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from omni_core import DiffusionOutput, OmniDiffusionRequest, ProgressEvent
from omni_executor_http.output import OutputOptions, usage_for

EVENT_KINDS = ("image_generation", "image_edit")
DONE = object()
"""What :func:`next_item` returns once the request's future is done and every preview was read."""


def sse(event: dict[str, Any]) -> bytes:
    """One Server-Sent Event: its ``type`` as the event name, the JSON as its data."""
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _common(options: OutputOptions, size: str, image_index: int) -> dict[str, Any]:
    return {
        "created_at": int(time.time()),
        "size": size,
        "quality": options.quality,
        "background": options.background,
        "output_format": options.output_format,
        "image_index": image_index,
    }


def partial_image_event(
    kind: str, b64: str, options: OutputOptions, size: str, index: int, image_index: int
) -> dict[str, Any]:
    return {
        "type": f"{kind}.partial_image",
        "b64_json": b64,
        "partial_image_index": index,
        **_common(options, size, image_index),
    }


def completed_event(
    kind: str, b64: str, options: OutputOptions, size: str, usage: dict[str, Any], image_index: int
) -> dict[str, Any]:
    return {
        "type": f"{kind}.completed",
        "b64_json": b64,
        **_common(options, size, image_index),
        "usage": usage,
    }


def error_event(body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "error", **body}


async def next_item(
    queue: asyncio.Queue[ProgressEvent],
    waiting: asyncio.Future[DiffusionOutput],
    timeout: float | None = None,
) -> ProgressEvent | object | None:
    """The next preview event, :data:`DONE` once the request ended and no preview is left, or None
    when ``timeout`` passed first (the caller checks its client then)."""
    if not queue.empty():
        return queue.get_nowait()
    if waiting.done():
        return DONE
    getter = asyncio.ensure_future(queue.get())
    pending: set[asyncio.Future[Any]] = {getter, waiting}
    done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()
    if waiting in done:
        # Previews are queued (call_soon_threadsafe) before the future's result reaches this
        # loop, the same way, so any left are already in the queue.
        return queue.get_nowait() if not queue.empty() else DONE
    return None


async def preview_events(
    kind: str, event: ProgressEvent, options: OutputOptions, encode: Any
) -> AsyncIterator[bytes]:
    """The partial-image events of one preview (one per image of the request)."""
    assert event.preview is not None
    for image_index, image in enumerate(event.preview.images):
        b64 = await encode(image)
        size = f"{image.shape[1]}x{image.shape[0]}"
        yield sse(partial_image_event(kind, b64, options, size, event.preview.index, image_index))


async def completed_events(
    kind: str,
    output: DiffusionOutput,
    request: OmniDiffusionRequest,
    options: OutputOptions,
    encoded: list[str],
) -> AsyncIterator[bytes]:
    height, width = output.output[0].shape[:2]
    size = f"{width}x{height}"
    usage = usage_for(request, height, width, len(output.output))
    omni = {"request_id": output.request_id, "seed": output.seed, "timings": output.timings}
    for image_index, b64 in enumerate(encoded):
        # omni's own block (seed, timings) as plain answers carry it; other clients ignore it.
        yield sse({**completed_event(kind, b64, options, size, usage, image_index), "omni": omni})
