"""The Lambda handler answers hostile requests as the in-process executor does (the same field, the
same message), invoked through the local Lambda service by plain boto3."""

from __future__ import annotations

import json

import boto3
import botocore.config

from omni_core import DiffusionEngine, DiffusionOutput
from omni_core.testing_hostile import WIRE_GOOD, hostile_wire_requests, in_process_answer
from omni_executor_lambda.local import LocalLambdaService
from omni_executor_lambda.protocol import PROTOCOL_VERSION


def test_hostile_requests_get_the_in_process_answer(
    service: LocalLambdaService, inproc_engine: DiffusionEngine
) -> None:
    client = boto3.client(
        "lambda",
        endpoint_url=service.endpoint_url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=120),
    )
    cases = hostile_wire_requests()
    batches = [cases[i : i + 8] for i in range(0, len(cases), 8)]
    for batch in batches:
        event = {
            "omni": PROTOCOL_VERSION,
            "requests": [request for request, _ in batch] + [{**WIRE_GOOD, "request_id": "ok"}],
        }
        response = client.invoke(FunctionName="omni", Payload=json.dumps(event).encode())
        assert "FunctionError" not in response, response["Payload"].read()[:500]
        outputs = [DiffusionOutput.from_dict(o) for o in json.loads(response["Payload"].read())["outputs"]]
        *refused, good = outputs
        assert good.error is None, good.error
        for (request, field), output in zip(batch, refused, strict=True):
            assert output.error_type == "RequestValidationError", (request["request_id"], output.error)
            assert output.error_field == field, (request["request_id"], output.error)
            local = in_process_answer(inproc_engine, request)
            assert (local.error_field, local.error) == (output.error_field, output.error), request[
                "request_id"
            ]
