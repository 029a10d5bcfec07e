"""mkdocs hook: fill the reference tables from omni's code, so the docs cannot drift from it.

Markers (HTML comments, so a page still reads without the hook):
``<!-- omni:executors -->``, ``<!-- omni:http-fields -->``, ``<!-- omni:limits -->``,
``<!-- omni:examples -->``. Needs omni-core and omni-executor-http installed
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

    described = {
        "prompt": "text to draw (required)",
        "n": "images, 1 to the deployment's `max_outputs_per_prompt`",
        "size": '`"WxH"`, multiples of 8',
        "response_format": "`b64_json` (the only format served)",
        "user": "tenant, for the priority executor's fairness",
        "priority": "lower runs first (omni)",
        "negative_prompt": "diffusion field (vllm-omni)",
        "num_inference_steps": "diffusion field (vllm-omni)",
        "guidance_scale": "diffusion field (vllm-omni)",
        "seed": "diffusion field (vllm-omni); same seed, same image",
        "timeout": "seconds before the request fails with 504 and is aborted (omni)",
    }
    rows = ["| field | meaning |", "|---|---|"]
    for name in sorted(protocol.SUPPORTED_FIELDS - protocol.IGNORED_OPENAI_FIELDS):
        rows.append(f"| `{name}` | {described.get(name, 'accepted for OpenAI compatibility')} |")
    ignored = ", ".join(f"`{name}`" for name in sorted(protocol.IGNORED_OPENAI_FIELDS))
    rows.append(f"| {ignored} | accepted and ignored: they do not change what a diffusion model draws |")
    return "\n".join(rows) + "\n\nAny other field is a 400 naming it."


def _limits() -> str:
    from omni_core.validation import RequestLimits

    rows = ["| limit | default | `omni serve` flag |", "|---|---|---|"]
    flags = {
        "max_image_pixels": "--max-image-pixels",
        "max_num_inference_steps": "--max-steps",
        "max_outputs_per_prompt": "--max-outputs-per-prompt",
        "max_prompt_length": "--max-prompt-length",
        "max_guidance_scale": "--max-guidance-scale",
    }
    for field in dataclasses.fields(RequestLimits):
        rows.append(f"| `{field.name}` | {field.default} | `{flags.get(field.name, '')}` |")
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
    "<!-- omni:examples -->": _examples,
}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    for marker, generate in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
