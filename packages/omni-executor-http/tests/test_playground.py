"""The playground page in a real browser: Debian's headless Chromium, driven by Playwright.

A real ``omni serve`` (the shapes pipeline, an API key) on 127.0.0.1; the test types as a person
would and checks that partial images and then the final image appear, for a generation and for an
edit with a painted mask. Screenshots go to the test's temporary folder.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SHAPES_KEY as KEY
from PIL import Image

from omni_executor_http.testing import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def need(thing: object, install: str) -> None:
    if thing:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"missing under CI: {install}")
    pytest.skip(f"needs {install}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need(CHROMIUM, "Debian's chromium: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    need(sync_playwright, "pip install playwright (the system chromium is used; no browser download)")
    with sync_playwright() as playwright:  # type: ignore[misc]
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def expect(browser: Any) -> Any:
    """Playwright's assertions, which wait. (Not ``wait_for_function``: it evaluates a string, which
    the page's Content-Security-Policy forbids, rightly.)"""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


@pytest.fixture
def server(shapes_server: ServerProcess) -> ServerProcess:
    return shapes_server


def open_page(browser: Any, server: ServerProcess) -> Any:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"request failed: {request.url}"))
    page.goto(server.url + "/")
    page.fill("#api-key", KEY)
    page.errors = errors
    return page


def natural_widths(page: Any, selector: str) -> list[int]:
    return page.eval_on_selector_all(selector, "images => images.map(image => image.naturalWidth)")


def test_a_prompt_streams_previews_then_the_image(
    browser: Any, server: ServerProcess, tmp_path: Path, expect: Any
) -> None:
    page = open_page(browser, server)
    page.fill("#prompt", "a yellow star on a purple background")
    page.select_option("#size", "128x128")
    page.fill("#steps", "12")
    page.fill("#seed", "7")
    page.fill("#partial-images", "2")
    page.click("#generate")
    page.wait_for_selector("#final:not([hidden])", timeout=60_000)
    page.screenshot(path=str(tmp_path / "playground-generate.png"))
    assert natural_widths(page, "#partials img.partial") == [128, 128]
    assert natural_widths(page, "#final") == [128]
    assert page.inner_text("#status").startswith("done: 128x128")
    expect(page.locator("#queue-depth")).to_have_text(re.compile(r"^\d+$"), timeout=10_000)
    assert page.errors == []
    # Nothing in the page came from anywhere but this server.
    served = httpx.get(server.url + "/")
    assert "default-src 'none'" in served.headers["content-security-policy"]
    assert "http" not in served.text.replace("http-equiv", "")


def test_an_upload_with_a_painted_mask_is_edited(browser: Any, server: ServerProcess, tmp_path: Path) -> None:
    picture = tmp_path / "start.png"
    Image.new("RGB", (64, 64), "white").save(picture)
    page = open_page(browser, server)
    page.fill("#prompt", "a red heart on a white background")
    page.select_option("#size", "64x64")
    page.fill("#partial-images", "1")
    page.set_input_files("#image", str(picture))
    page.wait_for_selector("#mask-area:not([hidden])")
    box = page.locator("#mask").bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 200, steps=12)
    page.mouse.up()
    page.click("#generate")
    page.wait_for_selector("#final:not([hidden])", timeout=60_000)
    page.screenshot(path=str(tmp_path / "playground-edit.png"))
    assert natural_widths(page, "#partials img.partial") == [64]
    source = page.get_attribute("#final", "src")
    assert source.startswith("data:image/png;base64,")
    import base64

    final = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).convert("RGB")
    # Where the mask was not painted (a corner) the white picture is kept exactly.
    assert final.getpixel((1, 1)) == (255, 255, 255)
    assert page.errors == []


def test_a_wrong_key_is_reported_in_the_page(browser: Any, server: ServerProcess, expect: Any) -> None:
    page = open_page(browser, server)
    page.fill("#api-key", "not-the-key")
    page.click("#generate")
    expect(page.locator("#status")).to_have_text(re.compile(r"^error 401"), timeout=30_000)
