"""Select a third-party executor by the shorthand its own package registers ("cached").

``examples/third_party_executor`` is a separate distribution whose
``pyproject.toml`` adds ``cached = "omni_cached_executor:CachedExecutor"`` to
the ``omni.executors`` entry-point group; once it is installed
(``pip install ./examples/third_party_executor``; the examples session does),
omni finds it by name without any change to omni.

Run: python examples/third_party_shorthand.py
"""

from __future__ import annotations

import numpy as np

from omni_core import DiffusionEngine, OmniDiffusionConfig, installed_shorthands


def main() -> None:
    if "cached" not in installed_shorthands():
        raise SystemExit("install the example package first: pip install ./examples/third_party_executor")
    config = OmniDiffusionConfig(executor_class="cached", executor_options={"max_entries": 16})
    with DiffusionEngine(config) as engine:
        first = engine.generate("a handwritten 6", height=64, width=64, seed=12).raise_for_error()
        again = engine.generate("a handwritten 6", height=64, width=64, seed=12).raise_for_error()
        executor = engine.executor
    print(f"'cached' -> {type(executor).__module__}.{type(executor).__name__}; cache hits: {executor.hits}")  # type: ignore[attr-defined]
    assert np.array_equal(first.output[0], again.output[0])
    assert again.timings == {"cache_hit": 1.0}


if __name__ == "__main__":
    main()
