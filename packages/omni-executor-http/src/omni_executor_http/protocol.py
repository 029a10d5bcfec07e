"""The OpenAI Images API as omni speaks it, both ways.

``POST /v1/images/generations`` with OpenAI's fields (``prompt``, ``n``,
``size`` "WxH", ``response_format`` ``b64_json``) plus the diffusion fields
vllm-omni's server accepts (``negative_prompt``, ``num_inference_steps``,
``guidance_scale``, ``seed``) and omni's ``priority``. Shared by the server
(parsing) and the executor (building), so the two cannot drift apart.
Torch-free and framework-free.
"""

from __future__ import annotations

import json
import math
from typing import Any

from omni_core import OmniDiffusionRequest, RequestLimits, RequestValidationError, validate_request
from omni_core.executors import parse_size

GENERATIONS_PATH = "/v1/images/generations"

# OpenAI fields a client may send that do not change what a diffusion model draws.
IGNORED_OPENAI_FIELDS = frozenset(
    {"model", "quality", "style", "moderation", "safety_identifier", "output_compression"}
)
DIFFUSION_FIELDS = ("negative_prompt", "num_inference_steps", "guidance_scale", "seed")
SUPPORTED_FIELDS = frozenset(
    {
        "prompt",
        "n",
        "size",
        "response_format",
        "user",
        "background",
        "output_format",
        "stream",
        "priority",
        "timeout",
    }
    | set(DIFFUSION_FIELDS)
    | IGNORED_OPENAI_FIELDS
)

# core's field names → the request parameter a client wrote.
CORE_TO_WIRE_FIELD = {"num_outputs_per_prompt": "n", "height": "size", "width": "size", "tenant": "user"}


class APIError(Exception):
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str | None = None,
        omni: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")
        self.omni = omni
        """omni's failure class, field and retryability, for omni's own clients (others ignore it)."""
        self.retry_after: float | None = None
        """Seconds for a ``Retry-After`` header, when a retry later may succeed."""

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }
        if self.omni is not None:
            error["omni"] = self.omni
        return {"error": error}


def invalid(param: str | None, message: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def parse_json_body(raw: bytes, *, max_depth: int) -> Any:
    """A request body as JSON, or a 400 that says what is wrong; never a 500.

    Refused before or while parsing: nesting deeper than ``max_depth`` (checked
    first, so the parser never recurses deep), invalid UTF-8, ``NaN``/``Infinity``
    (not JSON), integers too long for Python to convert, and duplicate keys
    (which value would win is a guess).
    """
    depth = json_nesting_depth(raw)
    if depth > max_depth:
        raise invalid(
            None, f"request body nests {depth} levels deep, over the limit of {max_depth}", "invalid_json"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(None, f"request body is not valid UTF-8: {exc}", "invalid_json") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_object_without_duplicates)
    except APIError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and int() past its digit limit
        raise invalid(None, f"request body is not valid JSON: {exc}", "invalid_json") from None


def json_nesting_depth(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise invalid(None, f"{name} is not a JSON number; send a finite number", "invalid_json")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise invalid(key, f"field {key!r} appears twice in the body; send it once", "duplicate_field")
        result[key] = value
    return result


def parse_wire_size(value: Any) -> tuple[int | None, int | None]:
    """OpenAI's ``size``: ``"WxH"`` → (height, width) by core's one parser; ``None``/``"auto"`` → defaults."""
    if value is None or value == "auto":
        return None, None
    try:
        return parse_size(value)
    except RequestValidationError as exc:
        raise invalid("size", f"size: {exc.reason}") from None


def _typed(body: dict[str, Any], name: str, kind: type | tuple[type, ...], label: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise invalid(name, f"{name} must be {label}, got {type(value).__name__}")
    return value


def _number(body: dict[str, Any], name: str) -> float | None:
    """A JSON number field as a float; an integer too large for a float is a 400, not an OverflowError."""
    value = _typed(body, name, (int, float), "a number")
    if value is None:
        return None
    try:
        number = float(value)
    except OverflowError:
        raise invalid(name, f"{name} is too large") from None
    if not math.isfinite(number):
        raise invalid(name, f"{name} must be a finite number")
    return number


def parse_generation_request(body: Any, limits: RequestLimits, *, request_id: str) -> OmniDiffusionRequest:
    """Validate an OpenAI-style body and build the omni request; :class:`APIError` names the field."""
    if not isinstance(body, dict):
        raise invalid(None, "request body must be a JSON object")
    unknown = sorted(set(body) - SUPPORTED_FIELDS)
    if unknown:
        raise invalid(
            unknown[0],
            f"unknown field {unknown[0]!r}; supported: {', '.join(sorted(SUPPORTED_FIELDS))}",
            code="unknown_parameter",
        )
    if "prompt" not in body:
        raise invalid("prompt", "prompt is required", code="missing_required_parameter")
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise invalid("prompt", f"prompt must be a string, got {type(prompt).__name__}")
    response_format = body.get("response_format") or "b64_json"
    if response_format != "b64_json":
        raise invalid("response_format", "only response_format 'b64_json' is supported (no image hosting)")
    if (body.get("output_format") or "png") != "png":
        raise invalid("output_format", "only output_format 'png' is supported")
    if body.get("background") == "transparent":
        raise invalid("background", "transparent backgrounds are not supported; use 'auto' or 'opaque'")
    if body.get("stream"):
        raise invalid("stream", "streaming is not supported; leave stream unset or false")
    n = _typed(body, "n", int, "an integer")  # its range is the deployment's limit, checked below
    height, width = parse_wire_size(body.get("size"))
    guidance = _number(body, "guidance_scale")
    user = _typed(body, "user", str, "a string")
    request = OmniDiffusionRequest(
        prompt=prompt,
        negative_prompt=_typed(body, "negative_prompt", str, "a string"),
        height=height,
        width=width,
        num_inference_steps=_typed(body, "num_inference_steps", int, "an integer"),
        guidance_scale=guidance,
        seed=_typed(body, "seed", int, "an integer"),
        num_outputs_per_prompt=n if n is not None else 1,
        priority=_typed(body, "priority", int, "an integer") or 0,
        tenant=user,
        timeout=_number(body, "timeout"),
        request_id=request_id,
    )
    try:
        validate_request(request, limits)
    except RequestValidationError as exc:
        param = CORE_TO_WIRE_FIELD.get(exc.field, exc.field)
        raise invalid(param, f"{param}: {exc.reason}") from None
    return request


def build_generation_body(request: OmniDiffusionRequest, *, model: str | None = None) -> dict[str, Any]:
    """The JSON an OpenAI-compatible server understands; only fields the request sets."""
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "n": request.num_outputs_per_prompt,
        "response_format": "b64_json",
    }
    if model is not None:
        body["model"] = model
    if request.height is not None or request.width is not None:
        if request.height is None or request.width is None:
            raise RequestValidationError("size", "set both height and width, or neither, for an HTTP request")
        body["size"] = f"{request.width}x{request.height}"
    for name in DIFFUSION_FIELDS:
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.priority:
        body["priority"] = request.priority
    if request.tenant is not None:
        body["user"] = request.tenant
    if request.timeout is not None:
        body["timeout"] = request.timeout
    return body
