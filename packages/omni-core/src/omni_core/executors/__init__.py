"""The one door for executor authors.

Everything a package needs to write an executor is importable from here: the
base classes, the queued-executor base and its batch type, the remote-executor
base (for executors whose model runs elsewhere), progress events,
the options helpers, the failure classes, request validation and limits, the
retry policy, image encoding, S3 image offload and the model runner. Users need only
``omni_core``; omni's other modules are private to it and may change.
Importing this package does not import torch (the runner does, when built).
"""

from omni_core.config import worker_config_fields
from omni_core.declared import declare, is_finite_number
from omni_core.errors import (
    FAILURE_CLASSES,
    ExecutorDeadError,
    ModelError,
    ModelLoadError,
    OmniError,
    OverloadedError,
    RemoteError,
    RequestCancelledError,
    RequestTimeoutError,
    RequestValidationError,
    WorkerDiedError,
    failure_from_fields,
)
from omni_core.executors.base import DiffusionExecutor, ProgressEvent, ProgressListener
from omni_core.executors.options import NoOptions, above, at_least, parse_executor_options
from omni_core.executors.queue import QueuedRequest, RequestQueue
from omni_core.executors.queued import Batch, QueuedDiffusionExecutor
from omni_core.executors.remote import PendingRequest, RemoteCall, RemoteDiffusionExecutor, RetryPolicy
from omni_core.executors.runner_host import RunnerHost, thread_environment
from omni_core.images import (
    ImageArray,
    decode_input_image,
    decode_png_b64,
    encode_png,
    encode_png_b64,
    image_to_mask_array,
    image_to_rgb_array,
    load_input_image,
    open_input_image,
)
from omni_core.lora import parse_lora_option
from omni_core.offload import (
    OffloadedImageError,
    OffloadSettings,
    ResultOffloader,
    S3ImageRef,
    fetch_png_b64,
    offload_images,
    put_png,
    restore_images,
)
from omni_core.registry import resolve_executor_class
from omni_core.retry import (
    RetryLater,
    backoff_seconds,
    call_with_retries,
    exhausted_retries_error,
    parse_retry_after,
)
from omni_core.runner.model_runner import DiffusionModelRunner
from omni_core.validation import (
    RequestLimits,
    check_pixels,
    parse_size,
    validate_request,
    validate_scheduling_fields,
)

__all__ = [
    "FAILURE_CLASSES",
    "Batch",
    "DiffusionExecutor",
    "DiffusionModelRunner",
    "ExecutorDeadError",
    "ImageArray",
    "ModelError",
    "ModelLoadError",
    "NoOptions",
    "OffloadedImageError",
    "OmniError",
    "OverloadedError",
    "OffloadSettings",
    "ProgressEvent",
    "ProgressListener",
    "QueuedDiffusionExecutor",
    "PendingRequest",
    "QueuedRequest",
    "RemoteCall",
    "RemoteDiffusionExecutor",
    "RemoteError",
    "RequestCancelledError",
    "RequestLimits",
    "RequestQueue",
    "RequestTimeoutError",
    "RequestValidationError",
    "RetryLater",
    "ResultOffloader",
    "RetryPolicy",
    "RunnerHost",
    "S3ImageRef",
    "WorkerDiedError",
    "above",
    "at_least",
    "backoff_seconds",
    "call_with_retries",
    "check_pixels",
    "decode_input_image",
    "decode_png_b64",
    "encode_png",
    "image_to_mask_array",
    "image_to_rgb_array",
    "load_input_image",
    "open_input_image",
    "encode_png_b64",
    "declare",
    "exhausted_retries_error",
    "is_finite_number",
    "thread_environment",
    "failure_from_fields",
    "fetch_png_b64",
    "offload_images",
    "parse_executor_options",
    "parse_lora_option",
    "parse_retry_after",
    "parse_size",
    "put_png",
    "resolve_executor_class",
    "restore_images",
    "validate_request",
    "validate_scheduling_fields",
    "worker_config_fields",
]
