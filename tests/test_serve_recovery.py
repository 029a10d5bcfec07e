"""`omni serve` over worker processes when workers die: 503 with a reason, recovery, --exit-on-dead."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from omni_executor_http.testing import run_server

GOOD = {"prompt": "a 7", "size": "64x64", "num_inference_steps": 1, "seed": 1}
KEY = "k"


def worker_pids(server_pid: int) -> list[int]:
    """The server's mp worker processes (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == server_pid and b"omni_executor_multiproc.worker_process" in cmdline:
            pids.append(int(entry.name))
    return pids


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.2)


def test_health_says_why_while_the_model_is_missing_and_serving_resumes_when_it_returns(
    tiny_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    options = ("--option", "restart_backoff=0.2", "--option", "max_restart_backoff=1", "--api-key", KEY)
    with run_server(model, *options, executor="mp", tmp=tmp_path) as server:
        auth = {"Authorization": f"Bearer {KEY}"}
        assert httpx.post(
            f"{server.url}/v1/images/generations", json=GOOD, headers=auth, timeout=60
        ).is_success
        hidden = tmp_path / "hidden"
        model.rename(hidden)
        (worker,) = worker_pids(server.process.pid)
        os.kill(worker, signal.SIGKILL)

        def reports_the_reason() -> bool:
            answer = httpx.get(f"{server.url}/health", headers=auth, timeout=10)
            return answer.status_code == 503 and "could not be restarted" in answer.json().get("reason", "")

        wait_for(reports_the_reason, 60, "/health reporting the failed restart")
        public = httpx.get(f"{server.url}/health", timeout=10)
        assert public.status_code == 503
        assert public.json() == {"status": "unhealthy"}  # no model path for callers without the key
        assert public.headers["retry-after"]
        refused = httpx.post(f"{server.url}/v1/images/generations", json=GOOD, headers=auth, timeout=60)
        assert refused.status_code == 503
        assert refused.headers["retry-after"]
        assert refused.json()["error"]["omni"]["retryable"] is True
        hidden.rename(model)
        wait_for(lambda: httpx.get(f"{server.url}/health", timeout=10).status_code == 200, 60, "recovery")
        assert httpx.post(
            f"{server.url}/v1/images/generations", json=GOOD, headers=auth, timeout=60
        ).is_success


def test_exit_on_dead_exits_for_the_supervisor(tiny_model: Path, tmp_path: Path) -> None:
    args = ("--option", "restart_workers=false", "--exit-on-dead")
    with run_server(tiny_model, *args, executor="mp", tmp=tmp_path) as server:
        (worker,) = worker_pids(server.process.pid)
        os.kill(worker, signal.SIGKILL)
        assert server.process.wait(30) == 3
        assert "the executor is dead" in server.logs()
