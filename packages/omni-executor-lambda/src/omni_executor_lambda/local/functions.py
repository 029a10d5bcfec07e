"""What the local service knows of a function: its handler, code, environment and limits."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

LATEST = "$LATEST"
ACCOUNT_ID = "000000000000"


@dataclass(frozen=True)
class LocalFunction:
    """One function, configured as on AWS (handler string, env vars, reserved concurrency, timeout)."""

    name: str
    handler: str = "omni_executor_lambda.function.handler.handler"
    """``module.function``, as Lambda's ``Handler`` setting."""
    code_dir: Path | None = None
    """The function's code (``LAMBDA_TASK_ROOT``), put first on ``PYTHONPATH``."""
    environment: dict[str, str] = field(default_factory=dict)
    concurrency: int = 1
    """Execution environments (reserved concurrency); one more concurrent call gets a 429."""
    timeout: float = 300.0
    """Seconds an invocation may run before its process is killed and replaced."""
    init_timeout: float = 120.0
    """Seconds a new environment may take to import the handler and ask for work."""
    memory_size: int = 3008
    """Reported to the function (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``); not enforced."""
    python: str = sys.executable
    """Interpreter that runs ``python -m awslambdaric``."""

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name or "/" in self.name:
            raise ValueError(f"function name {self.name!r} must be non-empty without ':' or '/'")
        if "." not in self.handler:
            raise ValueError(f"handler {self.handler!r} must be 'module.function'")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.timeout <= 0 or self.init_timeout <= 0:
            raise ValueError("timeout and init_timeout must be > 0")

    def arn(self, region: str, qualifier: str | None = None) -> str:
        base = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{self.name}"
        return f"{base}:{qualifier}" if qualifier else base


def split_function_name(name: str) -> tuple[str, str | None]:
    """``name``, ``name:qualifier`` or a full/partial ARN → (name, qualifier in the name or None)."""
    if name.startswith("arn:"):
        parts = name.split(":")
        # arn:aws:lambda:region:account:function:name[:qualifier]
        if len(parts) >= 7 and parts[5] == "function":
            return parts[6], parts[7] if len(parts) > 7 else None
        return name, None
    if ":" in name:
        bare, _, qualifier = name.partition(":")
        return bare, qualifier
    return name, None
