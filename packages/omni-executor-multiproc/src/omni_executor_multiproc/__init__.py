"""omni's default executor: worker processes, one per GPU (or CPU workers).

Select it with ``executor_class=None``, ``"mp"`` or ``"multiproc"``.
"""

from omni_executor_multiproc._version import __version__
from omni_executor_multiproc.executor import MultiProcDiffusionExecutor
from omni_executor_multiproc.options import MultiProcOptions

__all__ = ["MultiProcDiffusionExecutor", "MultiProcOptions", "__version__"]
