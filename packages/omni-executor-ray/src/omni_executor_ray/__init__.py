"""omni's Ray executor: actors on a Ray cluster, one per GPU (or CPU actors).

Select it with ``executor_class="ray"``. Importing this package does not
import Ray; building the executor does.
"""

from omni_executor_ray._version import __version__
from omni_executor_ray.executor import RayDiffusionExecutor
from omni_executor_ray.options import RayOptions

__all__ = ["RayDiffusionExecutor", "RayOptions", "__version__"]
