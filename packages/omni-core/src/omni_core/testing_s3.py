"""A local S3 for tests of image offload (``omni_core.offload``): moto's server on 127.0.0.1.

Needs ``moto[server]`` and boto3 (test dependencies, not runtime ones). AWS cannot be
reached from a test; these fake credentials keep it that way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
