"""mkdocs hook: fill the reference tables from omni's code, so the docs cannot drift from it.

Markers (HTML comments, so a page still reads without the hook):
``<!-- omni:executors -->``, ``<!-- omni:http-fields -->``, ``<!-- omni:limits -->``,
``<!-- omni:input-limits -->``, ``<!-- omni:examples -->``. Needs omni-core and omni-executor-http installed
(both import without torch).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _executors() -> str:
    from omni_core.registry import KNOWN_EXECUTORS

    rows = ["| shorthand | package | class | what |", "|---|---|---|---|"]
    for name, known in KNOWN_EXECUTORS.items():
        rows.append(f"| `{name}` | `{known.package}` | `{known.target}` | {known.summary} |")
    return "\n".join(rows)


def _http_fields() -> str:
    from omni_executor_http import protocol
    from omni_executor_http.output import QUALITY_STEPS

    described = {
        "prompt": "text to draw (required)",
        "n": "images, 1 to the deployment's `max_outputs_per_prompt`",
        "size": '`"WxH"`, multiples of 8',
        "response_format": "`b64_json` (default) or `url`: a link to `GET /v1/images/{id}/content` on "
        "this server (same API key; unguessable id; kept `--image-url-ttl` seconds, 600 by default, at "
        "most 1024 images or 256 MB, oldest dropped first); not with `stream`",
        "stream": "`true`: Server-Sent Events in OpenAI's shapes (`image_generation.partial_image` / "
        "`image_generation.completed`, `image_edit.*` for edits), see [Streaming](#streaming)",
        "partial_images": "0-3 previews while denoising, with `stream=true`; fewer with fewer steps",
        "output_format": "`png` (default), `jpeg` or `webp`",
        "output_compression": "0-100 for `jpeg` and `webp` (quality; 100 = lossless WebP); png ignores it",
        "background": "`auto` or `opaque`; `transparent` is a 400 naming `background`: the models draw no "
        "alpha channel",
        "quality": "a step count when `num_inference_steps` is not given: "
        + ", ".join(
            f"`{name}` {'the model default' if steps is None else steps}"
            for name, steps in QUALITY_STEPS.items()
        ),
        "moderation": "`auto` or `low`, accepted as OpenAI documents it; omni runs no moderation model",
        "user": "tenant, for the priority executor's fairness",
        "priority": "lower runs first (omni)",
        "negative_prompt": "diffusion field (vllm-omni)",
        "num_inference_steps": "diffusion field (vllm-omni)",
        "guidance_scale": "diffusion field (vllm-omni)",
        "seed": "diffusion field (vllm-omni); same seed, same image",
        "timeout": "seconds before the request fails with 504 and is aborted (omni)",
        "extra_params": "further pipeline keyword arguments, a JSON object checked against the pipeline's "
        "signature (vllm-omni); in an edit form, JSON text or `extra_params[name]` fields",
        "lora": "name of a LoRA adapter the operator configured (`omni serve --lora`); never a path",
        "lora_scale": "the adapter's weight (default: the configured scale)",
        "strength": "edits only: how far from the image to go, in (0, 1]",
        "input_fidelity": "edits only: accepted for OpenAI compatibility, ignored",
        "image": "edits only, a file part (PNG, JPEG or WebP); several as `image[]`, each edited `n` times",
        "mask": "edits only, a file part the image's size: transparent (OpenAI) or white (diffusers) "
        "pixels are repainted",
    }
    rows = ["| field | meaning |", "|---|---|"]
    edit_only = protocol.EDIT_FIELDS - protocol.SUPPORTED_FIELDS | {"image", "mask"}
    for name in sorted((protocol.SUPPORTED_FIELDS | edit_only) - protocol.IGNORED_OPENAI_FIELDS):
        rows.append(f"| `{name}` | {described.get(name, 'accepted for OpenAI compatibility')} |")
    ignored = ", ".join(f"`{name}`" for name in sorted(protocol.IGNORED_OPENAI_FIELDS))
    rows.append(f"| {ignored} | accepted and ignored: they do not change what a diffusion model draws |")
    return "\n".join(rows) + "\n\nAny other field is a 400 naming it."


def _limits() -> str:
    from omni_core.cli.flags import flag_of
    from omni_core.config import OmniDiffusionConfig
    from omni_core.validation import RequestLimits

    rows = ["| limit | default | `omni serve` flag |", "|---|---|---|"]
    # Each limit is a config field (lora_names: the adapters of `loras`); its flag is declared there.
    config_field = {"lora_names": "loras"}
    for field in dataclasses.fields(RequestLimits):
        default = field.default
        if isinstance(default, frozenset):
            default = ", ".join(f"`{name}`" for name in sorted(default)) or "none"
        name = config_field.get(field.name, field.name)
        flag = f"`{flag_of(OmniDiffusionConfig, name)}`" if name != "extra_denied" else ""
        rows.append(f"| `{field.name}` | {default} | {flag} |")
    return "\n".join(rows)


def _input_limits() -> str:
    """What any client input is checked against before it is parsed further, from the constants."""
    from omni_core import image_structure, pipeline_arguments, validation
    from omni_executor_http import protocol

    rows = ["| input | limit | answer |", "|---|---|---|"]
    depth, extra_depth = protocol.MAX_JSON_DEPTH, validation.MAX_EXTRA_DEPTH
    magnitude = f"{pipeline_arguments.MAX_ARGUMENT_MAGNITUDE:,}"
    rows += [
        f"| a JSON body, or a form's `extra_params` text | {depth} levels of nesting, checked before "
        "parsing; no `NaN`/`Infinity`, no duplicate keys, valid UTF-8 | 400 naming the field |",
        f"| `extra` / `extra_params` values | JSON only, {extra_depth} levels deep, "
        f"{validation.MAX_EXTRA_JSON_BYTES} bytes; each value of the type the pipeline's `__call__` "
        f"annotates; numbers within +/-{magnitude} | 400 naming `extra_params.NAME` |",
        "| `timesteps`, `sigmas` | a non-empty list of non-negative numbers, at most "
        "`max_num_inference_steps` entries (each is a step); timesteps below the scheduler's training "
        "count; only where the scheduler takes them | 400 naming the argument |",
    ]
    for name, (low, high) in pipeline_arguments.ARGUMENT_RANGES.items():
        rows.append(f"| `extra_params.{name}` | {low:g} to {high:g} | 400 naming it |")
    for name, why in pipeline_arguments.UNSUPPORTED_ARGUMENTS.items():
        rows.append(f"| `extra_params.{name}` | refused: {why} | 400 (a config error in `extra_allowed`) |")
    rows += [
        f"| PNG chunks | {image_structure.MAX_PNG_CHUNKS:,} per file; 16-bit PNGs refused | "
        "400 naming the file |",
        f"| JPEG segments, scans | {image_structure.MAX_JPEG_MARKERS} segments, "
        f"{image_structure.MAX_JPEG_SCANS} scans (of the first frame; an MPO's later frames are skipped) | "
        "400 naming the file |",
    ]
    return "\n".join(rows)


def _examples() -> str:
    rows = ["| script | what |", "|---|---|"]
    for script in sorted((ROOT / "examples").glob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text())) or ""
        rows.append(f"| `examples/{script.name}` | {doc.splitlines()[0] if doc else ''} |")
    return "\n".join(rows)


GENERATORS = {
    "<!-- omni:executors -->": _executors,
    "<!-- omni:http-fields -->": _http_fields,
    "<!-- omni:limits -->": _limits,
    "<!-- omni:input-limits -->": _input_limits,
    "<!-- omni:examples -->": _examples,
}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    for marker, generate in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
