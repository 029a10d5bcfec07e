"""Entry point of a worker process: ``python -m omni_executor_multiproc.worker_process FD``.

A module of its own, which the package never imports, so that running it as
``__main__`` does not load a second copy of :mod:`omni_executor_multiproc.worker`.
"""

from omni_executor_multiproc.worker import main

if __name__ == "__main__":
    main()
