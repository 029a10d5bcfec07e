"""``omni generate``, ``omni executors``, and subcommands contributed by packages."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from omni_core._version import __version__
from omni_core.cli.flags import config_from_flags, config_options, engine_options, parse_cli_size
from omni_core.cli.progress import PreviewWriter, StepProgress
from omni_core.errors import OmniError, RequestValidationError
from omni_core.registry import (
    DEFAULT_EXECUTOR,
    KNOWN_EXECUTORS,
    install_hint,
    installed_executor_entry_points,
)
from omni_core.validation import MAX_PARTIAL_IMAGES

CLI_ENTRY_POINT_GROUP = "omni.cli"
# Request fields → the generate flag that sets them, so an error names what the user typed.
CLI_FLAGS = {
    "height": "--size",
    "width": "--size",
    "size": "--size",
    "num_inference_steps": "--steps",
    "guidance_scale": "--guidance",
    "num_outputs_per_prompt": "-n",
    "negative_prompt": "--negative-prompt",
    "seed": "--seed",
}


class _PluginGroup(click.Group):
    """A click group that also lists commands from the ``omni.cli`` entry points (``serve``)."""

    def _plugins(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=CLI_ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        plugin = self._plugins().get(cmd_name)
        if plugin is None:
            if cmd_name == "serve":
                raise click.UsageError(f"'omni serve' needs: {install_hint('omni-executor-http[server]')}")
            return None
        loaded = plugin.load()
        return loaded if isinstance(loaded, click.Command) else None


@click.group(cls=_PluginGroup)
@click.version_option(__version__, prog_name="omni")
def cli() -> None:
    """omni: text-to-image diffusion through pluggable executors."""


@cli.command()
@click.argument("prompt")
@click.option(
    "-o",
    "--output",
    "output_path",
    default="out.png",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG to write; with -n > 1, NAME-0.png, NAME-1.png, ...",
)
@engine_options
@config_options("device", "dtype")
@click.option("--size", default=None, metavar="WxH", help="image size, e.g. 64x64 [default: the model's]")
@click.option("--steps", type=int, default=None, help="denoising steps [default: the model's]")
@click.option("--guidance", type=float, default=None, help="classifier-free guidance scale")
@click.option("--negative-prompt", default=None)
@click.option("--seed", type=int, default=None, help="random seed [default: random, printed]")
@click.option("-n", "num_outputs", type=int, default=1, show_default=True, help="images for this prompt")
@click.option(
    "--preview-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="write preview images here while denoising (preview-1.png, ...), to watch the image form",
)
@click.option(
    "--previews",
    type=click.IntRange(1, MAX_PARTIAL_IMAGES),
    default=MAX_PARTIAL_IMAGES,
    show_default=True,
    help="how many previews --preview-dir gets",
)
@click.option("--quiet", is_flag=True, help="no progress bar")
def generate(
    prompt: str,
    output_path: Path,
    size: str | None,
    steps: int | None,
    guidance: float | None,
    negative_prompt: str | None,
    seed: int | None,
    num_outputs: int,
    preview_dir: Path | None,
    previews: int,
    quiet: bool,
    **engine_flags: Any,
) -> None:
    """Generate images for PROMPT and write them as PNG."""
    from omni_core.engine import DiffusionEngine
    from omni_core.images import to_pil
    from omni_core.request import OmniDiffusionRequest
    from omni_core.validation import RequestLimits, validate_request

    width, height = parse_cli_size(size) if size else (None, None)
    config = config_from_flags(engine_flags)
    executor = config.executor_class
    try:
        request = OmniDiffusionRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            seed=seed,
            num_outputs_per_prompt=num_outputs,
            partial_images=previews if preview_dir is not None else 0,
        )
        # Everything that does not need the model is checked before the model loads (seconds).
        validate_request(request, RequestLimits.from_config(config))
        if not quiet:
            click.echo(f"loading model with executor {executor or DEFAULT_EXECUTOR!r} ...", err=True)
        with (
            DiffusionEngine(config) as engine,
            StepProgress([request.request_id], disable=quiet) as progress,
        ):
            remove = engine.add_progress_listener(progress)
            try:
                writer = PreviewWriter(preview_dir) if preview_dir is not None else None
                output = engine.submit(request, on_progress=writer).result()
            finally:
                remove()
    except RequestValidationError as exc:
        flag = CLI_FLAGS.get(exc.field, exc.field)
        raise click.BadParameter(exc.reason, param_hint=flag) from exc
    except (OmniError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    if output.error is not None:
        raise click.ClickException(f"generation failed: {output.error_type}: {output.exception()}")
    paths = _output_paths(output_path, len(output.output))
    for path, image in zip(paths, output.output, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        to_pil(image).save(path, format="PNG")
        click.echo(f"wrote {path} ({image.shape[1]}x{image.shape[0]}, seed {output.seed})")


def _output_paths(base: Path, count: int) -> list[Path]:
    if count == 1:
        return [base]
    return [base.with_name(f"{base.stem}-{i}{base.suffix or '.png'}") for i in range(count)]


@cli.command()
def executors() -> None:
    """List executors: installed ones, and known ones with the package to install."""
    installed = installed_executor_entry_points()
    click.echo(f"{'name':<10} {'status':<10} {'package / target'}")
    for name in sorted(set(KNOWN_EXECUTORS) | set(installed)):
        if name in installed:
            marker = " (default)" if name == DEFAULT_EXECUTOR else ""
            click.echo(f"{name:<10} {'installed':<10} {installed[name].value}{marker}")
        else:
            click.echo(f"{name:<10} {'missing':<10} {KNOWN_EXECUTORS[name].install_hint}")


@cli.command("train-digits")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--steps", default=6000, show_default=True, help="optimizer steps (about 9 min on 2 CPU cores)")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--seed", default=0, show_default=True)
def train_digits(out: Path, steps: int, batch_size: int, seed: int) -> None:
    """Train the built-in digits model into OUT (needs: pip install 'omni-core[train]')."""
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise click.ClickException("train-digits needs scikit-learn: pip install 'omni-core[train]'") from exc
    from omni_core.models.train_digits import train

    train(out, steps=steps, batch_size=batch_size, seed=seed)
    from omni_core.models.digits_oracle import oracle

    click.echo(f"wrote {out}; oracle accuracy on held-out digits: {oracle()[1]:.3f}")


@cli.command("train-default")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--steps", default=None, type=int, help="optimizer steps [default: the shipped model's]")
@click.option("--batch-size", default=None, type=int, help="images per step [default: the shipped model's]")
@click.option("--seed", default=0, show_default=True)
def train_default(out: Path, steps: int | None, batch_size: int | None, seed: int) -> None:
    """Train the built-in default (shapes) model into OUT, then score it with the oracle if it can.

    Renders its own data with Pillow; about 8 minutes on 2 CPU cores. The oracle
    needs scikit-learn (pip install 'omni-core[train]'); without it the model is
    still written.
    """
    from omni_core.models import train_shapes

    train_shapes.train(
        out,
        steps=steps if steps is not None else train_shapes.DEFAULT_STEPS,
        batch_size=batch_size if batch_size is not None else train_shapes.DEFAULT_BATCH_SIZE,
        seed=seed,
    )
    try:
        import sklearn  # noqa: F401
    except ImportError:
        click.echo(f"wrote {out}; install omni-core[train] (scikit-learn) to score it with the oracle")
        return
    from omni_core.models.shapes_oracle import score_model

    scores = score_model(out)
    click.echo(
        f"wrote {out}; oracle over {scores.pop('prompts'):.0f} random prompts: "
        + ", ".join(f"{name} {value:.1%}" for name, value in scores.items())
    )


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(standalone_mode=True))
