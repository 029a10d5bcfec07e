"""``OmniDiffusionConfig``: everything an engine needs, checked when built.

Building a config touches no model and imports no torch: a model path is
only opened when an executor loads it. What *can* be checked cheaply is
checked in ``__post_init__`` so a typo fails at the line that made it.
Subclass it to give a custom executor its own settings::

    @dataclass
    class RemoteConfig(OmniDiffusionConfig):
        remote_url: str = "http://127.0.0.1:8000"

The executor receives the subclass instance unchanged as ``self.od_config``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omni_core.lora import parse_loras
from omni_core.pipeline_arguments import UNSUPPORTED_ARGUMENTS
from omni_core.registry import check_executor_spec, resolve_executor_class
from omni_core.runner.batching import BATCHING_MODES
from omni_core.validation import DEFAULT_EXTRA_DENIED, RequestLimits

if TYPE_CHECKING:
    from omni_core.executors.base import DiffusionExecutor

DTYPES = ("auto", "float32", "float16", "bfloat16")
# Config fields a worker (process, actor) does not need, and could not always rebuild: an executor
# class or options from the user's __main__.
PARENT_ONLY_FIELDS = frozenset({"executor_class", "executor_options", "model"})


@dataclass
class OmniDiffusionConfig:
    """Model, devices, executor and request limits for one engine."""

    model_name_or_path: str | None = None
    """A local diffusers folder or a hub id; ``None`` is omni's built-in default model."""
    model_class_name: str | None = None
    """A diffusers pipeline class (``"StableDiffusionPipeline"``); ``None`` reads model_index.json."""
    model: str | None = None
    """Alias of ``model_name_or_path`` (vLLM's spelling); setting both is an error."""

    num_gpus: int = 1
    device: str | None = None
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``; ``None`` picks CUDA when present, else CPU."""
    dtype: str = "auto"
    """``auto`` is float16 on CUDA and float32 on CPU."""
    enable_cpu_offload: bool = False
    """diffusers' model CPU offload; needs an accelerator, ignored (with a warning) without one."""

    executor_class: str | type | None = None
    executor_options: dict[str, Any] = field(default_factory=dict)

    max_batch_size: int = 8
    """Images one batch may hold. Request mode: per pipeline call. Step mode: the upper bound of
    the measured cap, which counts denoiser rows (a guided image is two, so up to twice this)."""
    batching: str = "step"
    """``"step"``: requests join and leave the running batch at every denoising step, where the
    model's family supports it (else request mode); ``"request"``: one pipeline call per batch of
    requests that agree on size, steps, guidance and conditioning. See docs/batching.md."""
    calibrate_batch_cap: bool = True
    """Step mode: measure at load how many rows still add throughput (else the cap is the bound,
    ``2 x max_batch_size`` rows)."""
    max_queued_requests: int | None = None
    """Requests an executor queues before it refuses more with ``OverloadedError``; ``None``: no cap."""
    request_timeout: float | None = None
    """Seconds a request may take, queue included, unless it sets its own ``timeout``; then it fails
    with ``RequestTimeoutError`` and is aborted. ``None``: no limit."""
    default_num_inference_steps: int | None = None
    """Steps when a request leaves them out; ``None`` is the pipeline's own default."""

    # Limits every entry point (CLI, HTTP, Lambda) enforces before a request reaches the model.
    # (defaults from RequestLimits: one source for every entry point's limits)
    max_image_pixels: int = RequestLimits.max_image_pixels
    max_num_inference_steps: int = RequestLimits.max_num_inference_steps
    max_outputs_per_prompt: int = RequestLimits.max_outputs_per_prompt
    max_prompt_length: int = RequestLimits.max_prompt_length
    max_guidance_scale: float = RequestLimits.max_guidance_scale
    max_input_images: int = RequestLimits.max_input_images
    max_lora_scale: float = RequestLimits.max_lora_scale

    # What a request may change about the pipeline call.
    extra_allowed: list[str] | None = None
    """Pipeline arguments a request's ``extra`` may set; ``None``: any the loaded pipeline accepts."""
    extra_denied: list[str] = field(default_factory=lambda: sorted(DEFAULT_EXTRA_DENIED))
    """Pipeline arguments a request's ``extra`` may never set (tensor-valued ones by default)."""
    loras: dict[str, Any] = field(default_factory=dict)
    """LoRA adapters requests may name: ``{"name": "path"}`` or
    ``{"name": {"path": ..., "scale": 0.8, "weight_name": ...}}`` (never a path from a request)."""
    max_loaded_loras: int = 4
    """Adapters a worker keeps loaded (least recently used ones are unloaded past it)."""

    def __post_init__(self) -> None:
        if self.model is not None:
            if self.model_name_or_path is not None and self.model_name_or_path != self.model:
                raise ValueError(
                    "model and model_name_or_path are both set and differ; set only model_name_or_path"
                )
            self.model_name_or_path = self.model
        self.model = self.model_name_or_path
        for name in ("model_name_or_path", "model_class_name", "device"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__} {value!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not supported; use one of {', '.join(DTYPES)}")
        if self.batching not in BATCHING_MODES:
            raise ValueError(
                f"batching {self.batching!r} is not a mode; use one of {', '.join(BATCHING_MODES)}"
            )
        if not isinstance(self.calibrate_batch_cap, bool):
            raise TypeError(f"calibrate_batch_cap must be a bool, got {self.calibrate_batch_cap!r}")
        if not isinstance(self.executor_options, dict):
            raise TypeError(f"executor_options must be a dict, got {type(self.executor_options).__name__}")
        for name in (
            "num_gpus",
            "max_batch_size",
            "max_image_pixels",
            "max_num_inference_steps",
            "max_outputs_per_prompt",
            "max_prompt_length",
            "max_input_images",
            "max_loaded_loras",
        ):
            value = getattr(self, name)
            minimum = 0 if name == "num_gpus" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        queued = self.max_queued_requests
        if queued is not None and (isinstance(queued, bool) or not isinstance(queued, int) or queued < 1):
            raise ValueError(f"max_queued_requests must be an int >= 1 or None, got {queued!r}")
        for name in ("max_guidance_scale", "max_lora_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        timeout = self.request_timeout
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise ValueError(f"request_timeout must be a number of seconds > 0 or None, got {timeout!r}")
        steps = self.default_num_inference_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"default_num_inference_steps must be an int >= 1 or None, got {steps!r}")
        parse_loras(self.loras)
        for name in ("extra_allowed", "extra_denied"):
            names = getattr(self, name)
            if names is None and name == "extra_allowed":
                continue
            if not isinstance(names, (list, tuple, set, frozenset)) or not all(
                isinstance(n, str) for n in names
            ):
                raise TypeError(f"{name} must be a list of pipeline argument names, got {names!r}")
        unsupported = sorted(set(self.extra_allowed or ()) & set(UNSUPPORTED_ARGUMENTS))
        if unsupported:
            name = unsupported[0]
            raise ValueError(
                f"extra_allowed names {name!r}, which omni does not support: {UNSUPPORTED_ARGUMENTS[name]}"
            )
        self._validate_executor_class()

    def _validate_executor_class(self) -> None:
        spec = self.executor_class
        if spec is None:
            return  # the default ("mp") is resolved when an engine is built
        if not isinstance(spec, (str, type)):
            raise TypeError(
                "executor_class must be None, a str (shorthand such as 'mp' or dotted path "
                f"'pkg.mod:Cls') or a DiffusionExecutor subclass; got {type(spec).__name__} {spec!r}"
            )
        check_executor_spec(spec)

    def resolve_executor_class(self) -> type[DiffusionExecutor]:
        """The executor class this config selects (``None`` → ``"mp"``)."""
        return resolve_executor_class(self.executor_class)

    def replace(self, **changes: Any) -> OmniDiffusionConfig:
        """A copy with some fields changed (keeps the subclass and its extra fields)."""
        if "model_name_or_path" in changes and "model" not in changes:
            changes["model"] = None
        return dataclasses.replace(self, **changes)


def worker_config_fields(config: OmniDiffusionConfig) -> dict[str, Any]:
    """What a worker needs of ``config``: the base class's fields as plain values.

    A worker (another process, a Ray actor) rebuilds ``OmniDiffusionConfig(**fields)``;
    a user's config subclass need not be importable there.
    """
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(OmniDiffusionConfig)
        if f.init and f.name not in PARENT_ONLY_FIELDS
    }
