"""Fixtures come from omni_core.testing, shared with the executor packages' tests."""

from omni_core.testing import isolated_omni_cache, tiny_model

__all__ = ["isolated_omni_cache", "tiny_model"]
