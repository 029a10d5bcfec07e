"""Fixtures: the tiny model and cache from omni_core.testing (shared by every package); serve's routes."""

import pytest

from omni_core.testing import isolated_omni_cache, tiny_flux_model, tiny_lora, tiny_model

__all__ = ["isolated_omni_cache", "tiny_flux_model", "tiny_lora", "tiny_model"]


@pytest.fixture(scope="session")
def server_routes() -> set[str]:
    """The paths ``omni serve``'s application routes (manifests' probes must hit one of them)."""
    from omni_core import DiffusionEngine, OmniDiffusionConfig
    from omni_executor_http.server.app import ServerSettings, create_app

    with DiffusionEngine(OmniDiffusionConfig(executor_class="inproc")) as engine:  # the built-in model
        app = create_app(engine, ServerSettings())
        return {route.path for route in app.routes}  # type: ignore[attr-defined]
