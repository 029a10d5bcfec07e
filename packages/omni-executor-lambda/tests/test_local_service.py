"""The local Lambda service itself, driven by plain boto3 as any Lambda caller would."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import httpx
import pytest

from omni_executor_lambda.local import LocalFunction, LocalLambdaService
from omni_executor_lambda.testing import local_lambda

CODE_DIR = Path(__file__).parent / "function_code"


@pytest.fixture(scope="module")
def echo_service() -> Iterator[LocalLambdaService]:
    functions = [
        LocalFunction("echo", handler="omni_test_handlers.echo", code_dir=CODE_DIR, concurrency=1, timeout=2),
        LocalFunction("events", handler="omni_test_handlers.echo", code_dir=CODE_DIR),
        LocalFunction("too-big", handler="omni_test_handlers.too_big", code_dir=CODE_DIR),
        LocalFunction("broken-import", handler="no_such_module.handler", code_dir=CODE_DIR),
    ]
    with local_lambda(functions) as service:
        yield service


@pytest.fixture(scope="module")
def client(echo_service: LocalLambdaService) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=echo_service.endpoint_url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


def invoke_json(client: Any, name: str, event: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    response = client.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **kwargs)
    return response, json.loads(response["Payload"].read())


def test_invoke_runs_the_handler_in_a_runtime_process(client: Any) -> None:
    response, body = invoke_json(client, "echo", {"hello": "lambda"}, LogType="Tail")
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    assert body["event"] == {"hello": "lambda"}
    log = base64.b64decode(response["LogResult"]).decode()
    assert "START RequestId:" in log
    assert f"echo in echo pid {body['pid']}" in log
    assert "REPORT RequestId:" in log


def test_environment_is_reused_warm(client: Any) -> None:
    _, first = invoke_json(client, "echo", {})
    _, second = invoke_json(client, "echo", {})
    assert first["pid"] == second["pid"]


def test_busy_function_throttles_with_reason_and_retry_after(client: Any) -> None:
    started = threading.Event()

    def slow() -> None:
        started.set()
        invoke_json(client, "echo", {"sleep": 1.0})

    thread = threading.Thread(target=slow)
    thread.start()
    started.wait()
    import time

    time.sleep(0.3)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        invoke_json(client, "echo", {})
    thread.join()
    error = caught.value.response
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert error["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"


def test_timeout_kills_and_replaces_the_environment(client: Any) -> None:
    _, before = invoke_json(client, "echo", {})
    response, body = invoke_json(client, "echo", {"sleep": 5})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in body["errorMessage"]
    _, after = invoke_json(client, "echo", {})
    assert after["pid"] != before["pid"]


def test_request_over_6mb_is_413(client: Any) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.invoke(FunctionName="echo", Payload=json.dumps({"x": "y" * (6 * 1024 * 1024)}).encode())
    assert caught.value.response["Error"]["Code"] == "RequestTooLargeException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_response_over_6mb_is_function_response_size_too_large(client: Any) -> None:
    response, body = invoke_json(client, "too-big", {})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Function.ResponseSizeTooLarge"


def test_import_error_is_reported_like_lambda(client: Any) -> None:
    response, body = invoke_json(client, "broken-import", {})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module" in body["errorMessage"]


def test_unknown_function_and_qualifier_are_404(client: Any) -> None:
    for kwargs in ({"FunctionName": "nope"}, {"FunctionName": "echo", "Qualifier": "prod"}):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            client.invoke(Payload=b"{}", **kwargs)
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert "Function not found: arn:aws:lambda:" in caught.value.response["Error"]["Message"]


def test_dry_run_and_event_invocations(client: Any) -> None:
    assert client.invoke(FunctionName="echo", InvocationType="DryRun")["StatusCode"] == 204
    assert client.invoke(FunctionName="events", InvocationType="Event", Payload=b"{}")["StatusCode"] == 202


def test_arn_function_names_are_accepted(client: Any, echo_service: LocalLambdaService) -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:function:echo"
    _, body = invoke_json(client, arn, {"via": "arn"})
    assert body["event"] == {"via": "arn"}


def test_stopping_the_service_leaves_no_process(tmp_path: Path) -> None:
    function = LocalFunction("echo", handler="omni_test_handlers.echo", code_dir=CODE_DIR)
    with local_lambda([function]) as service:
        lam = boto3.client("lambda", endpoint_url=service.endpoint_url)
        pid = json.loads(lam.invoke(FunctionName="echo", Payload=b"{}")["Payload"].read())["pid"]
        assert Path(f"/proc/{pid}").exists()
    assert not Path(f"/proc/{pid}").exists()


SERVICE_SCRIPT = """
import sys, time
from pathlib import Path
from omni_executor_lambda.local import LocalFunction, LocalLambdaService
function = LocalFunction("echo", handler="omni_test_handlers.echo", code_dir=Path(sys.argv[1]))
service = LocalLambdaService([function], port=0)
service.start()
print(service.endpoint_url, flush=True)
time.sleep(600)
"""


def environments_of(service_pid: int) -> set[int]:
    """PIDs of execution environments started by the service ``service_pid`` (from /proc)."""
    found = set()
    marker = f"OMNI_LAMBDA_SERVICE_PID={service_pid}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def test_environments_exit_when_the_service_is_killed() -> None:
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE_SCRIPT, str(CODE_DIR)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert service.stdout is not None
        endpoint = service.stdout.readline().strip()
        lam = boto3.client("lambda", endpoint_url=endpoint)
        lam.invoke(FunctionName="echo", InvocationType="Event", Payload=json.dumps({"sleep": 120}).encode())
        deadline = time.monotonic() + 30
        while not environments_of(service.pid):
            assert time.monotonic() < deadline, "no environment started"
            time.sleep(0.1)
        environments = environments_of(service.pid)
        deadline = time.monotonic() + 30
        while not any(_sleeping_in_handler(pid) for pid in environments):
            assert time.monotonic() < deadline, "the handler never started"
            time.sleep(0.1)
        service.kill()  # SIGKILL: no cleanup runs in the service
        service.wait(10)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in environments):
            assert time.monotonic() < deadline, f"environments {environments} outlived the service"
            time.sleep(0.1)
    finally:
        if service.poll() is None:
            service.kill()


def _sleeping_in_handler(pid: int) -> bool:
    """The environment's main thread sits in the handler's time.sleep (wchan: a timer wait)."""
    try:
        return (
            "hrtimer" in Path(f"/proc/{pid}/wchan").read_text()
            or "nanosleep" in Path(f"/proc/{pid}/wchan").read_text()
        )
    except OSError:
        return False


def _zombie(pid: int) -> bool:
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


@pytest.mark.parametrize(
    "payload",
    [b"[" * 30000 + b"]" * 30000, b'{"seed": ' + b"9" * 5000 + b"}", b"{not json", b'{"a": "\xff"}'],
    ids=["nested-30000", "int-5000-digits", "not-json", "invalid-utf8"],
)
def test_hostile_payloads_are_400_like_lambda_and_the_service_keeps_serving(
    echo_service: LocalLambdaService, payload: bytes
) -> None:
    response = httpx.post(
        f"{echo_service.endpoint_url}/2015-03-31/functions/events/invocations", content=payload, timeout=30
    )
    assert response.status_code == 400, response.text
    assert response.headers.get("x-amzn-ErrorType", "").startswith("InvalidRequestContentException")
    lam = boto3.client("lambda", endpoint_url=echo_service.endpoint_url)
    assert lam.invoke(FunctionName="events", Payload=b"{}")["StatusCode"] == 200
