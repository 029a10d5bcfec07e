"""What a request's ``extra`` (pipeline keyword arguments) may hold, beyond being JSON.

diffusers checks few of its arguments before it starts denoising, and what it does
not check fails mid-loop (``guidance_rescale="x"`` compares a string with a float
at the first step) or runs far longer than the step cap allows (999 custom
``timesteps`` are 999 steps). So omni checks every value against the annotation
of the parameter in the pipeline's ``__call__`` signature, against a range where
the argument has one, and counts ``timesteps`` and ``sigmas`` as steps. Torch-free:
the names and counts are checked where a request enters (servers, workers), the
types and ranges where the pipeline is known (the model runner's plan).
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from omni_core.errors import RequestValidationError

UNSUPPORTED_ARGUMENTS = {
    "padding_mask_crop": "omni passes each image at the request's size; crop the image and mask yourself",
}
"""Pipeline arguments omni cannot honour, refused (with what to do instead) when a request or a config
names them, never at run time."""

STEP_LIST_ARGUMENTS = {"timesteps": "integers", "sigmas": "numbers"}
"""Arguments that replace the step schedule: their length is the step count, under the same cap."""

ARGUMENT_RANGES: dict[str, tuple[float, float]] = {
    "eta": (0.0, 1.0),
    "guidance_rescale": (0.0, 1.0),
    "denoising_start": (0.0, 1.0),
    "denoising_end": (0.0, 1.0),
    "skip_layer_guidance_start": (0.0, 1.0),
    "skip_layer_guidance_stop": (0.0, 1.0),
    "skip_layer_guidance_scale": (0.0, 100.0),
    "true_cfg_scale": (0.0, 100.0),
    "clip_skip": (0, 48),
    "max_sequence_length": (1, 512),
    "aesthetic_score": (0.0, 10.0),
    "negative_aesthetic_score": (0.0, 10.0),
}
"""Inclusive ranges of the arguments diffusers' pipelines document a meaning for."""
MAX_ARGUMENT_MAGNITUDE = 1_000_000
"""Any other number in ``extra`` (sizes, coordinates, scales) lies within +/- this."""


def check_step_lists(extra: Mapping[str, Any], max_steps: int) -> None:
    """``timesteps``/``sigmas``: a list of 1 to ``max_steps`` finite, non-negative numbers."""
    for name, kind in STEP_LIST_ARGUMENTS.items():
        if name not in extra or extra[name] is None:
            continue
        value = extra[name]
        field = f"extra.{name}"
        if not isinstance(value, list) or not value:
            raise RequestValidationError(field, f"must be a non-empty list of {kind}")
        if len(value) > max_steps:
            raise RequestValidationError(
                field,
                f"holds {len(value)} entries, each one a denoising step: over the limit of {max_steps} "
                "(config max_num_inference_steps)",
            )
        for item in value:
            number_ok = isinstance(item, int) if name == "timesteps" else isinstance(item, (int, float))
            if isinstance(item, bool) or not number_ok or not math.isfinite(item) or item < 0:
                raise RequestValidationError(field, f"must hold non-negative {kind}, got {_shown(item)}")


def check_argument_values(extra: Mapping[str, Any], annotations: Mapping[str, Any]) -> None:
    """Each value of ``extra`` has its parameter's annotated type (a JSON list stands for a tuple)
    and lies in its range; ``annotations`` is the pipeline call's, by parameter name."""
    for name, value in extra.items():
        field = f"extra.{name}"
        annotation = annotations.get(name, inspect.Parameter.empty)
        if not _matches(value, annotation):
            raise RequestValidationError(
                field, f"must be {_type_name(annotation)} (the pipeline's annotation), got {_shown(value)}"
            )
        low, high = ARGUMENT_RANGES.get(name, (-MAX_ARGUMENT_MAGNITUDE, MAX_ARGUMENT_MAGNITUDE))
        for number in _numbers(value):
            if not low <= number <= high:
                raise RequestValidationError(
                    field, f"must lie between {low:g} and {high:g}, got {_shown(number)}"
                )


def call_value(value: Any, annotation: Any) -> Any:
    """A JSON value as the pipeline takes it: lists become tuples where the parameter is a tuple
    (SDXL's ``original_size`` is added to other tuples)."""
    if isinstance(value, list) and any(_origin(option) is tuple for option in _options(annotation)):
        return tuple(value)
    return value


def _matches(value: Any, annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return True  # unannotated, or a forward reference: the pipeline's own checks apply
    origin = _origin(annotation)
    if origin is typing.Union:
        return any(_matches(value, option) for option in typing.get_args(annotation))
    arguments = typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and (not arguments or all(_matches(v, arguments[0]) for v in value))
    if origin is tuple:
        if not isinstance(value, list):
            return False
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return all(_matches(v, arguments[0]) for v in value)
        return len(value) == len(arguments) and all(
            _matches(v, a) for v, a in zip(value, arguments, strict=True)
        )
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return False  # a tensor, an image, a callable: no JSON value is one


def _origin(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    return typing.Union if origin is types.UnionType else origin


def _options(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation) if _origin(annotation) is typing.Union else (annotation,)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, list):
        return [number for item in value for number in _numbers(item)]
    if isinstance(value, dict):
        return [number for item in value.values() for number in _numbers(item)]
    return []


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
