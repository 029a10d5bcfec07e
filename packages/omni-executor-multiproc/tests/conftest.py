"""Fixtures come from omni_core.testing, shared with the executor packages' tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from omni_core.testing import isolated_omni_cache, tiny_model

__all__ = ["isolated_omni_cache", "tiny_model", "worker_children"]


def _worker_children() -> set[int]:
    """PIDs of this process's children that run an omni worker (read from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == os.getpid() and b"omni_executor_multiproc.worker" in cmdline:
            found.add(int(entry.name))
    return found


@pytest.fixture
def worker_children() -> Callable[[], set[int]]:
    """A function listing this process's live omni worker children."""
    return _worker_children
