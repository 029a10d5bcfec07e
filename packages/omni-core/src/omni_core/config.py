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
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from omni_core.declared import above, at_least, check_values, declare
from omni_core.errors import ConfigError
from omni_core.lora import parse_loras
from omni_core.pipeline_arguments import UNSUPPORTED_ARGUMENTS
from omni_core.registry import check_executor_spec, resolve_executor_class
from omni_core.runner.batching import Batching
from omni_core.validation import DEFAULT_EXTRA_DENIED, RequestLimits

if TYPE_CHECKING:
    from omni_core.executors.base import DiffusionExecutor

Dtype = Literal["auto", "float32", "float16", "bfloat16"]
DTYPES: tuple[str, ...] = typing.get_args(Dtype)
# Config fields a worker (process, actor) does not need, and could not always rebuild: an executor
# class or options from the user's __main__.
PARENT_ONLY_FIELDS = frozenset({"executor_class", "executor_options", "model"})


@dataclass
class OmniDiffusionConfig:
    """Model, devices, executor and request limits for one engine.

    Each field declares its type, range and ``--help`` text once (:mod:`omni_core.declared`):
    ``__post_init__`` holds values to them, and ``omni generate``/``omni serve``/the worker
    commands build their flags from them (:mod:`omni_core.cli.flags`).
    """

    model_name_or_path: str | None = field(
        default=None,
        metadata=declare(help="diffusers model folder or hub id [default: built-in model]", flag="--model"),
    )
    """A local diffusers folder or a hub id; ``None`` is omni's built-in default model."""
    model_class_name: str | None = field(
        default=None,
        metadata=declare(help="diffusers pipeline class, e.g. StableDiffusionPipeline", flag="--model-class"),
    )
    """A diffusers pipeline class (``"StableDiffusionPipeline"``); ``None`` reads model_index.json."""
    model: str | None = None
    """Alias of ``model_name_or_path`` (vLLM's spelling); setting both is an error."""

    num_gpus: int = field(default=1, metadata=at_least(0, help="GPUs to use (worker executors: one each)"))
    device: str | None = field(
        default=None, metadata=declare(help="cpu, cuda or cuda:N [default: CUDA when present, else CPU]")
    )
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``; ``None`` picks CUDA when present, else CPU."""
    dtype: Dtype = field(default="auto", metadata=declare(help="weights' dtype (auto: float16 on CUDA)"))
    """``auto`` is float16 on CUDA and float32 on CPU."""
    enable_cpu_offload: bool = False
    """diffusers' model CPU offload; needs an accelerator, ignored (with a warning) without one."""

    executor_class: str | type | None = field(
        default=None,
        metadata=declare(
            help="shorthand or dotted path 'pkg.mod:Cls' [env: OMNI_EXECUTOR; default: mp]",
            flag="--executor",
            envvar="OMNI_EXECUTOR",
        ),
    )
    executor_options: dict[str, Any] = field(
        default_factory=dict, metadata=declare(help="executor option KEY=VALUE (repeatable)", flag="--option")
    )

    max_batch_size: int = field(default=8, metadata=at_least(1, help="images one batch may hold"))
    """Images one batch may hold. Request mode: per pipeline call. Step mode: the upper bound of
    the measured cap, which counts denoiser rows (a guided image is two, so up to twice this)."""
    batching: Batching = field(
        default="step",
        metadata=declare(help="step: requests join at every denoising step; request: per call"),
    )
    """``"step"``: requests join and leave the running batch at every denoising step, where the
    model's family supports it (else request mode); ``"request"``: one pipeline call per batch of
    requests that agree on size, steps, guidance and conditioning. See docs/batching.md."""
    calibrate_batch_cap: bool = True
    """Step mode: measure at load how many rows still add throughput (else the cap is the bound,
    ``2 x max_batch_size`` rows)."""
    max_queued_requests: int | None = field(
        default=None,
        metadata=at_least(
            1, help="requests queued before new ones are refused as overloaded [default: no cap]"
        ),
    )
    """Requests an executor queues before it refuses more with ``OverloadedError``; ``None``: no cap."""
    request_timeout: float | None = field(
        default=None,
        metadata=above(
            0, help="seconds a request may take (queue included) unless it sets 'timeout' [default: none]"
        ),
    )
    """Seconds a request may take, queue included, unless it sets its own ``timeout``; then it fails
    with ``RequestTimeoutError`` and is aborted. ``None``: no limit."""
    default_num_inference_steps: int | None = field(
        default=None, metadata=at_least(1, help="steps when a request gives none", flag="--default-steps")
    )
    """Steps when a request leaves them out; ``None`` is the pipeline's own default."""

    # Limits every entry point (CLI, HTTP, Lambda) enforces before a request reaches the model.
    # (defaults from RequestLimits: one source for every entry point's limits)
    max_image_pixels: int = field(
        default=RequestLimits.max_image_pixels, metadata=at_least(1, help="largest height x width accepted")
    )
    max_num_inference_steps: int = field(
        default=RequestLimits.max_num_inference_steps,
        metadata=at_least(1, help="largest num_inference_steps accepted", flag="--max-steps"),
    )
    max_outputs_per_prompt: int = field(
        default=RequestLimits.max_outputs_per_prompt, metadata=at_least(1, help="largest n accepted")
    )
    max_prompt_length: int = field(
        default=RequestLimits.max_prompt_length,
        metadata=at_least(1, help="longest prompt accepted, in characters"),
    )
    max_guidance_scale: float = field(
        default=RequestLimits.max_guidance_scale, metadata=above(0, help="largest guidance_scale accepted")
    )
    max_input_images: int = field(
        default=RequestLimits.max_input_images, metadata=at_least(1, help="images one edit may send")
    )
    max_lora_scale: float = field(
        default=RequestLimits.max_lora_scale, metadata=above(0, help="lora_scale accepted in [-this, this]")
    )

    # What a request may change about the pipeline call.
    extra_allowed: list[str] | None = field(
        default=None,
        metadata=declare(
            help="the only pipeline arguments a request's extra may set (repeatable) "
            "[default: any the pipeline takes]"
        ),
    )
    """Pipeline arguments a request's ``extra`` may set; ``None``: any the loaded pipeline accepts."""
    extra_denied: list[str] = field(default_factory=lambda: sorted(DEFAULT_EXTRA_DENIED))
    """Pipeline arguments a request's ``extra`` may never set (tensor-valued ones by default)."""
    loras: dict[str, Any] = field(
        default_factory=dict,
        metadata=declare(
            help="a LoRA adapter requests may name with 'lora', NAME=PATH[@SCALE] (repeatable); "
            "never a path from a request",
            flag="--lora",
        ),
    )
    """LoRA adapters requests may name: ``{"name": "path"}`` or
    ``{"name": {"path": ..., "scale": 0.8, "weight_name": ...}}`` (never a path from a request)."""
    max_loaded_loras: int = field(
        default=4, metadata=at_least(1, help="adapters a worker keeps loaded (least recently used unloaded)")
    )
    """Adapters a worker keeps loaded (least recently used ones are unloaded past it)."""

    def __post_init__(self) -> None:
        if self.model is not None:
            if self.model_name_or_path is not None and self.model_name_or_path != self.model:
                raise ConfigError(
                    "model and model_name_or_path are both set and differ; set only model_name_or_path",
                    field="model",
                )
            self.model_name_or_path = self.model
        self.model = self.model_name_or_path
        if not isinstance(self.executor_class, (str, type, type(None))):
            raise ConfigError(
                "executor_class must be None, a str (shorthand such as 'mp' or dotted path "
                f"'pkg.mod:Cls') or a DiffusionExecutor subclass; got {type(self.executor_class).__name__} "
                f"{self.executor_class!r}",
                field="executor_class",
            )
        found = check_values(
            type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        )
        if found is not None:
            name, problem = found
            raise ConfigError(f"{name} {problem}", field=name)
        parse_loras(self.loras)
        unsupported = sorted(set(self.extra_allowed or ()) & set(UNSUPPORTED_ARGUMENTS))
        if unsupported:
            name = unsupported[0]
            raise ConfigError(
                f"extra_allowed names {name!r}, which omni does not support: {UNSUPPORTED_ARGUMENTS[name]}",
                field="extra_allowed",
            )
        self._validate_executor_class()

    def _validate_executor_class(self) -> None:
        spec = self.executor_class
        if spec is None:
            return  # the default ("mp") is resolved when an engine is built
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
