"""Images too large for Lambda's response: written to S3 by the function, read back by the executor.

Each PNG is its own object (so a user can hand out its presigned URL, as
OpenAI's ``url`` response format does) under a key derived from the
invocation's idempotency key, so a repeated invocation overwrites rather
than duplicates. The reader checks size and SHA-256: an object that changed
or was cut short is an error, never a wrong image.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from omni_executor_lambda.protocol import S3ImageRef

PNG_CONTENT_TYPE = "image/png"


def put_png(client: Any, *, bucket: str, key: str, png: bytes, presign_seconds: int | None) -> S3ImageRef:
    """Upload one PNG and describe it; ``client`` is a boto3 S3 client."""
    # An explicit ContentType: some S3 implementations stall on binary PUTs without one.
    client.put_object(Bucket=bucket, Key=key, Body=png, ContentType=PNG_CONTENT_TYPE)
    url = None
    if presign_seconds:
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=presign_seconds
        )
    return S3ImageRef(bucket=bucket, key=key, size=len(png), sha256=hashlib.sha256(png).hexdigest(), url=url)


class OffloadedImageError(RuntimeError):
    """An offloaded image could not be read back whole."""


def fetch_png_b64(client: Any, ref: S3ImageRef) -> str:
    """Download ``ref`` and return it as base64 text, after checking size and digest."""
    try:
        body = client.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
    except Exception as exc:
        raise OffloadedImageError(
            f"could not read offloaded image s3://{ref.bucket}/{ref.key}: {type(exc).__name__}: {exc}"
        ) from exc
    if len(body) != ref.size or hashlib.sha256(body).hexdigest() != ref.sha256:
        raise OffloadedImageError(
            f"offloaded image s3://{ref.bucket}/{ref.key} is not what the function wrote "
            f"({len(body)} bytes, expected {ref.size} with sha256 {ref.sha256[:12]}...)"
        )
    return base64.b64encode(body).decode("ascii")
