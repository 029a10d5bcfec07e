"""omni: serve diffusion models (text → image) through pluggable executors.

The public API for users lives here; executor authors have one more door,
:mod:`omni_core.executors`. Every other module is private to omni and may
change. Importing ``omni_core`` never imports torch.
"""

from omni_core._version import __version__
from omni_core.config import OmniDiffusionConfig
from omni_core.engine import DiffusionEngine
from omni_core.errors import (
    ConfigError,
    ExecutorDeadError,
    ExecutorNotInstalledError,
    ExecutorOptionsError,
    ExecutorResolutionError,
    ModelError,
    ModelLoadError,
    OmniError,
    OverloadedError,
    RemoteError,
    RequestCancelledError,
    RequestTimeoutError,
    RequestValidationError,
    WorkerDiedError,
)
from omni_core.executors.base import DiffusionExecutor, ProgressEvent, ProgressListener
from omni_core.registry import (
    installed_shorthands,
    register_executor,
    resolve_executor_class,
    unregister_executor,
)
from omni_core.request import DiffusionOutput, OmniDiffusionRequest
from omni_core.validation import RequestLimits, validate_request

__all__ = [
    "ConfigError",
    "DiffusionEngine",
    "DiffusionExecutor",
    "DiffusionOutput",
    "ExecutorDeadError",
    "ExecutorNotInstalledError",
    "ExecutorOptionsError",
    "ExecutorResolutionError",
    "ModelError",
    "ModelLoadError",
    "OmniDiffusionConfig",
    "OmniDiffusionRequest",
    "OmniError",
    "OverloadedError",
    "ProgressEvent",
    "ProgressListener",
    "RemoteError",
    "RequestCancelledError",
    "RequestLimits",
    "RequestTimeoutError",
    "RequestValidationError",
    "WorkerDiedError",
    "__version__",
    "installed_shorthands",
    "register_executor",
    "resolve_executor_class",
    "unregister_executor",
    "validate_request",
]
