"""How a benchmark line says whether it met its target.

Targets are goals, not assertions (these machines are noisy): a missed one
prints ``MISSED`` so that nobody reads it as fine, and the run still passes.
"""

from __future__ import annotations


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"
