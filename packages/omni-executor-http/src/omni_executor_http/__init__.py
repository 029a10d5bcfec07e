"""omni over HTTP: ``HTTPDiffusionExecutor`` (``executor_class="http"``) and, with the
``[server]`` extra, ``omni serve``. Importing this package needs neither torch nor the server stack."""

from omni_executor_http._version import __version__
from omni_executor_http.executor import HTTPDiffusionExecutor, HTTPOptions

__all__ = ["HTTPDiffusionExecutor", "HTTPOptions", "__version__"]
