"""``omni serve``: contributed to the ``omni`` command through the ``omni.cli`` entry point."""

from __future__ import annotations

import logging
from typing import Any

import click

from omni_core import DiffusionEngine, OmniError, RequestLimits
from omni_core.cli import (
    ENGINE_FIELDS,
    config_from_flags,
    config_options,
    declared_options,
    values_from_flags,
)
from omni_executor_http.server.app import ServerSettings, ServerState, create_app

SERVER_FIELDS = (
    "api_key",
    "served_model_name",
    "max_body_bytes",
    "body_timeout",
    "max_image_bytes",
    "max_upload_bytes_in_flight",
    "image_url_ttl",
)
"""The server's own settings (:class:`ServerSettings`) ``omni serve`` takes as flags."""
CONFIG_FIELDS = (
    *ENGINE_FIELDS,
    "max_batch_size",
    "batching",
    "max_queued_requests",
    "request_timeout",
    "default_num_inference_steps",
    "max_image_pixels",
    "max_num_inference_steps",
    "max_outputs_per_prompt",
    "max_prompt_length",
    "max_guidance_scale",
    "max_input_images",
    "max_lora_scale",
    "loras",
    "max_loaded_loras",
    "extra_allowed",
)
"""The engine's settings (:class:`~omni_core.OmniDiffusionConfig`) ``omni serve`` takes as flags."""


@click.command()
@config_options(*CONFIG_FIELDS)
@declared_options(ServerSettings, *SERVER_FIELDS)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="seconds to send headers, then 408",
)
@click.option(
    "--limit-concurrency",
    default=1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="open connections and requests at once; past it new ones get 503",
)
@click.option(
    "--exit-on-dead",
    is_flag=True,
    help="exit (status 3) once the executor is dead, for deployments where a supervisor restarts the server",
)
@click.option(
    "--drain-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="seconds to finish in-flight work on SIGTERM",
)
@click.option("--log-level", default="info", show_default=True)
def serve(
    host: str,
    port: int,
    header_timeout: float,
    limit_concurrency: int,
    exit_on_dead: bool,
    drain_timeout: float,
    log_level: str,
    **flags: Any,
) -> None:
    """Serve an OpenAI-compatible image API (POST /v1/images/generations and /v1/images/edits)."""
    import uvicorn

    from omni_executor_http.server.connections import header_timeout_protocol
    from omni_executor_http.server.runner import DrainingServer

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config_from_flags(flags)
    server_values = values_from_flags(ServerSettings, flags)
    try:
        engine = DiffusionEngine(config)
    except (OmniError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        settings = ServerSettings(**server_values, limits=RequestLimits.from_config(config))
        if settings.api_key == "":
            settings.api_key = None
        state = ServerState()
        app = create_app(engine, settings, state)
        server = DrainingServer(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level=log_level,
                lifespan="off",
                http=header_timeout_protocol(header_timeout),
                limit_concurrency=limit_concurrency,
            ),
            state,
            drain_timeout,
            engine=engine if exit_on_dead else None,
        )
        click.echo(
            f"omni serving {settings.served_model_name!r} with {type(engine.executor).__name__} on "
            f"http://{host}:{port}",
            err=True,
        )
        server.run()
    finally:
        engine.close()
    if server.exit_status:
        raise SystemExit(server.exit_status)
