"""The model runner: the one place that turns requests into diffusers calls.

Every executor that runs a model locally (in-process, worker processes, the
HTTP server, the Lambda handler) uses :class:`DiffusionModelRunner`, so they
all batch, seed and validate the same way and give the same images.
Importing this package does not import torch; building a runner does.
"""

from omni_core.runner.batching import PlannedRequest, plan_batches
from omni_core.runner.model_runner import DiffusionModelRunner, to_uint8_images

__all__ = ["DiffusionModelRunner", "PlannedRequest", "plan_batches", "to_uint8_images"]
