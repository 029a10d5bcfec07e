"""Cloud Run / Cloud Functions entry point: omni's OpenAI-compatible API as the ``omni`` target.

Locally:  functions-framework --asgi --target omni --source examples/cloud_run/main.py --port 8080
Deployed: see docs/deployment.md (the Dockerfile beside this file builds the image).

The engine is built by the first request in the serving process (functions-framework imports
this file before gunicorn forks its worker, and an engine's threads do not survive a fork):
give the service a startup probe on /health so that request is Cloud Run's, not a user's.
"""

from omni_executor_http.server.cloud_run import omni

__all__ = ["omni"]
