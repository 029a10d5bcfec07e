"""``omni lambda local`` (also ``omni-lambda local``): run the local Lambda service.

Contributed to the ``omni`` command through the ``omni.cli`` entry point.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from omni_executor_lambda.local.functions import LocalFunction


@click.group("lambda")
def lambda_group() -> None:
    """AWS Lambda tools: a local Lambda service for offline work."""


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--env")
        env[name] = value
    return env


@lambda_group.command("local")
@click.option("--function-name", default="omni", show_default=True, help="the function's name")
@click.option(
    "--handler",
    default="omni_executor_lambda.function.handler.handler",
    show_default=True,
    help="module.function, as Lambda's Handler setting",
)
@click.option(
    "--code-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="the function's code (LAMBDA_TASK_ROOT) [default: current directory]",
)
@click.option(
    "--env", "env_pairs", multiple=True, metavar="NAME=VALUE", help="function environment (repeatable)"
)
@click.option("--model", default=None, help="shorthand for --env OMNI_MODEL=PATH")
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1), help="environments")
@click.option("--timeout", default=300.0, show_default=True, type=float, help="seconds per invocation")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9001, show_default=True, type=int)
@click.option("--region", default="us-east-1", show_default=True)
def local(
    function_name: str,
    handler: str,
    code_dir: Path | None,
    env_pairs: tuple[str, ...],
    model: str | None,
    concurrency: int,
    timeout: float,
    host: str,
    port: int,
    region: str,
) -> None:
    """Serve one function on the Invoke API; point boto3's endpoint_url (or the executor's) here."""
    from omni_executor_lambda.local.service import LocalLambdaService

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    environment = _parse_env(env_pairs)
    if model is not None:
        environment["OMNI_MODEL"] = str(Path(model).resolve())
    try:
        function = LocalFunction(
            name=function_name,
            handler=handler,
            code_dir=code_dir.resolve() if code_dir else None,
            environment=environment,
            concurrency=concurrency,
            timeout=timeout,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    service = LocalLambdaService([function], host=host, port=port, region=region)
    click.echo(
        f"local Lambda service: function {function_name!r} ({concurrency} environments, "
        f"{timeout:g}s timeout) at {service.endpoint_url}\n  executor_options="
        f"{{'function_name': {function_name!r}, 'endpoint_url': '{service.endpoint_url}'}}",
        err=True,
    )
    service.serve_forever()
