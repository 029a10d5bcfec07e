"""Priority scheduling in front of the HTTP executor: urgent requests overtake queued ones.

``omni serve`` runs on 127.0.0.1 (in-process executor behind it); the
priority executor holds requests locally and sends one at a time
(``max_inflight=1``), lowest ``priority`` value first.

Run: python examples/priority_over_http.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest


def main() -> None:
    from omni_core.models.default import default_model_path
    from omni_executor_http.testing import run_server

    with tempfile.TemporaryDirectory() as tmp, run_server(default_model_path(), tmp=Path(tmp)) as server:
        config = OmniDiffusionConfig(
            executor_class="priority",
            executor_options={"inner": "http", "inner_options": {"base_url": server.url}, "max_inflight": 1},
        )
        finished: list[str] = []
        with DiffusionEngine(config) as engine:
            futures = []
            for i in range(4):
                request = OmniDiffusionRequest(prompt=f"batch {i}", height=64, width=64, seed=i, priority=10)
                futures.append(engine.submit(request))
            urgent = OmniDiffusionRequest(prompt="a handwritten 1", height=64, width=64, seed=9, priority=0)
            futures.append(engine.submit(urgent))
            for future in futures:
                future.add_done_callback(lambda f: finished.append(f.result().request_id))
            for future in futures:
                future.result().raise_for_error()
        position = finished.index(urgent.request_id)
        print(f"urgent request finished {position + 1} of 5 (submitted last)")
        assert position < 4


if __name__ == "__main__":
    main()
