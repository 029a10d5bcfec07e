"""``omni serve``: contributed to the ``omni`` command through the ``omni.cli`` entry point."""

from __future__ import annotations

import logging

import click

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniError, RequestLimits
from omni_core.cli.parsing import engine_options, parse_options
from omni_core.executors import parse_lora_option
from omni_executor_http.server.image_store import DEFAULT_IMAGE_URL_TTL


@click.command()
@engine_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--api-key",
    envvar="OMNI_API_KEY",
    default=None,
    help="require 'Authorization: Bearer KEY' [env: OMNI_API_KEY]",
)
@click.option("--served-model-name", default="omni", show_default=True, help="the id /v1/models reports")
@click.option("--max-body-bytes", default=64 * 1024, show_default=True, type=int)
@click.option("--max-image-pixels", default=RequestLimits.max_image_pixels, show_default=True, type=int)
@click.option(
    "--max-steps",
    default=RequestLimits.max_num_inference_steps,
    show_default=True,
    type=int,
    help="largest num_inference_steps accepted",
)
@click.option(
    "--max-outputs-per-prompt",
    default=RequestLimits.max_outputs_per_prompt,
    show_default=True,
    type=int,
    help="largest n accepted",
)
@click.option("--max-prompt-length", default=RequestLimits.max_prompt_length, show_default=True, type=int)
@click.option(
    "--max-guidance-scale",
    default=RequestLimits.max_guidance_scale,
    show_default=True,
    type=float,
    help="largest guidance_scale accepted",
)
@click.option("--max-batch-size", default=8, show_default=True, type=int)
@click.option(
    "--max-queued-requests",
    default=None,
    type=click.IntRange(min=1),
    help="requests queued before new ones get 429 with Retry-After [default: no cap]",
)
@click.option(
    "--request-timeout",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="seconds a request may take (queue included) unless it sets 'timeout'; then 504 [default: none]",
)
@click.option(
    "--header-timeout", default=10.0, show_default=True, type=float, help="seconds to send headers, then 408"
)
@click.option(
    "--body-timeout", default=30.0, show_default=True, type=float, help="seconds to send the body, then 408"
)
@click.option(
    "--limit-concurrency",
    default=1024,
    show_default=True,
    type=int,
    help="open connections and requests at once; past it new ones get 503",
)
@click.option(
    "--exit-on-dead",
    is_flag=True,
    help="exit (status 3) once the executor is dead, for deployments where a supervisor restarts the server",
)
@click.option("--default-steps", default=None, type=int, help="steps when a request gives none")
@click.option(
    "--drain-timeout",
    default=300.0,
    show_default=True,
    type=float,
    help="seconds to finish in-flight work on SIGTERM",
)
@click.option(
    "--lora",
    "loras",
    multiple=True,
    metavar="NAME=PATH[@SCALE]",
    help="a LoRA adapter requests may name with 'lora' (repeatable); never a path from a request",
)
@click.option("--max-loaded-loras", default=4, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--extra-allowed",
    multiple=True,
    metavar="NAME",
    help="the only pipeline arguments extra_params may set (repeatable) [default: any the pipeline takes]",
)
@click.option(
    "--max-image-bytes",
    default=8 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="largest image or mask file an edit may upload",
)
@click.option(
    "--max-input-images",
    default=RequestLimits.max_input_images,
    show_default=True,
    type=click.IntRange(min=1),
    help="images one edit may send",
)
@click.option(
    "--max-lora-scale",
    default=RequestLimits.max_lora_scale,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="lora_scale accepted in [-this, this]",
)
@click.option(
    "--max-upload-bytes-in-flight",
    default=None,
    type=click.IntRange(min=1),
    help="edit bodies read and parsed at once, in bytes; past it new ones get 429 with Retry-After "
    "[default: two maximum-size edits]",
)
@click.option(
    "--image-url-ttl",
    default=DEFAULT_IMAGE_URL_TTL,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="seconds an image made for response_format=url stays readable at its URL",
)
@click.option("--log-level", default="info", show_default=True)
def serve(
    model: str | None,
    model_class: str | None,
    executor: str | None,
    options: tuple[str, ...],
    host: str,
    port: int,
    api_key: str | None,
    served_model_name: str,
    max_body_bytes: int,
    max_image_pixels: int,
    max_steps: int,
    max_outputs_per_prompt: int,
    max_prompt_length: int,
    max_guidance_scale: float,
    max_batch_size: int,
    max_queued_requests: int | None,
    request_timeout: float | None,
    header_timeout: float,
    body_timeout: float,
    limit_concurrency: int,
    exit_on_dead: bool,
    default_steps: int | None,
    drain_timeout: float,
    loras: tuple[str, ...],
    max_loaded_loras: int,
    extra_allowed: tuple[str, ...],
    max_image_bytes: int,
    max_input_images: int,
    max_lora_scale: float,
    max_upload_bytes_in_flight: int | None,
    image_url_ttl: float,
    log_level: str,
) -> None:
    """Serve an OpenAI-compatible image API (POST /v1/images/generations and /v1/images/edits)."""
    import uvicorn

    from omni_executor_http.server.app import ServerSettings, ServerState, create_app
    from omni_executor_http.server.connections import header_timeout_protocol
    from omni_executor_http.server.runner import DrainingServer

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = OmniDiffusionConfig(
            model_name_or_path=model,
            model_class_name=model_class,
            executor_class=executor,
            executor_options=parse_options(options),
            max_batch_size=max_batch_size,
            default_num_inference_steps=default_steps,
            max_image_pixels=max_image_pixels,
            max_num_inference_steps=max_steps,
            max_outputs_per_prompt=max_outputs_per_prompt,
            max_prompt_length=max_prompt_length,
            max_guidance_scale=max_guidance_scale,
            max_queued_requests=max_queued_requests,
            request_timeout=request_timeout,
            loras=dict(parse_lora_option(text) for text in loras),
            max_loaded_loras=max_loaded_loras,
            extra_allowed=list(extra_allowed) or None,
            max_input_images=max_input_images,
            max_lora_scale=max_lora_scale,
        )
        engine = DiffusionEngine(config)
    except (OmniError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        settings = ServerSettings(
            api_key=api_key or None,
            served_model_name=served_model_name,
            max_body_bytes=max_body_bytes,
            max_image_bytes=max_image_bytes,
            limits=RequestLimits.from_config(config),
            body_timeout=body_timeout,
            max_upload_bytes_in_flight=max_upload_bytes_in_flight,
            image_url_ttl=image_url_ttl,
        )
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
            f"omni serving {served_model_name!r} with {type(engine.executor).__name__} on "
            f"http://{host}:{port}",
            err=True,
        )
        server.run()
    finally:
        engine.close()
    if server.exit_status:
        raise SystemExit(server.exit_status)
