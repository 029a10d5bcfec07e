"""A priority scheduler in front of any omni executor (``executor_class="priority"``)."""

from omni_executor_priority._version import __version__
from omni_executor_priority.errors import DeadlineExceeded, QueueFull
from omni_executor_priority.executor import PriorityDiffusionExecutor
from omni_executor_priority.options import PriorityOptions
from omni_executor_priority.ratelimit import GCRALimiter

__all__ = [
    "DeadlineExceeded",
    "GCRALimiter",
    "PriorityDiffusionExecutor",
    "PriorityOptions",
    "QueueFull",
    "__version__",
]
