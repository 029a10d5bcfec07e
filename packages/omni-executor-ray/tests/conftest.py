"""Ray tests run inside a private network namespace, where only loopback exists.

Ray binds to the host's primary address by default (and probes 8.8.8.8 to find
it); inside ``unshare -rn`` with ``lo`` up it can reach nothing but 127.0.0.1.
The nox session runs these tests that way; run by hand:

    unshare -rn sh -c 'ip link set lo up && pytest --capture=sys packages/omni-executor-ray/tests'

Outside such a namespace the tests skip (fail under ``CI=true``). ``--capture=sys``: pytest's
default file-descriptor capture and Ray's log forwarding to the driver clash at exit (pytest
then ends without a summary), so capture at the ``sys`` level.
"""

from __future__ import annotations

import os
import socket

import pytest

from omni_core.testing import isolated_omni_cache, tiny_model

__all__ = ["isolated_omni_cache", "tiny_model"]

HOW = "unshare -rn sh -c 'ip link set lo up && pytest --capture=sys packages/omni-executor-ray/tests'"


def only_loopback() -> bool:
    """True inside a network namespace whose only interface is lo."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="session", autouse=True)
def private_network() -> None:
    if not only_loopback():
        message = f"Ray tests must run where only loopback exists; run: {HOW}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
