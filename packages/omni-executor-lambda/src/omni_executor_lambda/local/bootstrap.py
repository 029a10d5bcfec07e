"""An execution environment's entry point: awslambdaric, bound to the life of the local service.

``python -m omni_executor_lambda.local.bootstrap HANDLER`` watches the service's
pid (``OMNI_LAMBDA_SERVICE_PID``) from a thread and exits at once when the
service is gone, then runs awslambdaric exactly as ``python -m awslambdaric
HANDLER`` would. Without it, an environment started in a session of its own
would keep computing after the service was SIGKILLed. (AWS's own sandbox
dies with its host; this is the local equivalent.)
"""

from __future__ import annotations

import os
import runpy
import threading
import time

SERVICE_PID_VARIABLE = "OMNI_LAMBDA_SERVICE_PID"
POLL_SECONDS = 0.2


def _exit_when_service_dies(service_pid: int) -> None:
    while True:
        try:
            os.kill(service_pid, 0)
        except ProcessLookupError:
            os._exit(3)
        except PermissionError:
            pass  # alive, owned by someone else
        if os.getppid() == 1:
            os._exit(3)
        time.sleep(POLL_SECONDS)


def main() -> None:
    pid = os.environ.get(SERVICE_PID_VARIABLE, "")
    if pid.isdigit():
        threading.Thread(target=_exit_when_service_dies, args=(int(pid),), daemon=True).start()
    runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
