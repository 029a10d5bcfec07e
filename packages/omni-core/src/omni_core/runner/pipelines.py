"""The loaded pipeline and the image-to-image and inpainting pipelines derived from it.

diffusers' ``AutoPipelineForImage2Image.from_pipe`` / ``AutoPipelineForInpainting.from_pipe``
build the family's other pipelines around the *same* component objects (UNet or
transformer, VAE, text encoders), so serving all three costs no second copy of the
weights. Derived once at load; a family without such a pipeline is recorded as
not supporting the task, and a request for it is refused before anything runs.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

from omni_core.errors import RequestValidationError

logger = logging.getLogger(__name__)

TASK_NAMES = {"text": "text-to-image", "image": "image-to-image", "inpaint": "inpainting"}


@dataclass
class PipelineSet:
    """One pipeline per task a model supports, sharing components; what each call accepts."""

    pipelines: dict[str, Any]
    label: str
    """How errors name the model: its pipeline class (never its path, which callers must not see)."""
    arguments: dict[str, frozenset[str]] = field(default_factory=dict)
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each call's keyword defaults (``strength``, ``num_inference_steps``), as its signature declares."""
    annotations: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each call's parameter annotations: what a request's ``extra`` values are checked against."""

    @classmethod
    def derive(cls, pipeline: Any, label: str) -> PipelineSet:
        """``pipeline`` for text, plus whatever image-to-image and inpainting diffusers can derive."""
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        pipelines: dict[str, Any] = {"text": pipeline}
        own = getattr(pipeline, "omni_task_pipelines", None)
        # A pipeline outside diffusers' tables (omni's shapes model) may build its own edit pipelines.
        derived_by_pipeline: dict[str, Any] = own() if callable(own) else {}
        for task, auto in (("image", AutoPipelineForImage2Image), ("inpaint", AutoPipelineForInpainting)):
            if task in derived_by_pipeline:
                pipelines[task] = derived_by_pipeline[task]
                continue
            try:
                derived = auto.from_pipe(pipeline)
            except Exception as exc:  # noqa: BLE001 - "no such pipeline for this family" takes many forms
                logger.info("%s: no %s pipeline (%s)", label, TASK_NAMES[task], exc)
                continue
            if hasattr(derived, "set_progress_bar_config"):
                derived.set_progress_bar_config(disable=True)
            pipelines[task] = derived
        arguments: dict[str, frozenset[str]] = {}
        defaults: dict[str, dict[str, Any]] = {}
        annotations: dict[str, dict[str, Any]] = {}
        for task, pipe in pipelines.items():
            parameters = [
                parameter
                for parameter in inspect.signature(pipe.__call__).parameters.values()
                if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            ]
            arguments[task] = frozenset(parameter.name for parameter in parameters)
            defaults[task] = {p.name: p.default for p in parameters if p.default is not p.empty}
            annotations[task] = {p.name: p.annotation for p in parameters}
        return cls(pipelines, label, arguments, defaults, annotations)

    def for_task(self, task: str) -> Any:
        """The pipeline for ``task``, or a validation error naming the model and what it supports."""
        pipeline = self.pipelines.get(task)
        if pipeline is None:
            supported = ", ".join(TASK_NAMES[name] for name in self.pipelines)
            field_name = "mask_image" if task == "inpaint" else "image"
            raise RequestValidationError(
                field_name,
                f"model {self.label} has no {TASK_NAMES[task]} pipeline in diffusers; "
                f"it supports: {supported}",
            )
        return pipeline

    @property
    def tasks(self) -> list[str]:
        return [TASK_NAMES[task] for task in self.pipelines]
