"""Fixtures come from omni_core.testing, shared with every package's tests."""

from omni_core.testing import isolated_omni_cache, tiny_model

__all__ = ["isolated_omni_cache", "tiny_model"]
