"""Load a diffusers pipeline once and run batches of requests through it."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from omni_core.errors import ModelError, ModelLoadError, RequestCancelledError, RequestValidationError
from omni_core.lora import parse_loras
from omni_core.pipeline_arguments import call_value, check_argument_values
from omni_core.previews import Preview, preview_steps
from omni_core.request import DiffusionOutput, OmniDiffusionRequest
from omni_core.runner.argument_checks import check_schedule_arguments, refusals_as_validation
from omni_core.runner.batching import (
    BatchingMode,
    PlannedRequest,
    choose_batching,
    plan_batches,
    task_of,
)
from omni_core.runner.calibration import Calibration, calibrate
from omni_core.runner.lora import LoadedLoras
from omni_core.runner.pipelines import PipelineSet
from omni_core.runner.previews import X0Capture, decode_preview
from omni_core.runner.step_batching import Deliver, StepBatcher
from omni_core.validation import (
    SIZE_MULTIPLE,
    RequestLimits,
    check_extra_names,
    check_pixels,
    validate_request,
)

if TYPE_CHECKING:
    from omni_core.config import OmniDiffusionConfig
    from omni_core.images import ImageArray

logger = logging.getLogger(__name__)

StepCallback = Callable[[Sequence[str], int, int, Mapping[str, Preview]], None]
"""``(request_ids, step, total_steps, previews)`` after every denoising step of a batch; ``previews``
holds the requests that asked for a preview at this step (usually none)."""

MAX_RANDOM_SEED = 2**31 - 1
CALIBRATION_PROMPT = "a 7"


def to_uint8_images(images: npt.NDArray[Any]) -> list[ImageArray]:
    """Float images in [0, 1] (N, H, W, C) → 8-bit arrays, rounded as diffusers' ``numpy_to_pil``."""
    scaled = (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return [np.ascontiguousarray(image) for image in scaled]


def resolve_model_path(model_name_or_path: str | None) -> str:
    """A local folder, a hub id, a built-in model's name, or (for ``None``) the default model's folder."""
    from omni_core.models.default import builtin_model_path, default_model_path

    if model_name_or_path is None:
        return str(default_model_path())
    builtin = builtin_model_path(model_name_or_path)
    if builtin is not None and not os.path.exists(model_name_or_path):
        return str(builtin)
    expanded = os.path.expanduser(model_name_or_path)
    if os.path.exists(expanded):
        return expanded
    looks_local = (
        expanded.startswith((os.sep, ".", "~"))
        or expanded.count("/") > 1
        or (os.altsep is not None and os.altsep in expanded)
    )
    if looks_local:
        raise ModelLoadError(
            f"model path {model_name_or_path!r} does not exist; pass a diffusers model folder "
            "(with model_index.json) or a hub id such as 'org/name'"
        )
    return model_name_or_path


class DiffusionModelRunner:
    """One loaded pipeline on one device; not shared between threads without its lock.

    ``device`` overrides ``config.device`` (worker processes pin each runner
    to its own GPU). Generators are always created on the CPU so the same
    seed gives the same starting noise on any device.
    """

    def __init__(self, config: OmniDiffusionConfig, *, device: str | None = None) -> None:
        self.config = config
        self.limits = RequestLimits.from_config(config)
        self._device_override = device
        self._lock = threading.Lock()
        self.pipeline: Any = None
        self.pipelines: PipelineSet | None = None
        """The loaded pipeline and those derived from it (image-to-image, inpainting)."""
        self.loras = LoadedLoras(parse_loras(config.loras), config.max_loaded_loras)
        self.device: str = "cpu"
        self.model_path: str | None = None
        self._active: set[str] = set()
        self._cancelled: set[str] = set()
        self._cancel_lock = threading.Lock()
        self.batching = BatchingMode("request", None, "no model loaded")
        self.step_batcher: StepBatcher | None = None
        self.calibration: Calibration | None = None

    # ------------------------------------------------------------------ loading

    def load_model(self) -> None:
        """Import torch/diffusers and load the pipeline; raises :class:`ModelLoadError`."""
        import torch

        _quiet_library_logs()
        import diffusers

        self.device = (
            self._device_override or self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        dtype = self._torch_dtype(torch)
        path = resolve_model_path(self.config.model_name_or_path)
        pipeline_class = pipeline_class_for(self.config.model_class_name, path, diffusers)
        local = os.path.isdir(path)
        try:
            pipeline = pipeline_class.from_pretrained(
                path, dtype=dtype, local_files_only=local or _hub_offline()
            )
        except Exception as exc:
            raise ModelLoadError(
                f"could not load model {path!r} with {pipeline_class.__name__}.from_pretrained: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if self.config.enable_cpu_offload and self.device != "cpu":
            pipeline.enable_model_cpu_offload(device=self.device)
        else:
            if self.config.enable_cpu_offload:
                logger.warning("enable_cpu_offload ignored: it needs an accelerator, running on CPU")
            pipeline = pipeline.to(self.device)
        if hasattr(pipeline, "set_progress_bar_config"):
            pipeline.set_progress_bar_config(disable=True)
        self.pipelines = PipelineSet.derive(pipeline, type(pipeline).__name__)
        self.pipeline = pipeline
        self.model_path = path
        self._start_step_batching()

    def _start_step_batching(self) -> None:
        """Step mode where the config asks for it and the family allows it; the cap measured."""
        pipelines = self._pipeline_set()
        self.batching = choose_batching(self.config.batching, pipelines.pipelines)
        if self.batching.denoiser is None:
            return
        self.step_batcher = StepBatcher(
            denoiser_name=self.batching.denoiser,
            pipeline_for=lambda planned: pipelines.for_task(task_of(planned.request)),
            activate=self._activate_group,
            cap_rows=self.max_step_rows,
        )
        if self.config.calibrate_batch_cap:
            self.calibration = self._calibrate(self.step_batcher)
            self.step_batcher.cap_rows = self.calibration.cap_rows
        else:
            self.calibration = Calibration(self.max_step_rows, why="calibrate_batch_cap is off")

    def _calibrate(self, batcher: StepBatcher) -> Calibration:
        recorded: list[dict[str, Any]] = []
        batcher.on_forward = lambda arguments: recorded.append(arguments) if not recorded else None
        height, width = self._calibration_size()
        probe = OmniDiffusionRequest(
            prompt=CALIBRATION_PROMPT, num_inference_steps=1, seed=0, height=height, width=width
        )
        try:
            failure = self.execute([probe])[0].error
        finally:
            batcher.on_forward = None
        if failure is not None and not recorded:
            # The model loads but its calls fail: each request will fail alone with the same
            # error (a 500 from the server); there is nothing to measure, so the bound is the cap.
            logger.warning(
                "step batching: the calibration request failed (%s); cap left at the bound", failure
            )
            return Calibration(self.max_step_rows, why=f"the calibration request failed: {failure}")
        if not recorded:
            return Calibration(self.max_step_rows, why="the pipeline made no denoiser call to measure")
        denoiser = getattr(self.pipeline, batcher.denoiser_name)
        sample_name = next(iter(inspect.signature(denoiser.forward).parameters))
        result = calibrate(denoiser, recorded[0], sample_name, self.max_step_rows, self.device)
        logger.info("step batching cap: %d rows (%s)", result.cap_rows, result.why)
        return result

    @property
    def max_step_rows(self) -> int:
        """The most denoiser rows one step may hold: ``max_batch_size`` guided images (two rows
        each), so step mode can always batch as many images as request mode would."""
        return 2 * self.config.max_batch_size

    def _calibration_size(self) -> tuple[int | None, int | None]:
        """The served default size, or the largest square under ``max_image_pixels`` below it."""
        height, width = self.default_size()
        if height is None or width is None or height * width <= self.limits.max_image_pixels:
            return height, width
        side = max(SIZE_MULTIPLE, math.isqrt(self.limits.max_image_pixels) // SIZE_MULTIPLE * SIZE_MULTIPLE)
        return side, side

    def _activate_group(self, group: object) -> None:
        lora, scale = cast("tuple[str | None, float | None]", group)
        self.loras.activate(self.pipeline, lora, scale)

    def _torch_dtype(self, torch: Any) -> Any:
        name = self.config.dtype
        if name == "auto":
            return torch.float16 if self.device.startswith("cuda") else torch.float32
        return getattr(torch, name)

    @property
    def is_loaded(self) -> bool:
        return self.pipeline is not None

    def describe(self) -> dict[str, Any]:
        """What is loaded where; the answer of ``collective_rpc("describe")``."""
        import torch

        return {
            "model": self.model_path,
            "pipeline_class": type(self.pipeline).__name__ if self.pipeline is not None else None,
            "tasks": self.pipelines.tasks if self.pipelines is not None else [],
            "loras_loaded": self.loras.loaded,
            "device": self.device,
            "dtype": str(self._torch_dtype(torch)).removeprefix("torch."),
            "torch_threads": torch.get_num_threads(),
            "batching": self.describe_batching(),
            "pid": os.getpid(),
        }

    def describe_batching(self) -> dict[str, Any]:
        """The mode this model runs in, why, and (step mode) the measured cap and step times."""
        info: dict[str, Any] = {"mode": self.batching.mode, "reason": self.batching.reason}
        if self.step_batcher is not None:
            info["denoiser"] = self.batching.denoiser
            info["cap_rows"] = self.step_batcher.cap_rows
            info["calibration"] = self.calibration.as_dict() if self.calibration is not None else None
            stats = self.step_batcher.stats
            info["forwards"] = stats.forwards
            info["rows_per_forward"] = stats.rows / stats.forwards if stats.forwards else 0.0
        else:
            info["max_batch_images"] = self.config.max_batch_size
        return info

    @property
    def window(self) -> int | None:
        """Step mode: images an executor may hand this runner ahead of its steps (None: request mode).

        The cap in rows, counted in images: a guided image takes two rows, so up to
        half of it waits in the runner, ready to join at the next step."""
        return None if self.step_batcher is None else self.step_batcher.cap_rows

    def ping(self) -> str:
        """Cheap liveness probe for ``collective_rpc``."""
        return "pong"

    # ------------------------------------------------------------ cancellation

    def cancel(self, request_id: str) -> bool:
        """Abort ``request_id`` at its next denoising step if it is in the current call.

        Its output gets ``error_type="RequestCancelledError"``. In step mode only its own
        rows leave the batch; in request mode the requests batched with it are re-run
        without it. Returns False if the request is not running here.
        """
        if self.step_batcher is not None:
            return self.step_batcher.cancel(request_id)
        with self._cancel_lock:
            if request_id not in self._active:
                return False
            self._cancelled.add(request_id)
            return True

    def _raise_if_cancelled(self, request_ids: Sequence[str]) -> None:
        with self._cancel_lock:
            hit = [request_id for request_id in request_ids if request_id in self._cancelled]
        if hit:
            raise RequestCancelledError(f"request {hit[0]} was cancelled")

    # ---------------------------------------------------------------- execution

    def default_size(self) -> tuple[int | None, int | None]:
        """The pipeline's default (height, width), as diffusers would pick it, if knowable."""
        pipeline = self.pipeline
        sample = getattr(pipeline, "default_sample_size", None)
        if sample is None:
            # Stable Diffusion derives it from the denoiser's config, as its __call__ does.
            denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
            sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
        scale = getattr(pipeline, "vae_scale_factor", None)
        if isinstance(sample, int) and isinstance(scale, int):
            return sample * scale, sample * scale
        return None, None

    def plan(self, request: OmniDiffusionRequest, index: int) -> PlannedRequest:
        """Validate ``request`` and fill its defaults; raises :class:`RequestValidationError`.

        Everything a pipeline call could refuse is checked here, before any batch
        runs: the task against the pipelines the model has, ``extra`` against the
        chosen pipeline's signature, ``lora`` against the model's LoRA support.
        """
        validate_request(request, self.limits)
        pipelines = self._pipeline_set()
        task = task_of(request)
        pipelines.for_task(task)
        check_extra_names(request.extra, pipelines.arguments[task], self.limits, pipelines.label)
        check_argument_values(request.extra, pipelines.annotations[task])
        check_schedule_arguments(request.extra, getattr(self.pipeline, "scheduler", None))
        if request.lora is not None and not hasattr(self.pipeline, "load_lora_weights"):
            raise RequestValidationError("lora", f"model {pipelines.label} does not support LoRA adapters")
        default_height, default_width = self.default_size()
        if request.images:
            # An edit keeps its image's size (rounded down to what the VAE takes), as diffusers does.
            image_height, image_width = request.images[0].shape[:2]
            default_height = image_height // SIZE_MULTIPLE * SIZE_MULTIPLE
            default_width = image_width // SIZE_MULTIPLE * SIZE_MULTIPLE
        height = request.height if request.height is not None else default_height
        width = request.width if request.width is not None else default_width
        check_pixels(height, width, self.limits)
        steps = request.num_inference_steps
        if steps is None:
            steps = self.config.default_num_inference_steps
        if task != "text":
            check_denoising_steps(request, steps, pipelines.defaults[task])
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_RANDOM_SEED)
        guidance = None if request.guidance_scale is None else float(request.guidance_scale)
        return PlannedRequest(index, request, height, width, steps, guidance, seed)

    def execute(
        self,
        requests: Sequence[OmniDiffusionRequest],
        *,
        on_step: StepCallback | None = None,
    ) -> list[DiffusionOutput]:
        """Run ``requests``; one output per request, in order; a bad request fails alone."""
        if self.pipeline is None:
            raise RuntimeError("DiffusionModelRunner.execute called before load_model()")
        if self.step_batcher is not None:
            return self._execute_by_step(requests, on_step)
        outputs: list[DiffusionOutput | None] = [None] * len(requests)
        planned: list[PlannedRequest] = []
        for index, request in enumerate(requests):
            try:
                planned.append(self.plan(request, index))
            except RequestValidationError as exc:
                outputs[index] = DiffusionOutput.failure(_request_id(request), exc)
        ids = {item.request.request_id for item in planned}
        with self._lock:
            with self._cancel_lock:
                self._active |= ids
            try:
                for batch in plan_batches(planned, self.config.max_batch_size):
                    for item, output in zip(
                        batch, self._run_batch_isolating_failures(batch, on_step), strict=True
                    ):
                        outputs[item.index] = output
            finally:
                with self._cancel_lock:
                    self._active -= ids
                    self._cancelled -= ids
        return [output for output in outputs if output is not None]

    def start(
        self,
        requests: Sequence[OmniDiffusionRequest],
        deliver: Deliver,
        *,
        on_step: StepCallback | None = None,
    ) -> None:
        """Step mode: queue ``requests`` to join the running batch; ``deliver`` gets each output as
        it finishes (from the step loop's thread), a refused request's at once. Thread-safe."""
        batcher = self.step_batcher
        if batcher is None:
            raise RuntimeError("DiffusionModelRunner.start needs step batching; use execute()")
        for index, request in enumerate(requests):
            try:
                planned = self.plan(request, index)
            except RequestValidationError as exc:
                deliver(DiffusionOutput.failure(_request_id(request), exc))
                continue
            task = task_of(planned.request)
            guidance = planned.guidance_scale
            if guidance is None:
                guidance = self._pipeline_set().defaults[task].get("guidance_scale")
            forward_progress = None
            if on_step is not None and "callback_on_step_end" not in self._pipeline_set().arguments[task]:
                # PixArt and other older pipelines: one denoiser forward is one step.
                request_ids, total = [planned.request.request_id], planned.num_inference_steps or 0
                forward_progress = functools.partial(_report_forward, on_step, request_ids, total)
            batcher.submit(
                planned,
                functools.partial(self._run_one, planned, on_step),
                deliver,
                group=(planned.request.lora, planned.request.lora_scale),
                guided=isinstance(guidance, (int, float)) and guidance > 1.0,
                on_forward=forward_progress,
            )

    def _run_one(
        self, planned: PlannedRequest, on_step: StepCallback | None, pipeline: Any
    ) -> DiffusionOutput:
        return self._run_batch([planned], on_step, pipeline)[0]

    def _execute_by_step(
        self, requests: Sequence[OmniDiffusionRequest], on_step: StepCallback | None
    ) -> list[DiffusionOutput]:
        """``execute`` in step mode: all of them join the loop (with other callers'), in order back."""
        done = threading.Condition()
        outputs: dict[str, DiffusionOutput] = {}

        def deliver(output: DiffusionOutput) -> None:
            with done:
                outputs[output.request_id] = output
                done.notify_all()

        ids = [_request_id(request) for request in requests]
        if len(set(ids)) != len(ids):
            # Outputs are matched by id; a repeated id in one call runs as separate calls.
            return [output for request in requests for output in self._execute_by_step([request], on_step)]
        self.start(requests, deliver, on_step=on_step)
        with done:
            done.wait_for(lambda: len(outputs) >= len(ids))
        return [outputs[request_id] for request_id in ids]

    def close(self) -> None:
        """Stop the step loop (its requests fail as the executor's) and drop the pipeline."""
        if self.step_batcher is not None:
            self.step_batcher.close()
        self.pipeline = None

    def _run_batch_isolating_failures(
        self, batch: list[PlannedRequest], on_step: StepCallback | None
    ) -> list[DiffusionOutput]:
        try:
            return self._run_batch(batch, on_step)
        except Exception as exc:  # noqa: BLE001 - retried one by one to find the culprit
            if len(batch) == 1:
                logger.warning("request %s failed: %s", batch[0].request.request_id, exc)
                return [DiffusionOutput.failure(batch[0].request.request_id, exc)]
            logger.warning("batch of %d failed (%s); retrying its requests one by one", len(batch), exc)
            return [self._run_batch_isolating_failures([item], on_step)[0] for item in batch]

    def _pipeline_set(self) -> PipelineSet:
        if self.pipelines is None:
            raise RuntimeError("DiffusionModelRunner used before load_model()")
        return self.pipelines

    def _run_batch(
        self, batch: list[PlannedRequest], on_step: StepCallback | None, pipeline: Any = None
    ) -> list[DiffusionOutput]:
        """One pipeline call for ``batch`` (in step mode ``pipeline`` is the request's own copy)."""
        import torch

        first = batch[0]
        task = task_of(first.request)
        if pipeline is None:
            pipeline = self._pipeline_set().for_task(task)
        accepted = self._pipeline_set().arguments[task]
        request_ids = [item.request.request_id for item in batch]
        self._raise_if_cancelled(request_ids)
        prompts: list[str] = []
        negatives: list[str] = []
        generators: list[Any] = []
        images: list[Any] = []
        masks: list[Any] = []
        for item in batch:
            inputs: list[ImageArray | None] = list(item.request.images) or [None]
            for image_index in range(item.num_images):
                prompts.append(item.request.prompt)
                negatives.append(item.request.negative_prompt or "")
                generators.append(torch.Generator(device="cpu").manual_seed(item.seed + image_index))
                source = inputs[image_index // item.request.num_outputs_per_prompt]
                if source is not None:
                    images.append(_input_pil(source, first.height, first.width, mask=False))
                if item.request.mask_image is not None:
                    masks.append(_input_pil(item.request.mask_image, first.height, first.width, mask=True))
        annotations = self._pipeline_set().annotations[task]
        kwargs: dict[str, Any] = {  # equal across the batch (its key)
            name: call_value(value, annotations.get(name)) for name, value in first.request.extra.items()
        }
        kwargs.update({"prompt": prompts, "generator": generators, "output_type": "np"})
        if any(item.request.negative_prompt for item in batch):
            kwargs["negative_prompt"] = negatives
        if images:
            kwargs["image"] = images
        if masks:
            kwargs["mask_image"] = masks
        for name, value in (
            ("height", first.height),
            ("width", first.width),
            ("num_inference_steps", first.num_inference_steps),
            ("guidance_scale", first.guidance_scale),
            ("strength", first.request.strength),
        ):
            # SD's image-to-image call takes no height/width: the image (resized above) sets them.
            if value is not None and name in accepted:
                kwargs[name] = value
        self.loras.activate(self.pipeline, first.request.lora, first.request.lora_scale)

        want_trajectory = any(item.request.return_trajectory for item in batch)
        latents_per_step: list[npt.NDArray[Any]] = []
        timesteps: list[float] = []
        if "callback_on_step_end" in accepted:
            # Always installed: it is also where a cancelled request stops (between steps).

            def step_end(
                pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
            ) -> dict[str, Any]:
                if want_trajectory:
                    latents_per_step.append(callback_kwargs["latents"].detach().float().cpu().numpy())
                    timesteps.append(float(timestep))
                if on_step is not None:
                    total = int(getattr(pipe, "num_timesteps", 0) or first.num_inference_steps or 0)
                    previews = _previews_at(pipe, batch, step + 1, total, capture.latest) if capture else {}
                    on_step(request_ids, step + 1, total, previews)
                self._raise_if_cancelled(request_ids)
                return callback_kwargs

            kwargs["callback_on_step_end"] = step_end

        wants_previews = on_step is not None and any(item.request.partial_images for item in batch)
        capture = X0Capture() if wants_previews and hasattr(pipeline, "scheduler") else None
        started = time.perf_counter()
        with (
            torch.inference_mode(),
            refusals_as_validation(first.request.extra, _denoiser_of(pipeline)),
            capture.installed(pipeline.scheduler) if capture else contextlib.nullcontext(),
        ):
            result = pipeline(**kwargs)
        elapsed = time.perf_counter() - started
        raw = np.asarray(result.images)
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            # A black (NaN) image is not a success: fail the batch, which is then retried one
            # request at a time so only the request(s) that produce it fail.
            raise ModelError("the pipeline produced non-finite pixel values (NaN or inf); no image returned")
        produced = to_uint8_images(raw)

        outputs: list[DiffusionOutput] = []
        row = 0
        for item in batch:
            count = item.num_images
            trajectory = None
            if item.request.return_trajectory and latents_per_step:
                trajectory = np.stack([step[row : row + count] for step in latents_per_step])
            outputs.append(
                DiffusionOutput(
                    request_id=item.request.request_id,
                    output=produced[row : row + count],
                    seed=item.seed,
                    trajectory_latents=trajectory,
                    trajectory_timesteps=list(timesteps) if trajectory is not None else None,
                    timings={"inference": elapsed, "batch_images": float(len(prompts))},
                )
            )
            row += count
        return outputs


def _denoiser_of(pipeline: Any) -> Any:
    """The pipeline's denoiser (or, in step mode, its stand-in), where its first step is seen."""
    name = getattr(pipeline, "omni_step_denoiser", None)
    if isinstance(name, str):
        return getattr(pipeline, name, None)
    return getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)


def _report_forward(on_step: StepCallback, request_ids: list[str], total: int, forwards: int) -> None:
    on_step(request_ids, forwards, max(total, forwards), {})


def _previews_at(
    pipeline: Any, batch: list[PlannedRequest], step: int, total: int, x0: Any
) -> dict[str, Preview]:
    """The previews due after ``step`` of ``total``: one per request whose schedule has this step,
    decoded from the batch's x0 estimate (once, for all of them)."""
    previews: dict[str, Preview] = {}
    decoded: list[ImageArray] | None = None
    row = 0
    for item in batch:
        schedule = preview_steps(total, item.request.partial_images)
        if step in schedule:
            if decoded is None:
                decoded = decode_preview(pipeline, x0, item.height, item.width) or []
            images = tuple(decoded[row : row + item.num_images])
            if len(images) == item.num_images:
                previews[item.request.request_id] = Preview(schedule.index(step), images)
        row += item.num_images
    return previews


def check_denoising_steps(request: OmniDiffusionRequest, steps: int | None, defaults: dict[str, Any]) -> None:
    """An edit runs ``int(steps * strength)`` denoising steps (diffusers' rule); zero would crash the call."""
    strength = request.strength if request.strength is not None else defaults.get("strength")
    if steps is None:
        steps = defaults.get("num_inference_steps")
    if not isinstance(strength, (int, float)) or not isinstance(steps, int) or int(steps * strength) >= 1:
        return
    raise RequestValidationError(
        "num_inference_steps",
        f"{steps} step(s) at strength {strength:g} leave no denoising step (an edit runs "
        f"int(steps x strength)); ask for at least {math.ceil(1 / strength)} steps or a higher strength",
    )


def _input_pil(array: ImageArray, height: int | None, width: int | None, *, mask: bool) -> Any:
    """An input image or mask as PIL, at the output size (masks resized without blending)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(array))
    if height is not None and width is not None and image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.NEAREST if mask else Image.Resampling.LANCZOS)
    return image


# omni's own pipeline classes, found by the ``_class_name`` in a model's model_index.json.
# A fixed table, never an import path read from a model folder.
OMNI_PIPELINES = {
    "DigitsPipeline": "omni_core.models.digits:DigitsPipeline",
    "ShapesPipeline": "omni_core.models.shapes:ShapesPipeline",
}


def pipeline_class_for(model_class_name: str | None, path: str, diffusers: Any) -> Any:
    """The class whose ``from_pretrained`` loads ``path``.

    ``model_class_name`` may be a diffusers class name or, from operator config, a dotted
    path to a ``DiffusionPipeline`` subclass; ``None`` reads model_index.json, which for
    omni's own pipelines names a class in :data:`OMNI_PIPELINES`.
    """
    from omni_core.registry import import_dotted_path

    name = model_class_name
    if name is None:
        index = Path(path) / "model_index.json"
        declared = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
        if declared in OMNI_PIPELINES:
            return import_dotted_path(OMNI_PIPELINES[declared])
        return diffusers.DiffusionPipeline
    if name in OMNI_PIPELINES:
        return import_dotted_path(OMNI_PIPELINES[name])
    if ":" in name or "." in name:
        try:
            candidate = import_dotted_path(name, setting="model_class_name")
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc
    else:
        candidate = getattr(diffusers, name, None)
    if not (isinstance(candidate, type) and hasattr(candidate, "from_pretrained")):
        raise ModelLoadError(
            f"model_class_name {name!r} is not a diffusers pipeline class; use e.g. "
            "'StableDiffusionPipeline', a dotted path 'pkg.mod:MyPipeline', or None to read model_index.json"
        )
    return candidate


def _request_id(request: Any) -> str:
    request_id = getattr(request, "request_id", None)
    return request_id if isinstance(request_id, str) and request_id else "<missing request_id>"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}


def _quiet_library_logs() -> None:
    """diffusers/transformers log progress bars and hints on every load; keep stderr for omni."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("diffusers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
