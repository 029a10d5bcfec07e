"""The one door for executor authors.

Everything a package needs to write an executor is importable from here:
the base classes, the queued-executor base and its batch type, progress
events, the options helpers, the failure classes and the model runner.
Other modules of omni_core are private to it. Users need only ``omni_core``.
Importing this package does not import torch (the runner does, when built).
"""

from omni_core.errors import (
    ExecutorDeadError,
    ModelError,
    OverloadedError,
    RemoteError,
    RequestCancelledError,
    RequestTimeoutError,
    RequestValidationError,
    WorkerDiedError,
)
from omni_core.executors.base import DiffusionExecutor, ProgressEvent, ProgressListener
from omni_core.executors.options import NoOptions, above, at_least, parse_executor_options
from omni_core.executors.queue import QueuedRequest, RequestQueue
from omni_core.executors.queued import Batch, QueuedDiffusionExecutor
from omni_core.runner.model_runner import DiffusionModelRunner

__all__ = [
    "Batch",
    "DiffusionExecutor",
    "DiffusionModelRunner",
    "ExecutorDeadError",
    "ModelError",
    "NoOptions",
    "OverloadedError",
    "ProgressEvent",
    "ProgressListener",
    "QueuedDiffusionExecutor",
    "QueuedRequest",
    "RemoteError",
    "RequestCancelledError",
    "RequestQueue",
    "RequestTimeoutError",
    "RequestValidationError",
    "WorkerDiedError",
    "above",
    "at_least",
    "parse_executor_options",
]
