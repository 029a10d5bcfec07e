"""omni's Celery executor: durable, queue-based execution over Redis or RabbitMQ.

Select it with ``executor_class="celery"``; start workers with ``omni celery worker``.
"""

from omni_executor_celery._version import __version__
from omni_executor_celery.executor import CeleryDiffusionExecutor, CeleryOptions

__all__ = ["CeleryDiffusionExecutor", "CeleryOptions", "__version__"]
