"""Streaming and the rest of the Images API, through the official ``openai`` client.

A real ``omni serve`` on 127.0.0.1 with the shapes pipeline on random weights (pixel space:
previews are its exact x0, and its inpainting keeps unmasked pixels exactly).
"""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
import pytest
from conftest import SHAPES_KEY as KEY
from PIL import Image

from omni_executor_http.testing import ServerProcess

PROMPT = "a red circle on a blue background"


def client(server: ServerProcess) -> object:
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(name)]
    return sum(float(value) for value in values)


def test_generate_streams_partial_images_then_the_same_final_image(shapes_server: ServerProcess) -> None:
    openai = client(shapes_server)
    extra = {"seed": 4, "num_inference_steps": 8}
    events = list(
        openai.images.generate(  # type: ignore[attr-defined]
            prompt=PROMPT, size="64x64", stream=True, partial_images=2, extra_body=extra
        )
    )
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [event.partial_image_index for event in events[:2]] == [0, 1]
    completed = events[-1]
    assert completed.size == "64x64"
    assert completed.output_format == "png"
    assert completed.usage.output_tokens > 0
    assert completed.usage.total_tokens == completed.usage.input_tokens + completed.usage.output_tokens
    partials = [decode(event.b64_json) for event in events[:2]]
    assert all(image.shape == (64, 64, 3) for image in partials)
    final = decode(completed.b64_json)
    plain = openai.images.generate(prompt=PROMPT, size="64x64", extra_body=extra)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(final, decode(plain.data[0].b64_json))
    assert plain.usage.output_tokens == completed.usage.output_tokens
    assert distance(partials[1], final) < distance(partials[0], final)


def test_each_of_n_images_gets_its_events(shapes_server: ServerProcess) -> None:
    events = list(
        client(shapes_server).images.generate(  # type: ignore[attr-defined]
            prompt="a yellow star", n=2, stream=True, partial_images=1, extra_body={"seed": 1}
        )
    )
    kinds = [(event.type.rsplit(".", 1)[1], event.model_extra["image_index"]) for event in events]
    assert kinds == [("partial_image", 0), ("partial_image", 1), ("completed", 0), ("completed", 1)]


def test_edit_streams_with_a_mask(shapes_server: ServerProcess) -> None:
    image = Image.new("RGB", (64, 64), "white")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    files = []
    for picture in (image, mask):
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        files.append(("picture.png", buffer.getvalue(), "image/png"))
    events = list(
        client(shapes_server).images.edit(  # type: ignore[attr-defined]
            image=files[0],
            mask=files[1],
            prompt="a green star on a white background",
            stream=True,
            partial_images=2,
            extra_body={"seed": 2},
        )
    )
    assert [event.type for event in events] == ["image_edit.partial_image"] * 2 + ["image_edit.completed"]
    final = decode(events[-1].b64_json)
    # Outside the mask the picture is kept exactly (the built-in inpainting keeps black-masked pixels).
    assert (final[:16] == 255).all()


def test_a_client_leaving_mid_stream_leaves_no_work_running(shapes_server: ServerProcess) -> None:
    aborted_before = metric(shapes_server, 'omni_requests_abandoned_total{outcome="aborted"}')
    body = {"prompt": PROMPT, "stream": True, "partial_images": 3, "num_inference_steps": 200, "seed": 1}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", f"{shapes_server.url}/v1/images/generations", json=body, headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: image_generation.partial_image"):
                break  # the first partial image: hang up
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if metric(shapes_server, "omni_queue_depth") == 0 and (
            metric(shapes_server, 'omni_requests_abandoned_total{outcome="aborted"}') > aborted_before
        ):
            break
        time.sleep(0.2)
    assert metric(shapes_server, "omni_queue_depth") == 0
    assert metric(shapes_server, 'omni_requests_abandoned_total{outcome="aborted"}') == aborted_before + 1
    steps = metric(shapes_server, "omni_abandoned_steps_total")
    time.sleep(1.0)
    assert metric(shapes_server, "omni_abandoned_steps_total") == steps  # nothing is still stepping


