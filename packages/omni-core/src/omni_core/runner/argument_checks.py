"""A request's pipeline arguments against the loaded pipeline: its schedule, and what it refuses.

:mod:`omni_core.pipeline_arguments` checks values against the call's signature;
this adds what only the loaded model knows (how many training timesteps its
scheduler has, whether it takes custom ``timesteps`` or ``sigmas``) and turns a
pipeline's own refusal of its inputs into the request's validation error: a
pipeline that raises before its denoiser first runs has refused what it was
given (diffusers' ``check_inputs``, ``retrieve_timesteps``), which is the
request's fault when it set ``extra``, not the model's.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from omni_core.errors import OmniError, RequestValidationError
from omni_core.pipeline_arguments import STEP_LIST_ARGUMENTS
from omni_core.runner.step_batching import DenoiserStandIn

INPUT_REFUSALS = (ValueError, TypeError, IndexError, KeyError)
"""What a pipeline raises when it refuses an argument (``check_inputs``, indexing by ``clip_skip``)."""
MAX_REFUSAL_CHARS = 300


def check_schedule_arguments(extra: Mapping[str, Any], scheduler: Any) -> None:
    """``timesteps``/``sigmas`` only where the scheduler takes them; timesteps below its training count."""
    if scheduler is None:
        return
    accepted = inspect.signature(scheduler.set_timesteps).parameters
    for name in STEP_LIST_ARGUMENTS:
        if extra.get(name) is None:
            continue
        if name not in accepted:
            raise RequestValidationError(
                f"extra.{name}",
                f"this model's scheduler ({type(scheduler).__name__}) takes no custom {name}; "
                "use num_inference_steps",
            )
    trained = getattr(getattr(scheduler, "config", None), "num_train_timesteps", None)
    timesteps = extra.get("timesteps")
    if isinstance(trained, int) and isinstance(timesteps, list):
        too_late = [t for t in timesteps if t >= trained]
        if too_late:
            raise RequestValidationError(
                "extra.timesteps",
                f"holds {too_late[0]}; this model's timesteps run from 0 to {trained - 1}",
            )


class DenoiserWatch:
    """Whether a pipeline call has reached its denoiser (its first step) yet."""

    def __init__(self) -> None:
        self.reached = False

    def hook(self, *_: Any) -> None:
        self.reached = True


@contextmanager
def refusals_as_validation(extra: Mapping[str, Any], denoiser: Any) -> Iterator[DenoiserWatch]:
    """Run a pipeline call; an input refusal raised before ``denoiser`` first runs, by a call that
    set ``extra``, becomes a :class:`RequestValidationError` naming the argument (``extra.NAME``
    where the message names one or only one was set, else ``extra``).

    ``denoiser`` is the module (a forward pre-hook notes the first step) or, in step mode,
    the stand-in whose ``reached`` says the same.
    """
    watch = DenoiserWatch()
    handle = None
    stand_in = isinstance(denoiser, DenoiserStandIn)
    if not stand_in and hasattr(denoiser, "register_forward_pre_hook"):
        handle = denoiser.register_forward_pre_hook(watch.hook)
    try:
        yield watch
    except INPUT_REFUSALS as exc:
        reached = denoiser.reached if stand_in else watch.reached
        if reached or not extra or isinstance(exc, OmniError):
            raise
        text = str(exc)
        named = [name for name in extra if name in text] or list(extra)  # the one it set, if one
        field = f"extra.{named[0]}" if len(named) == 1 else "extra"
        shown = text if len(text) <= MAX_REFUSAL_CHARS else text[: MAX_REFUSAL_CHARS - 3] + "..."
        raise RequestValidationError(
            field, f"the pipeline refused its arguments before denoising: {type(exc).__name__}: {shown}"
        ) from exc
    finally:
        if handle is not None:
            handle.remove()
