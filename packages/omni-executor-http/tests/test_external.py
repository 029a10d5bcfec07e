"""The ``external`` executor across real ``omni serve`` processes on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from omni_core import DiffusionEngine, ExecutorOptionsError, OmniDiffusionConfig, OmniDiffusionRequest
from omni_executor_http.testing import (
    ServerProcess,
    run_servers,
    start_server,
    wait_until_healthy,
)

ONE_THREAD = ("--option", "torch_threads=1")
HEALTH_INTERVAL = 0.5


def answered(server: ServerProcess, status: int) -> int:
    """Generations a server answered with ``status``, from its /metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    line = f'omni_http_requests_total{{route="generations",status="{status}"}} '
    found = re.search(re.escape(line) + r"([0-9.e+]+)", text)
    return int(float(found.group(1))) if found else 0


def served(server: ServerProcess) -> int:
    return answered(server, 200)


def request(seed: int | None, steps: int = 2) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt="a 7", height=64, width=64, num_inference_steps=steps, seed=seed)


def external(model: Path, **options: object) -> DiffusionEngine:
    config = OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="external",
        executor_options={"health_interval": HEALTH_INTERVAL, "max_probe_backoff": 1.0, **options},
    )
    return DiffusionEngine(config)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.05)


def in_flight(engine: DiffusionEngine, url: str) -> int:
    states = engine.executor.server_states()  # type: ignore[attr-defined]
    return sum(int(s["in_flight"]) for s in states if s["url"] == url)


def state_of(engine: DiffusionEngine, url: str) -> str | None:
    states = engine.executor.server_states()  # type: ignore[attr-defined]
    return next((s["state"] for s in states if s["url"] == url), None)


@pytest.fixture(scope="module")
def three(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with run_servers(tiny_model, 3, *ONE_THREAD, tmp=tmp_path_factory.mktemp("fleet")) as servers:
        yield servers


def test_requests_spread_over_three_servers_with_inprocs_image(
    three: list[ServerProcess], tiny_model: Path
) -> None:
    before = [served(s) for s in three]
    with external(tiny_model, urls=[s.url for s in three]) as engine:
        outputs = [f.result(120) for f in [engine.submit(request(seed)) for seed in range(60)]]
        assert [o.error for o in outputs] == [None] * 60
        replies = engine.executor.collective_rpc("models")
        assert sorted(r["url"] for r in replies) == sorted(s.url for s in three)
        assert all("result" in r for r in replies)
        alone = engine.submit(request(7)).result(60).raise_for_error()  # unbatched, like inproc's
    counts = [served(s) - b for s, b in zip(three, before, strict=True)]
    assert sum(counts) == 61  # the 60, and the one alone
    assert min(counts) > 0, counts  # every server got some
    inproc_config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), executor_class="inproc", executor_options={"torch_threads": 1}
    )
    with DiffusionEngine(inproc_config) as inproc:
        local = inproc.step([request(7)])[0].raise_for_error()
    assert np.array_equal(alone.output[0], local.output[0])


def test_killed_server_seeded_requests_move_unseeded_fail_naming_it(
    three: list[ServerProcess], tiny_model: Path, tmp_path: Path
) -> None:
    victim = three[0]
    with external(tiny_model, urls=[s.url for s in three], max_retries=6) as engine:
        seeded, unseeded = [], []
        for seed in range(12):  # interleaved, so every server holds both kinds
            seeded.append(engine.submit(request(seed, steps=30)))
            unseeded.append(engine.submit(request(None, steps=30)))
        wait_for(
            lambda: any(s["in_flight"] for s in engine.executor.server_states() if s["url"] == victim.url),
            30,
            "the victim has requests",
        )  # type: ignore[attr-defined]
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        seeded_out = [f.result(120) for f in seeded]
        unseeded_out = [f.result(120) for f in unseeded]
        assert [o.error for o in seeded_out] == [None] * 12  # re-sent to another server
        failed = [o for o in unseeded_out if o.error is not None]
        assert 0 < len(failed) < 12  # the dead server's, and only those
        for output in failed:  # only those the dead server held, each naming it
            assert output.error_type == "RemoteError", output.error
            assert victim.url in str(output.error)
        wait_for(
            lambda: state_of(engine, victim.url) == "down", HEALTH_INTERVAL + 1, "the victim leaves rotation"
        )
        assert engine.submit(request(1)).result(60).error is None  # the others serve on
        # Back on the same port: probed back into rotation, and it receives requests again.
        port = int(victim.url.rsplit(":", 1)[1])
        three[0] = revived = start_server(tiny_model, *ONE_THREAD, tmp=tmp_path, port=port)
        wait_until_healthy(revived)
        wait_for(lambda: state_of(engine, victim.url) == "healthy", 10, "the victim returns")
        for future in [engine.submit(request(seed)) for seed in range(12)]:
            assert future.result(60).error is None
        assert served(revived) > 0


