"""Faults: a killed worker, a model that fails to load, a killed parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from omni_core import (
    DiffusionEngine,
    ExecutorDeadError,
    ModelLoadError,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
    ProgressEvent,
)
from omni_executor_multiproc import MultiProcDiffusionExecutor


def long_request(seed: int) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt="slow", height=256, width=256, num_inference_steps=200, seed=seed)


def config(model: Path, **options: object) -> OmniDiffusionConfig:
    return OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="mp",
        executor_options={"num_workers": 2, "threads_per_worker": 1, **options},
    )


def submit_and_wait_running(engine: DiffusionEngine, requests: list[OmniDiffusionRequest]) -> list:  # type: ignore[type-arg]
    running: set[str] = set()
    all_running = threading.Event()

    def listener(event: ProgressEvent) -> None:
        running.add(event.request_id)
        if running >= {r.request_id for r in requests}:
            all_running.set()

    remove = engine.add_progress_listener(listener)
    futures = [engine.submit(r) for r in requests]
    assert all_running.wait(60), "requests never started"
    remove()
    return futures


def is_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return any(line.startswith("State:") and "Z" in line for line in status)
    except FileNotFoundError:
        return True


def test_sigkilled_worker_fails_only_its_requests_and_is_restarted(tiny_model: Path) -> None:
    with DiffusionEngine(config(tiny_model)) as engine:
        executor = engine.executor
        assert isinstance(executor, MultiProcDiffusionExecutor)
        victim, survivor = executor.workers
        first, second = (
            long_request(1),
            OmniDiffusionRequest(prompt="ok", height=256, width=256, num_inference_steps=30, seed=2),
        )
        futures = submit_and_wait_running(engine, [first, second])
        killed_at = time.monotonic()
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        outputs = {f.result(timeout=120).request_id: f.result() for f in futures}
        failed = outputs[first.request_id] if outputs[first.request_id].error else outputs[second.request_id]
        # Which request each worker got depends on placement; exactly one failed, on the victim.
        assert failed.error is not None
        assert time.monotonic() - killed_at < 5
        assert f"worker {victim.rank} (pid {victim.pid}" in failed.error
        assert "SIGKILL" in failed.error
        assert failed.error_type == "WorkerDiedError"
        assert sum(1 for o in outputs.values() if o.ok) == 1
        # The worker comes back under a new pid and serves requests again.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            workers = executor.workers
            if len(workers) == 2 and all(w.alive for w in workers) and workers[0].pid != victim.pid:
                break
            time.sleep(0.2)
        assert executor.workers[victim.rank].pid != victim.pid
        assert executor.workers[survivor.rank].pid == survivor.pid
        engine.check_health()
        pids = {info["pid"] for info in engine.collective_rpc("describe", timeout=60)}
        assert victim.pid not in pids
        again = engine.step(
            [OmniDiffusionRequest(prompt="x", height=64, width=64, num_inference_steps=2, seed=1)]
        )
        assert again[0].ok


def test_without_restarts_a_dead_worker_makes_the_executor_report_dead(tiny_model: Path) -> None:
    with DiffusionEngine(config(tiny_model, num_workers=1, restart_workers=False)) as engine:
        executor = engine.executor
        assert isinstance(executor, MultiProcDiffusionExecutor)
        (worker,) = executor.workers
        futures = submit_and_wait_running(engine, [long_request(1)])
        queued = engine.submit(long_request(2))
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        lost = futures[0].result(timeout=10)
        assert lost.error is not None
        assert "SIGKILL" in lost.error
        with pytest.raises(ExecutorDeadError, match="SIGKILL"):
            queued.result(timeout=10).raise_for_error()  # an output of its class, not an exception
        with pytest.raises(ExecutorDeadError, match="restarts are disabled"):
            engine.check_health()
        with pytest.raises(ExecutorDeadError):
            engine.submit(long_request(3))


def test_missing_model_names_the_path_and_leaves_no_process(
    tmp_path: Path, worker_children: Callable[[], set[int]]
) -> None:
    missing = tmp_path / "missing-model"
    with pytest.raises(ModelLoadError) as info:
        DiffusionEngine(
            OmniDiffusionConfig(
                model_name_or_path=str(missing), executor_class="mp", executor_options={"num_workers": 2}
            )
        )
    message = str(info.value)
    assert str(missing) in message
    assert "does not exist" in message  # the worker's own error
    assert worker_children() == set()


def test_broken_pipeline_names_the_workers_error(
    tmp_path: Path, tiny_model: Path, worker_children: Callable[[], set[int]]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}'
    )
    with pytest.raises(ModelLoadError) as info:
        DiffusionEngine(OmniDiffusionConfig(model_name_or_path=str(broken), executor_class="mp"))
    assert str(broken) in str(info.value)
    assert "worker 0" in str(info.value)
    assert worker_children() == set()


def test_a_worker_that_dies_while_loading_says_what_it_printed(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, worker_children: Callable[[], set[int]]
) -> None:
    # A pipeline module that prints and exits hard on import: the worker cannot report it itself.
    (tmp_path / "crashy_pipeline.py").write_text(
        "import os, sys\nprint('crashy pipeline: out of cheese', file=sys.stderr, flush=True)\nos._exit(7)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # inherited by the worker, not imported here
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model),
        model_class_name="crashy_pipeline:Pipeline",
        executor_class="mp",
    )
    with pytest.raises(ModelLoadError) as info:
        DiffusionEngine(config)
    message = str(info.value)
    assert "exited with code 7 while loading" in message
    assert "crashy pipeline: out of cheese" in message
    assert worker_children() == set()


def test_a_load_error_carries_the_workers_traceback(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "raising_pipeline.py").write_text(
        "def helper():\n    raise KeyError('no such layer')\nhelper()\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), model_class_name="raising_pipeline:Pipeline", executor_class="mp"
    )
    with pytest.raises(ModelLoadError) as info:
        DiffusionEngine(config)
    message = str(info.value)
    assert "no such layer" in message
    assert "raising_pipeline.py" in message  # the traceback names the file and line
    assert "in helper" in message


PARENT_SCRIPT = """
import sys, time
from omni_core import DiffusionEngine, OmniDiffusionConfig
config = OmniDiffusionConfig(
    model_name_or_path=sys.argv[1], executor_class="mp", executor_options={"num_workers": 2}
)
engine = DiffusionEngine(config)
print(" ".join(str(w.pid) for w in engine.executor.workers), flush=True)
time.sleep(600)
"""


def test_workers_exit_when_the_parent_is_killed(tiny_model: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(tiny_model)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 2, line
        assert not any(is_gone(pid) for pid in pids)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(is_gone(pid) for pid in pids):
            time.sleep(0.1)
        assert all(is_gone(pid) for pid in pids)
    finally:
        parent.kill()
        parent.wait()
