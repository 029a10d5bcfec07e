"""``RunnerHost``: the model runner as every serving process hosts it.

A worker process, a Ray actor, a Lambda execution environment and a Celery or
Kafka queue worker all do the same four things around core's
:class:`~omni_core.runner.model_runner.DiffusionModelRunner`, and this class
does them once (vLLM's ``WorkerWrapperBase`` plays the same part there):

- size torch's thread pools (``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` before torch
  is imported, ``torch.set_num_threads`` after), so several runners on one machine
  share its cores instead of each spinning one pool per core;
- build the runner from the config's fields (a user's config subclass need not be
  importable where the model runs) and load the model;
- dispatch a remote procedure call to a public runner method, never a private one
  (the name comes from the operator's code, but a ``_method`` is not an API);
- run, start and cancel requests.

It imports torch only when built, so the module itself stays light.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omni_core.config import OmniDiffusionConfig
    from omni_core.request import DiffusionOutput, OmniDiffusionRequest
    from omni_core.runner.model_runner import DiffusionModelRunner

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Read by torch's OpenMP/MKL pools when torch is imported, before any code of ours runs."""


def thread_environment(
    threads: int | None, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Set the thread-pool variables in ``environ`` (a child's environment, or ``os.environ``).

    ``None`` leaves them as they are (torch's default: one thread per core). Returns what was set.
    """
    if threads is None:
        return {}
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    values = dict.fromkeys(THREAD_VARIABLES, str(threads))
    (os.environ if environ is None else environ).update(values)
    return values


class RunnerHost:
    """One model runner, built and loaded in the process that serves it."""

    def __init__(
        self,
        config: OmniDiffusionConfig | Mapping[str, Any],
        *,
        device: str | None = None,
        threads: int | None = None,
        load: bool = True,
    ) -> None:
        if "torch" not in sys.modules:
            # Read by torch's pools when it is imported. Set only then: in a process that already
            # has torch (inproc in a caller's process) it would change nothing here and leak
            # into every process this one starts later.
            thread_environment(threads)
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        from omni_core.config import OmniDiffusionConfig
        from omni_core.runner.model_runner import DiffusionModelRunner

        if not isinstance(config, OmniDiffusionConfig):
            config = OmniDiffusionConfig(**config)
        self.runner: DiffusionModelRunner = DiffusionModelRunner(config, device=device)
        if load:
            self.runner.load_model()

    # ------------------------------------------------------------ requests

    @property
    def step_mode(self) -> bool:
        """True when the runner batches by denoising step (requests join a running batch)."""
        return self.runner.window is not None

    def execute(
        self, requests: Sequence[OmniDiffusionRequest], on_step: Callable[..., None] | None = None
    ) -> list[DiffusionOutput]:
        """Run ``requests``; one output per request, in order (the runner isolates failures)."""
        return self.runner.execute(requests, on_step=on_step)

    def start(
        self,
        requests: Sequence[OmniDiffusionRequest],
        deliver: Callable[[DiffusionOutput], None],
        on_step: Callable[..., None] | None = None,
    ) -> None:
        """Step mode: ``requests`` join the running batch; ``deliver`` gets each output as it ends."""
        self.runner.start(requests, deliver, on_step=on_step)

    def cancel(self, request_id: str) -> bool:
        """Stop ``request_id`` at its next denoising step; False if it is not running here."""
        return self.runner.cancel(request_id)

    def describe(self) -> dict[str, Any]:
        return self.runner.describe()

    # ------------------------------------------------------------ rpc

    def rpc(self, method: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> Any:
        """Call the runner's public ``method``; ``AttributeError`` for a private or missing one."""
        target = None if method.startswith("_") else getattr(self.runner, method, None)
        if not callable(target):
            raise AttributeError(f"the model runner has no public method {method!r}")
        return target(*args, **dict(kwargs or {}))

    def close(self) -> None:
        self.runner.close()
