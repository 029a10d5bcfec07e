"""Test helpers for code that runs omni on Lambda offline: a local S3 and the local Lambda service.

``moto_s3`` needs ``moto[server]`` (a test dependency, not a runtime one).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from omni_executor_lambda.local.functions import LocalFunction
from omni_executor_lambda.local.service import LocalLambdaService

TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    """moto's S3 on 127.0.0.1 with ``bucket`` created; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=TEST_CREDENTIALS["AWS_REGION"],
            aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()


@contextmanager
def local_lambda(functions: Sequence[LocalFunction], **kwargs: Any) -> Iterator[LocalLambdaService]:
    """The local Lambda service in a background thread, stopped (environments killed) on exit."""
    with LocalLambdaService(functions, **kwargs) as service:
        yield service
