"""omni over HTTP: ``HTTPDiffusionExecutor`` (``executor_class="http"``),
``ExternalDiffusionExecutor`` (``"external"``: a fleet of servers started elsewhere) and, with the
``[server]`` extra, ``omni serve``. Importing this package needs neither torch nor the server stack."""

from omni_executor_http._version import __version__
from omni_executor_http.executor import HTTPDiffusionExecutor, HTTPOptions
from omni_executor_http.external import ExternalDiffusionExecutor, ExternalOptions

__all__ = [
    "ExternalDiffusionExecutor",
    "ExternalOptions",
    "HTTPDiffusionExecutor",
    "HTTPOptions",
    "__version__",
]
