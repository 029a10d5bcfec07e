"""The playground page at ``/``: static files shipped in the package, nothing from elsewhere.

The page itself is public (it holds no data); every call it makes goes to this
server's API with the key a person types into it, which the page keeps in
memory only. A Content-Security-Policy pins scripts, styles, images and
connections to this origin (plus ``data:``/``blob:`` images: the streamed
pictures and an uploaded file).
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

PLAYGROUND_FILES = {
    "index.html": "text/html; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


def playground_file(name: str) -> Response:
    if name not in PLAYGROUND_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    data = resources.files("omni_executor_http.server").joinpath("playground", name).read_bytes()
    return Response(
        data,
        media_type=PLAYGROUND_FILES[name],
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


async def playground_page(request: Request) -> Response:
    return playground_file("index.html")


async def playground_asset(request: Request) -> Response:
    return playground_file(request.path_params["name"])
