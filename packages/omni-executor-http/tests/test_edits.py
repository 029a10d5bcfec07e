"""Image-to-image, inpainting, pipeline arguments and LoRA over HTTP, against a real `omni serve`.

``POST /v1/images/edits`` takes OpenAI's multipart form: the official ``openai``
client's ``images.edit`` works unchanged, the http executor sends image requests
there, and every image equals the in-process executor's. Hostile uploads (not an
image, truncated, a decompression bomb, 16-bit, a mask of another size, too big)
get a 4xx naming the field, and a good request succeeds after each.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import ServerProcess
from PIL import Image

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest, RequestValidationError
from omni_core.executors import encode_png
from omni_core.testing_pipelines import sample_image, sample_mask

IMAGE = sample_image(seed=5)
MASK = sample_mask()


@pytest.fixture(scope="module")
def local(tiny_model: Path, tiny_lora: Path) -> Iterator[DiffusionEngine]:
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), executor_class="inproc", loras={"sketch": str(tiny_lora)}
    )
    with DiffusionEngine(config) as engine:
        yield engine


def request(**fields: Any) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(**{"prompt": "a 7", "seed": 3, "num_inference_steps": 3, **fields})


def png_b64(image: np.ndarray) -> str:
    return base64.b64encode(encode_png(image)).decode()


def test_the_openai_clients_images_edit_gets_the_in_process_image(
    server: ServerProcess, local: DiffusionEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "photo.png").write_bytes(encode_png(IMAGE))
    (tmp_path / "mask.png").write_bytes(encode_png(MASK))  # white: repaint
    base_url = f"{server.url}/v1"
    monkeypatch.chdir(tmp_path)
    # --8<-- [start:openai-edit]
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="unused")  # base_url: "http://127.0.0.1:8000/v1"
    with open("photo.png", "rb") as photo, open("mask.png", "rb") as mask:
        answer = client.images.edit(
            image=photo,
            mask=mask,
            prompt="a 7",
            n=2,
            size="64x64",
            response_format="b64_json",
            extra_body={"seed": 3, "num_inference_steps": 3, "strength": 0.9},  # omni's diffusion fields
        )
    # --8<-- [end:openai-edit]
    got = [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(item.b64_json or ""))))
        for item in answer.data or []
    ]
    want = local.step([request(image=IMAGE, mask_image=MASK, strength=0.9, num_outputs_per_prompt=2)])[0]
    assert len(got) == 2
    for a, b in zip(got, want.raise_for_error().output, strict=True):
        assert np.array_equal(a, b)


def test_openai_transparent_mask_means_repaint(server: ServerProcess, local: DiffusionEngine) -> None:
    # OpenAI's convention: the mask's fully transparent pixels are the ones to edit.
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[:, :, 3] = np.where(MASK == 255, 0, 255)
    response = httpx.post(
        f"{server.url}/v1/images/edits",
        data={"prompt": "a 7", "seed": "3", "num_inference_steps": "3"},
        files=[
            ("image", ("i.png", encode_png(IMAGE), "image/png")),
            ("mask", ("m.png", encode_png(rgba), "image/png")),
        ],
        timeout=60,
    )
    assert response.status_code == 200, response.text
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(response.json()["data"][0]["b64_json"]))))
    assert np.array_equal(
        got, local.step([request(image=IMAGE, mask_image=MASK)])[0].raise_for_error().output[0]
    )


def test_the_http_executor_carries_images_extras_and_loras(
    server: ServerProcess, local: DiffusionEngine
) -> None:
    cases = [
        request(image=IMAGE, strength=0.6),
        request(image=[IMAGE, sample_image(seed=6)], strength=0.7),
        request(image=IMAGE, mask_image=MASK, height=32, width=32),
        request(height=64, width=64, extra={"eta": 1.0, "guidance_rescale": 0.3}),
        request(height=64, width=64, lora="sketch", lora_scale=0.7),
        request(image=IMAGE, lora="sketch"),
    ]
    config = OmniDiffusionConfig(executor_class="http", executor_options={"base_url": server.url})
    with DiffusionEngine(config) as remote:
        got = [remote.step([case])[0] for case in cases]
    want = [local.step([case])[0] for case in cases]
    for case, a, b in zip(cases, got, want, strict=True):
        assert a.ok, (case.request_id, a.error)
        assert len(a.output) == len(b.output) > 0
        assert all(np.array_equal(x, y) for x, y in zip(a.output, b.output, strict=True)), case
    # Over the wire, bad extras and unknown adapters come back as the request's own error,
    # named by core's field as the in-process executor names it.
    with DiffusionEngine(config) as remote:
        bad = remote.step([request(extra={"etaa": 1}), request(lora="../../etc/passwd")])
    assert [(o.error_type, o.error_field) for o in bad] == [
        ("RequestValidationError", "extra.etaa"),
        ("RequestValidationError", "lora"),
    ]


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header declares ``width`` x ``height`` (its data is a 1x1 image)."""
    data = bytearray(encode_png(np.zeros((1, 1, 3), dtype=np.uint8)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def sixteen_bit_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(size: int) -> bytes:
    return encode_png(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))


GOOD_IMAGE = ("image", ("i.png", encode_png(IMAGE), "image/png"))
HOSTILE_UPLOADS: list[tuple[str, list[tuple[str, Any]], dict[str, str], int, str | None]] = [
    ("not an image", [("image", ("i.png", b"hello, not a picture", "image/png"))], {}, 400, "image"),
    ("truncated png", [("image", ("i.png", encode_png(IMAGE)[:300], "image/png"))], {}, 400, "image"),
    (
        "declares 20000x20000",
        [("image", ("i.png", png_declaring(20000, 20000), "image/png"))],
        {},
        400,
        "image",
    ),
    ("16-bit grayscale", [("image", ("i.png", sixteen_bit_png(), "image/png"))], {}, 400, "image"),
    ("gif", [("image", ("i.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif"))], {}, 400, "image"),
    (
        "mask of another size",
        [GOOD_IMAGE, ("mask", ("m.png", encode_png(MASK[:32, :32]), "image/png"))],
        {},
        400,
        "mask",
    ),
    (
        "mask declares 20000x20000",
        [GOOD_IMAGE, ("mask", ("m.png", png_declaring(20000, 20000), "image/png"))],
        {},
        400,
        "mask",
    ),
    ("file over max_image_bytes", [("image", ("i.png", noise_png(256), "image/png"))], {}, 413, "image"),
    ("five images", [GOOD_IMAGE] * 5, {}, 400, "image"),
    ("no image", [], {"image": "not-a-file"}, 400, "image"),
    ("strength 2", [GOOD_IMAGE], {"strength": "2"}, 400, "strength"),
    ("strength text", [GOOD_IMAGE], {"strength": "lots"}, 400, "strength"),
    ("no denoising step left", [GOOD_IMAGE], {"num_inference_steps": "1"}, 400, "num_inference_steps"),
    ("unknown extra", [GOOD_IMAGE], {"extra_params": '{"etaa": 1}'}, 400, "extra_params.etaa"),
    ("refused extra", [GOOD_IMAGE], {"extra_params[generator]": "1"}, 400, "extra_params.generator"),
    ("extra not an object", [GOOD_IMAGE], {"extra_params": "[1, 2]"}, 400, "extra_params"),
    ("unknown lora", [GOOD_IMAGE], {"lora": "/etc/passwd"}, 400, "lora"),
]


@pytest.mark.parametrize(
    ("files", "fields", "status", "param"),
    [case[1:] for case in HOSTILE_UPLOADS],
    ids=[case[0] for case in HOSTILE_UPLOADS],
)
def test_hostile_uploads_get_a_4xx_naming_the_field_and_a_good_edit_still_works(
    server: ServerProcess,
    files: list[tuple[str, Any]],
    fields: dict[str, str],
    status: int,
    param: str | None,
) -> None:
    url = f"{server.url}/v1/images/edits"
    body = {"prompt": "a 7", "num_inference_steps": "2", **fields}
    response = httpx.post(url, data=body, files=files or None, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    good = httpx.post(url, data={"prompt": "a 7", "num_inference_steps": "2"}, files=[GOOD_IMAGE], timeout=60)
    assert good.status_code == 200, good.text


def test_a_json_body_at_edits_is_told_to_send_a_form(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/v1/images/edits", json={"prompt": "a 7"}, timeout=30)
    assert response.status_code == 415  # Unsupported Media Type, before the body is read
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_extra_params_on_generations(server: ServerProcess, local: DiffusionEngine) -> None:
    url = f"{server.url}/v1/images/generations"
    body = {"prompt": "a 7", "size": "64x64", "seed": 3, "num_inference_steps": 3}
    ok = httpx.post(url, json={**body, "extra_params": {"eta": 1.0}}, timeout=60)
    assert ok.status_code == 200, ok.text
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(ok.json()["data"][0]["b64_json"]))))
    want = local.step([request(height=64, width=64, extra={"eta": 1.0})])[0].raise_for_error().output[0]
    assert np.array_equal(got, want)
    for extra, param in (
        ({"etaa": 1}, "extra_params.etaa"),
        ({"output_type": "pil"}, "extra_params.output_type"),
    ):
        refused = httpx.post(url, json={**body, "extra_params": extra}, timeout=30)
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == param


def test_the_http_executor_refuses_a_non_array_image_before_sending(server: ServerProcess) -> None:
    config = OmniDiffusionConfig(executor_class="http", executor_options={"base_url": server.url})
    with DiffusionEngine(config) as remote:
        output = remote.step([request(image=IMAGE.astype(np.float64))])[0]
    with pytest.raises(RequestValidationError) as caught:
        output.raise_for_error()
    assert caught.value.field == "image"
