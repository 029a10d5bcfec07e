"""Hostile clients against a real `omni serve` on 127.0.0.1: no 5xx from client input, ever.

Every case below once produced a 500, a hang or a leak (issue: serving under stress). Each
invalid body must get a 4xx in OpenAI's error shape naming the field; a good request must
still succeed after each; slow clients get 408; a client that leaves has its request aborted.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omni_executor_http.testing import ServerProcess, run_server

GOOD = {"prompt": "a 7", "size": "64x64", "num_inference_steps": 1, "seed": 1}
NOT_A_NUMBER: list[Any] = [True, [], {}, "x", "9" * 5000, {"nested": [1]}]
# Values each field must refuse (None means "default" for the optional ones, so it is valid there).
INVALID: dict[str, list[Any]] = {
    "prompt": [None, True, [], {}, -1, 1.5, {"nested": [1]}],
    "negative_prompt": [True, [], {}, -1, 1.5, {"nested": [1]}],
    "n": [*NOT_A_NUMBER, -1, 0, 1.5, 10**40],
    "size": [True, [], {}, "x", -1, 1.5, 10**40, "9" * 5000, {"nested": [1]}],
    "num_inference_steps": [*NOT_A_NUMBER, -1, 0, 1.5, 10**40],
    "guidance_scale": [*NOT_A_NUMBER, -1, 10**40],
    "seed": [*NOT_A_NUMBER, -1, 1.5, 10**40],
    "priority": [*NOT_A_NUMBER, 1.5],
    "user": [True, [], {}, -1, 1.5],
    "timeout": [*NOT_A_NUMBER, -1, 0],
}


def hostile_bodies() -> list[tuple[str, bytes, str | None]]:
    """(label, raw body, the field the 4xx must name or None for a whole-body problem)."""
    cases: list[tuple[str, bytes, str | None]] = []
    for field, values in INVALID.items():
        for value in values:
            body = {**GOOD, field: value}
            cases.append((f"{field}={str(value)[:20]}", json.dumps(body).encode(), field))
    cases += [
        ("size superscript digits", json.dumps({**GOOD, "size": "²x²"}).encode(), "size"),
        ("size arabic-indic digits", json.dumps({**GOOD, "size": "٦٤x٦٤"}).encode(), "size"),
        ("size huge", json.dumps({**GOOD, "size": "9" * 5000 + "x64"}).encode(), "size"),
        ("seed 5000 digits", b'{"prompt": "a 7", "seed": ' + b"9" * 5000 + b"}", None),
        ("priority 5000 digits", b'{"prompt": "a 7", "priority": ' + b"9" * 5000 + b"}", None),
        ("guidance 1e30", json.dumps({**GOOD, "guidance_scale": 1e30}).encode(), "guidance_scale"),
        ("guidance NaN literal", b'{"prompt": "a 7", "guidance_scale": NaN}', None),
        ("guidance Infinity literal", b'{"prompt": "a 7", "guidance_scale": Infinity}', None),
        ("guidance -1", json.dumps({**GOOD, "guidance_scale": -1}).encode(), "guidance_scale"),
        ("lone surrogate prompt", b'{"prompt": "a \\ud800 cat"}', "prompt"),
        ("lone surrogate negative", b'{"prompt": "a 7", "negative_prompt": "\\udfff"}', "negative_prompt"),
        ("invalid utf-8", b'{"prompt": "\xff\xfe"}', None),
        ("nested 30000 deep", b"[" * 30000 + b"]" * 30000, None),
        ("nested object 100 deep", b'{"a":' * 100 + b"1" + b"}" * 100, None),
        ("duplicate keys", b'{"prompt": "a 7", "prompt": "a 8"}', "prompt"),
        ("not an object", b"[1, 2, 3]", None),
        ("empty body", b"", None),
        ("truncated json", b'{"prompt": "a 7"', None),
        ("unknown field", json.dumps({**GOOD, "rm -rf": 1}).encode(), "rm -rf"),
        ("response_format file", json.dumps({**GOOD, "response_format": "file"}).encode(), "response_format"),
        ("stream a string", json.dumps({**GOOD, "stream": "yes"}).encode(), "stream"),
        (
            "url with stream",
            json.dumps({**GOOD, "stream": True, "response_format": "url"}).encode(),
            "response_format",
        ),
        (
            "partial_images 4",
            json.dumps({**GOOD, "stream": True, "partial_images": 4}).encode(),
            "partial_images",
        ),
        ("partial_images unstreamed", json.dumps({**GOOD, "partial_images": 1}).encode(), "partial_images"),
        ("output_format gif", json.dumps({**GOOD, "output_format": "gif"}).encode(), "output_format"),
        ("compression 101", json.dumps({**GOOD, "output_compression": 101}).encode(), "output_compression"),
        ("compression float", json.dumps({**GOOD, "output_compression": 5.5}).encode(), "output_compression"),
        ("background transparent", json.dumps({**GOOD, "background": "transparent"}).encode(), "background"),
        ("quality ultra", json.dumps({**GOOD, "quality": "ultra"}).encode(), "quality"),
        ("moderation off", json.dumps({**GOOD, "moderation": "off"}).encode(), "moderation"),
        ("n zero", json.dumps({**GOOD, "n": 0}).encode(), "n"),
        ("n too many", json.dumps({**GOOD, "n": 1000}).encode(), "n"),
        ("steps zero", json.dumps({**GOOD, "num_inference_steps": 0}).encode(), "num_inference_steps"),
        (
            "steps too many",
            json.dumps({**GOOD, "num_inference_steps": 10**6}).encode(),
            "num_inference_steps",
        ),
        ("size not multiple of 8", json.dumps({**GOOD, "size": "65x64"}).encode(), "size"),
        ("size over the cap", json.dumps({**GOOD, "size": "99999x99999"}).encode(), "size"),
        ("prompt empty", json.dumps({**GOOD, "prompt": "  "}).encode(), "prompt"),
        ("prompt too long", json.dumps({**GOOD, "prompt": "x" * 5000}).encode(), None),
        ("timeout negative", json.dumps({**GOOD, "timeout": -1}).encode(), "timeout"),
        ("timeout huge int", json.dumps({**GOOD, "timeout": 10**400}).encode(), "timeout"),
        ("seed negative", json.dumps({**GOOD, "seed": -5}).encode(), "seed"),
        ("seed over 2**63", json.dumps({**GOOD, "seed": 2**64}).encode(), "seed"),
    ]
    return cases


@pytest.fixture(scope="module")
def hardened(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(
        tiny_model,
        "--api-key",
        "clé-secrète",  # not ASCII: sent as UTF-8 by clients
        "--header-timeout",
        "1",
        "--body-timeout",
        "1",
        tmp=tmp_path_factory.mktemp("hostile"),
    ) as server:
        yield server


def client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": "Bearer clé-secrète".encode()}, timeout=60
    )


def test_over_a_hundred_hostile_bodies_get_4xx_naming_the_field_and_never_5xx(
    hardened: ServerProcess,
) -> None:
    cases = hostile_bodies()
    sent = 0
    with client(hardened) as http:
        for label, raw, field in cases:
            for content_type in ("application/json", "text/plain"):
                response = http.post(
                    "/v1/images/generations", content=raw, headers={"content-type": content_type}
                )
                sent += 1
                assert 400 <= response.status_code < 500, (label, response.status_code, response.text[:300])
                error = response.json()["error"]
                assert set(error) >= {"message", "type", "param", "code"}, (label, error)
                if field is not None:
                    assert error["param"] == field or field in error["message"], (label, error)
            # chunked (no Content-Length) too
            response = http.post(
                "/v1/images/generations", content=iter([raw[: len(raw) // 2], raw[len(raw) // 2 :]])
            )
            sent += 1
            assert 400 <= response.status_code < 500, (label, "chunked", response.status_code)
            assert http.post("/v1/images/generations", json=GOOD).status_code == 200, label
    assert sent >= 120, sent
    logs = hardened.logs()
    assert "Traceback" not in logs, logs[-3000:]


def test_oversized_bodies_are_413_declared_or_streamed(hardened: ServerProcess) -> None:
    big = json.dumps({**GOOD, "prompt": "x" * 100_000}).encode()
    with client(hardened) as http:
        assert http.post("/v1/images/generations", content=big).status_code == 413
        chunked = http.post("/v1/images/generations", content=iter([big[:50_000], big[50_000:]]))
        assert chunked.status_code == 413
        assert http.post("/v1/images/generations", json=GOOD).status_code == 200


def raw_exchange(server: ServerProcess, payload: bytes, wait: float) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        time.sleep(wait)
        chunks = []
        sock.settimeout(5)
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_slow_headers_and_short_bodies_get_408_and_the_connection_closes(hardened: ServerProcess) -> None:
    slowloris = raw_exchange(hardened, b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nX-a: ", 0)
    assert slowloris.startswith(b"HTTP/1.1 408"), slowloris[:200]
    short = raw_exchange(
        hardened,
        b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + "clé-secrète".encode()
        + b'\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"prompt":',
        0,
    )
    assert short.startswith(b"HTTP/1.1 408"), short[:200]
    assert b"request_timeout" in short
    with client(hardened) as http:
        assert http.post("/v1/images/generations", json=GOOD).status_code == 200


def test_utf8_api_key_works_and_health_hides_details_without_it(hardened: ServerProcess) -> None:
    with client(hardened) as http:
        assert http.post("/v1/images/generations", json=GOOD).status_code == 200
    wrong = httpx.post(
        f"{hardened.url}/v1/images/generations", json=GOOD, headers={"Authorization": "Bearer cle-secrete"}
    )
    assert wrong.status_code == 401
    assert httpx.get(f"{hardened.url}/health").json() == {"status": "ok"}


def test_a_client_that_leaves_has_its_request_aborted(hardened: ServerProcess) -> None:
    heavy = {"prompt": "a 7", "size": "256x256", "num_inference_steps": 200, "seed": 3}
    with client(hardened) as http:
        before = http.get("/metrics").text
        for _ in range(3):
            with pytest.raises(httpx.ReadTimeout):
                http.post("/v1/images/generations", json=heavy, timeout=0.5)
        aborted = 'omni_requests_abandoned_total{outcome="aborted"} 3.0'
        assert aborted not in before
        deadline = time.monotonic() + 30
        while aborted not in (metrics := http.get("/metrics").text):
            assert time.monotonic() < deadline, metrics[-2000:]
            time.sleep(0.2)
        # The abandoned 200-step requests were stopped, so this one is not queued behind them.
        assert http.post("/v1/images/generations", json=GOOD, timeout=60).status_code == 200