def test_a_server_answering_429_is_skipped(
    tiny_model: Path, tmp_path: Path, three: list[ServerProcess]
) -> None:
    # One server that queues at most one request: under load it says 429 with Retry-After.
    with run_servers(tiny_model, 1, *ONE_THREAD, "--max-queued-requests", "1", tmp=tmp_path) as (small,):
        spare = three[1]
        with external(tiny_model, urls=[small.url, spare.url], max_retries=2) as engine:
            outputs = [f.result(120) for f in [engine.submit(request(seed, steps=10)) for seed in range(24)]]
            assert [o.error for o in outputs] == [None] * 24  # none failed: the 429s went elsewhere
        said_429 = answered(small, 429)
        assert said_429 >= 1  # it did refuse some
        assert served(small) + said_429 < 24  # and was skipped while busy, not hammered


def test_servers_come_and_go_with_the_discovery_file(
    three: list[ServerProcess], tiny_model: Path, tmp_path: Path
) -> None:
    first, second = three[1], three[2]
    listing = tmp_path / "servers.txt"
    listing.write_text(f"# the fleet\n{first.url}\n")
    with external(tiny_model, discovery=str(listing), discovery_interval=0.2) as engine:
        assert [s["url"] for s in engine.executor.server_states()] == [first.url]  # type: ignore[attr-defined]
        listing.write_text(f"{first.url}\n{second.url}\n")
        wait_for(lambda: state_of(engine, second.url) == "healthy", 5, "the added server joins")
        before = served(second)
        for future in [engine.submit(request(seed)) for seed in range(12)]:
            assert future.result(60).error is None
        assert served(second) > before
        listing.write_text(f"{second.url}\n")
        wait_for(lambda: state_of(engine, first.url) is None, 5, "the removed server leaves")
        before_first = served(first)
        for future in [engine.submit(request(seed)) for seed in range(6)]:
            assert future.result(60).error is None
        assert served(first) == before_first


def test_servers_from_a_dns_name(three: list[ServerProcess], tiny_model: Path) -> None:
    port = three[1].url.rsplit(":", 1)[1]
    with external(tiny_model, discovery=f"http://localhost:{port}") as engine:
        states = {s["url"]: s["state"] for s in engine.executor.server_states()}  # type: ignore[attr-defined]
        assert states[f"http://127.0.0.1:{port}"] == "healthy"  # localhost's A record
        assert set(states) <= {f"http://127.0.0.1:{port}", f"http://[::1]:{port}"}  # and AAAA, if any
        assert engine.submit(request(3)).result(60).error is None


def test_bad_options_name_the_fix(tiny_model: Path) -> None:
    with pytest.raises(ExecutorOptionsError, match="exactly one of urls"):
        external(tiny_model)
    with pytest.raises(ExecutorOptionsError, match="http://host:port"):
        external(tiny_model, urls=["10.0.0.5:8000"])


def test_previews_come_back_from_the_fleet_as_progress(shapes_server: ServerProcess) -> None:
    """A request that wants previews is sent with stream=true; the server's events come back
    to the caller as preview progress events, and the final image is the unstreamed one."""
    from conftest import SHAPES_KEY

    from omni_core import ProgressEvent

    events: list[ProgressEvent] = []
    with external(Path("unused"), urls=[shapes_server.url], api_key=SHAPES_KEY) as engine:
        wanted = OmniDiffusionRequest("a red circle", seed=3, num_inference_steps=8, partial_images=2)
        final = engine.submit(wanted, on_progress=events.append).result(60).raise_for_error()
        plain = engine.submit(OmniDiffusionRequest("a red circle", seed=3, num_inference_steps=8))
        plain_output = plain.result(60).raise_for_error()
    previews = [event.preview for event in events if event.preview is not None]
    assert [preview.index for preview in previews] == [0, 1]
    assert all(preview.images[0].shape == final.output[0].shape for preview in previews)
    assert all(event.request_id == wanted.request_id for event in events)
    np.testing.assert_array_equal(final.output[0], plain_output.output[0])
