"""Azure Functions app (Python v2 programming model): omni's OpenAI-compatible API on every route.

The function hands each request to the same application ``omni serve`` runs, through the
azure-functions library's ASGI middleware; the engine comes from the app settings
(``OMNI_MODEL``, ``OMNI_EXECUTOR``, ...: see omni_executor_http.server.hosted). host.json sets
an empty route prefix, so the paths are OpenAI's (``/v1/images/generations``), not ``/api/...``.
Deploy: see docs/deployment.md.
"""

import azure.functions as func

from omni_executor_http.server.hosted import application

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="{*path}", methods=["GET", "POST"])
async def omni(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await func.AsgiMiddleware(application()).handle_async(req, context)
