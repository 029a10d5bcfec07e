"""LoRA adapters loaded into one worker's pipeline, least recently used first out.

Loading an adapter patches the shared UNet/transformer (and text encoders), so
the derived image-to-image and inpainting pipelines see it too. Only
``capacity`` adapters stay loaded: past it the least recently used one is
deleted, so a deployment offering many adapters holds a bounded number.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from omni_core.errors import ModelError
from omni_core.lora import LoraAdapter


class LoadedLoras:
    """Which adapters are in the pipeline, and which one the next call uses."""

    def __init__(self, adapters: dict[str, LoraAdapter], capacity: int) -> None:
        self.adapters = adapters
        self.capacity = capacity
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._enabled = False
        self._current: tuple[str, float] | None = None
        """The adapter and weight last set: step batching re-activates per step, so skip no-op sets."""

    @property
    def loaded(self) -> list[str]:
        """Loaded adapter names, least recently used first."""
        return list(self._loaded)

    def activate(self, pipeline: Any, name: str | None, scale: float | None) -> None:
        """Make the next call of ``pipeline`` run with adapter ``name`` at ``scale`` (or none)."""
        if name is None:
            if self._enabled:
                pipeline.disable_lora()
                self._enabled = False
                self._current = None
            return
        adapter = self.adapters[name]
        if name not in self._loaded:
            self._current = None
            while len(self._loaded) >= self.capacity:
                oldest, _ = self._loaded.popitem(last=False)
                pipeline.delete_adapters([oldest])
            try:
                pipeline.load_lora_weights(adapter.path, weight_name=adapter.weight_name, adapter_name=name)
            except Exception as exc:
                raise ModelError(
                    f"could not load LoRA adapter {name!r} from {adapter.path!r}: {type(exc).__name__}: {exc}"
                ) from exc
        self._loaded[name] = None
        self._loaded.move_to_end(name)
        if not self._enabled:
            pipeline.enable_lora()
            self._enabled = True
        weight = adapter.scale if scale is None else float(scale)
        if self._current != (name, weight):
            pipeline.set_adapters([name], adapter_weights=[weight])
            self._current = (name, weight)
