"""The function's configuration, read from its environment variables (Lambda's way to configure).

Every variable is optional; a bad value fails the first invocation with an
error that names the variable and the fix (Lambda reports it as the
invocation's ``errorMessage``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_core import OmniDiffusionConfig
from omni_executor_lambda.protocol import SYNC_RESPONSE_LIMIT


class SettingsError(ValueError):
    """An environment variable of the function has a value it cannot use."""


@dataclass(frozen=True)
class FunctionSettings:
    model: str | None
    """``OMNI_MODEL``; unset: ``$LAMBDA_TASK_ROOT/model`` if present, else omni's built-in model."""
    model_class: str | None
    dtype: str
    max_batch_size: int
    max_requests_per_invocation: int
    s3_bucket: str | None
    s3_prefix: str
    presign_seconds: int
    response_limit: int
    """Largest inline response in bytes; above it images go to S3."""
    loras: dict[str, Any] = field(default_factory=dict)
    """``OMNI_LORAS``: a JSON object, adapter name -> path (or ``{"path", "scale"}``), as config ``loras``."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> FunctionSettings:
        env = os.environ if environ is None else environ
        model = env.get("OMNI_MODEL") or None
        task_root = env.get("LAMBDA_TASK_ROOT")
        if model is None and task_root and (Path(task_root) / "model" / "model_index.json").is_file():
            model = str(Path(task_root) / "model")
        return cls(
            model=model,
            model_class=env.get("OMNI_MODEL_CLASS") or None,
            dtype=env.get("OMNI_DTYPE", "auto"),
            max_batch_size=_int(env, "OMNI_MAX_BATCH_SIZE", OmniDiffusionConfig.max_batch_size, minimum=1),
            max_requests_per_invocation=_int(env, "OMNI_MAX_REQUESTS_PER_INVOCATION", 16, minimum=1),
            s3_bucket=env.get("OMNI_S3_BUCKET") or None,
            s3_prefix=env.get("OMNI_S3_PREFIX", "omni-outputs/"),
            presign_seconds=_int(env, "OMNI_PRESIGN_SECONDS", 3600, minimum=0),
            # A little under 6 MB: Lambda counts its own envelope too.
            response_limit=_int(env, "OMNI_RESPONSE_LIMIT_BYTES", SYNC_RESPONSE_LIMIT - 4096, minimum=1024),
            loras=_json_object(env, "OMNI_LORAS"),
        )

    def diffusion_config(self) -> OmniDiffusionConfig:
        try:
            return OmniDiffusionConfig(
                model_name_or_path=self.model,
                model_class_name=self.model_class,
                dtype=self.dtype,  # type: ignore[arg-type] # checked against its declaration by the config
                device="cpu",  # Lambda has no GPU
                max_batch_size=self.max_batch_size,
                loras=self.loras,
            )
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"the function's OMNI_* environment is invalid: {exc}") from exc


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = env.get(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"environment variable {name} must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"environment variable {name} must be a JSON object, got {type(value).__name__}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"environment variable {name}={raw!r} must be an integer") from None
    if value < minimum:
        raise SettingsError(f"environment variable {name}={value} must be >= {minimum}")
    return value
