"""Running a Python script with loopback only: Ray binds to the host's primary address otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def run_with_loopback_only(script: str, *args: str, timeout: float) -> str:
    """Run ``script`` under ``unshare -rn`` (a private network namespace, ``lo`` up); its stdout.

    Fails the test if the script fails; skips it (fails under ``CI=true``) without ``unshare``.
    """
    if shutil.which("unshare") is None:
        message = "needs unshare (util-linux) to keep Ray on loopback"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    inner = f"ip link set lo up && exec {sys.executable} -c '{script}' {' '.join(args)}"
    done = subprocess.run(
        ["unshare", "-rn", "sh", "-c", inner], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
