"""``omni serve``: an OpenAI-compatible image server in front of any omni executor (extra ``[server]``)."""

from omni_executor_http.server.app import ServerSettings, ServerState, create_app

__all__ = ["ServerSettings", "ServerState", "create_app"]
