"""Test helpers for code that runs omni on Lambda offline: a local S3 and the local Lambda service.

``moto_s3`` and ``TEST_CREDENTIALS`` come from omni-core (the Celery executor's tests use them too).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from omni_core.testing_s3 import TEST_CREDENTIALS, moto_s3
from omni_executor_lambda.local.functions import LocalFunction
from omni_executor_lambda.local.service import LocalLambdaService


@contextmanager
def local_lambda(functions: Sequence[LocalFunction], **kwargs: Any) -> Iterator[LocalLambdaService]:
    """The local Lambda service in a background thread, stopped (environments killed) on exit."""
    with LocalLambdaService(functions, **kwargs) as service:
        yield service


__all__ = ["TEST_CREDENTIALS", "local_lambda", "moto_s3"]
