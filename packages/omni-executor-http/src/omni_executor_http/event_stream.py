"""Reading an image server's Server-Sent Events back into previews and an answer.

The ``http`` and ``external`` executors ask for ``stream=true`` when a request
wants previews (``partial_images``); this turns OpenAI's events back into what
a plain request returns (``{"data": [{"b64_json": ...}], "omni": ...}``) and
hands each preview to the executor as it arrives, so omni-to-omni keeps them.
The parsing is the SSE format's own (``event:``/``data:`` lines, a blank line
ends an event), on ``httpx``'s line iterator; nothing here trusts a size or a
count the server sends beyond what it delivers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from omni_core import OmniDiffusionRequest, ProgressEvent, RemoteError
from omni_core.executors import ImageArray, decode_png_b64
from omni_core.previews import Preview

PreviewSink = Callable[[int, int, ImageArray], None]
"""``(partial_image_index, image_index, image)`` for each partial image event."""


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON data of each event, in order."""
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif not line and data:
            yield _json("\n".join(data))
            data = []
    if data:
        yield _json("\n".join(data))


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RemoteError(f"the server's event stream holds an event that is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RemoteError("the server's event stream holds an event that is not a JSON object")
    return value


def read_event_stream(response: httpx.Response, on_preview: PreviewSink | None) -> dict[str, Any]:
    """The answer a streamed request amounts to; previews go to ``on_preview`` on the way."""
    from omni_executor_http.client import failure_from_body

    completed: dict[int, dict[str, Any]] = {}
    for event in events(response):
        kind = str(event.get("type", ""))
        index = event.get("image_index", len(completed))
        image_index = index if isinstance(index, int) else len(completed)
        if kind == "error":
            raise failure_from_body(200, event, json.dumps(event)[:500])
        if kind.endswith(".partial_image") and on_preview is not None:
            step = event.get("partial_image_index")
            on_preview(step if isinstance(step, int) else 0, image_index, decode_png_b64(event["b64_json"]))
        elif kind.endswith(".completed"):
            completed[image_index] = event
    if not completed:
        raise RemoteError("the server's event stream ended without a completed image")
    ordered = [completed[key] for key in sorted(completed)]
    return {"data": [{"b64_json": event["b64_json"]} for event in ordered], "omni": ordered[0].get("omni")}


class RemotePreviews:
    """Gathers a request's partial images (one event per image) into :class:`ProgressEvent` s.

    A preview is emitted once every image of the request has its partial image at that
    index. Its ``step`` counts previews, not denoising steps (a remote server's stream
    says which preview it is, not which step): preview ``i`` of ``k`` is step ``i + 1``
    of ``k + 1``.
    """

    def __init__(self, request: OmniDiffusionRequest, emit: Callable[[ProgressEvent], None]) -> None:
        self.request = request
        self.emit = emit
        self.expected = request.num_outputs_per_prompt * max(1, len(request.images))
        self._pending: dict[int, dict[int, ImageArray]] = {}

    def __call__(self, index: int, image_index: int, image: ImageArray) -> None:
        images = self._pending.setdefault(index, {})
        images[image_index] = image
        if len(images) < self.expected:
            return
        del self._pending[index]
        preview = Preview(index, tuple(images[key] for key in sorted(images)))
        total = self.request.partial_images + 1
        self.emit(ProgressEvent(self.request.request_id, index + 1, total, preview))