@pytest.mark.parametrize("output_format", ["jpeg", "webp"])
def test_lossy_formats_decode_at_the_size_and_compression_changes_bytes(
    shapes_server: ServerProcess, output_format: str
) -> None:
    openai = client(shapes_server)
    sizes = []
    for compression in (10, 95):
        response = openai.images.generate(  # type: ignore[attr-defined]
            prompt=PROMPT,
            size="96x64",
            output_format=output_format,
            output_compression=compression,
            extra_body={"seed": 3},
        )
        raw = base64.b64decode(response.data[0].b64_json)
        picture = Image.open(io.BytesIO(raw))
        assert picture.format == output_format.upper()
        assert picture.size == (96, 64)
        assert response.output_format == output_format
        sizes.append(len(raw))
    assert sizes[0] < sizes[1]


def test_url_responses_need_the_key_and_expire(shapes_server: ServerProcess) -> None:
    openai = client(shapes_server)
    as_b64 = openai.images.generate(prompt=PROMPT, size="64x64", extra_body={"seed": 5})  # type: ignore[attr-defined]
    as_url = openai.images.generate(  # type: ignore[attr-defined]
        prompt=PROMPT, size="64x64", response_format="url", extra_body={"seed": 5}
    )
    url = as_url.data[0].url
    assert url.startswith(shapes_server.url + "/v1/images/")
    fetched = httpx.get(url, headers={"Authorization": f"Bearer {KEY}"})
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(fetched.content)).convert("RGB"))
    np.testing.assert_array_equal(pixels, decode(as_b64.data[0].b64_json))
    assert httpx.get(url).status_code == 401
    time.sleep(3.5)  # the server's --image-url-ttl
    assert httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}).status_code == 404


def test_quality_maps_to_steps_and_every_response_has_usage(shapes_server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{shapes_server.url}/v1/images/generations"
    low = httpx.post(url, json={"prompt": PROMPT, "quality": "low", "seed": 1}, headers=headers, timeout=60)
    explicit = httpx.post(url, json={"prompt": PROMPT, "num_inference_steps": 4, "seed": 1}, headers=headers)
    high = httpx.post(url, json={"prompt": PROMPT, "quality": "high", "seed": 1}, headers=headers, timeout=60)
    assert low.status_code == explicit.status_code == high.status_code == 200
    assert low.json()["data"][0]["b64_json"] == explicit.json()["data"][0]["b64_json"]  # low = 4 steps
    assert high.json()["data"][0]["b64_json"] != low.json()["data"][0]["b64_json"]
    for response in (low, explicit, high):
        usage = response.json()["usage"]
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("output_format", "gif"),
        ("output_compression", 101),
        ("background", "transparent"),
        ("background", "glass"),
        ("quality", "ultra"),
        ("response_format", "file"),
        ("moderation", "none"),
        ("partial_images", 4),
        ("stream", "yes"),
    ],
)
def test_bad_values_of_the_new_fields_name_the_field(
    shapes_server: ServerProcess, field: str, value: object
) -> None:
    body = {"prompt": PROMPT, field: value}
    if field == "partial_images":
        body["stream"] = True
    response = httpx.post(
        f"{shapes_server.url}/v1/images/generations", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field


def test_transparent_background_says_the_model_has_no_alpha(shapes_server: ServerProcess) -> None:
    response = httpx.post(
        f"{shapes_server.url}/v1/images/generations",
        json={"prompt": PROMPT, "background": "transparent"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert "alpha" in response.json()["error"]["message"]


def test_moderation_is_accepted_as_openai_documents_it(shapes_server: ServerProcess) -> None:
    for level in ("auto", "low"):
        response = client(shapes_server).images.generate(prompt=PROMPT, moderation=level, size="64x64")  # type: ignore[attr-defined]
        assert response.data[0].b64_json
