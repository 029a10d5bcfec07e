"""Images too large for the channel that returns them: written to an S3-compatible store, read back.

Shared by executors whose transport caps a response (Lambda's 6 MB) or should not carry
megabytes per message (a Celery broker): the side that renders puts each PNG, the client
fetches it. Each PNG is its own object (so a user can hand out its presigned URL, as
OpenAI's ``url`` response format does) under a key the caller derives from the request,
so a repeated run overwrites rather than duplicates. The reader checks size and SHA-256:
an object that changed or was cut short is an error, never a wrong image. ``client`` is
a boto3 S3 client; omni-core itself does not depend on boto3.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from omni_core.declared import at_least, declare
from omni_core.request import DiffusionOutput


@dataclass(frozen=True)
class S3ImageRef:
    """Where the function put one PNG, and what the reader must find there."""

    bucket: str
    key: str
    size: int
    sha256: str
    url: str | None = None
    """A presigned GET URL, for readers without S3 credentials."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> S3ImageRef:
        if not isinstance(data, dict):
            raise ValueError(f"an S3 image reference must be an object, got {type(data).__name__}")
        try:
            return cls(
                bucket=str(data["bucket"]),
                key=str(data["key"]),
                size=int(data["size"]),
                sha256=str(data["sha256"]),
                url=None if data.get("url") is None else str(data["url"]),
            )
        except KeyError as exc:
            raise ValueError(f"S3 image reference lacks {exc.args[0]!r}") from exc


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


def offload_images(output: dict[str, Any], put: Callable[[int, bytes], S3ImageRef]) -> dict[str, Any]:
    """``output`` (a ``DiffusionOutput.to_dict()``) with each inline image replaced by ``{"s3": ref}``.

    ``put(number, png)`` uploads the ``number``-th image and describes it (see :func:`put_png`).
    """
    images = output.get("output") or []
    refs = [{"s3": put(number, base64.b64decode(image)).to_dict()} for number, image in enumerate(images)]
    return {**output, "output": refs}


def restore_images(output: dict[str, Any], client: Callable[[], Any]) -> DiffusionOutput:
    """The :class:`DiffusionOutput` of ``output`` with every ``{"s3": ref}`` image fetched and checked.

    ``client()`` gives the S3 client, called only if some image was offloaded. Raises
    :class:`OffloadedImageError` for an image that cannot be read back whole, ``ValueError``
    for an item that is neither base64 text nor a reference.
    """
    inline: list[str] = []
    for item in output.get("output") or []:
        if isinstance(item, str):
            inline.append(item)
        elif isinstance(item, dict) and "s3" in item:
            inline.append(fetch_png_b64(client(), S3ImageRef.from_dict(item["s3"])))
        else:
            raise ValueError(f"an image must be base64 text or {{'s3': ...}}, got {type(item).__name__}")
    return DiffusionOutput.from_dict({**output, "output": inline})


@dataclass(frozen=True)
class OffloadSettings:
    """A queue worker's images whose PNGs together pass ``above_bytes`` go to an S3-compatible bucket.

    A broker (Redis, RabbitMQ, Kafka) carries every byte of a result through memory or its log;
    an object store is where megabytes belong. The worker commands take these as flags.
    """

    bucket: str = field(
        metadata=declare(help="put images above --offload-above bytes in this bucket", flag="--s3-bucket")
    )
    above_bytes: int = field(default=1024 * 1024, metadata=at_least(0, flag="--offload-above"))
    prefix: str = "omni/"
    endpoint_url: str | None = field(
        default=None, metadata=declare(help="S3-compatible endpoint [default: AWS]", flag="--s3-endpoint-url")
    )
    presign_seconds: int | None = None


class ResultOffloader:
    """Puts a worker's large results in S3 (one lazily made boto3 client per worker process)."""

    def __init__(self, settings: OffloadSettings | None) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` (an output's dict), its images replaced by S3 references if they are too large."""
        settings = self.settings
        images = result.get("output") or []
        if settings is None or sum(len(image) * 3 // 4 for image in images) <= settings.above_bytes:
            return result
        client = self._s3()

        def put(number: int, png: bytes) -> S3ImageRef:
            key = f"{settings.prefix}{result['request_id']}/{number}.png"  # a second run overwrites
            return put_png(
                client, bucket=settings.bucket, key=key, png=png, presign_seconds=settings.presign_seconds
            )

        return offload_images(result, put)

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                assert self.settings is not None
                self._client = boto3.client("s3", endpoint_url=self.settings.endpoint_url)
            return self._client
