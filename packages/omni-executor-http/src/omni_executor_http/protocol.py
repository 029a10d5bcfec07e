"""The OpenAI Images API as omni speaks it, both ways.

``POST /v1/images/generations`` with OpenAI's fields (``prompt``, ``n``,
``size`` "WxH", ``response_format`` ``b64_json``) plus the diffusion fields
vllm-omni's server accepts (``negative_prompt``, ``num_inference_steps``,
``guidance_scale``, ``seed``, ``extra_params``) and omni's ``priority``,
``lora`` and ``lora_scale``. ``POST /v1/images/edits`` takes the same fields
as OpenAI's multipart form, with ``image`` (one or several, ``image[]`` as the
``openai`` client names a list), ``mask`` and ``strength``. Shared by the
server (parsing) and the executor (building), so the two cannot drift apart.
Torch-free and framework-free.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from omni_core import OmniDiffusionRequest, RequestLimits, RequestValidationError, validate_request
from omni_core.errors import encodable
from omni_core.executors import (
    encode_png,
    image_to_mask_array,
    image_to_rgb_array,
    load_input_image,
    open_input_image,
    parse_size,
)
from omni_executor_http.output import OUTPUT_FIELDS, QUALITY_STEPS, OutputOptions, parse_output_options

GENERATIONS_PATH = "/v1/images/generations"
EDITS_PATH = "/v1/images/edits"
IMAGE_CONTENT_PATH = "/v1/images/{image_id}/content"
"""Where ``response_format=url`` images are read (with the same API key)."""

# OpenAI fields a client may send that do not change what a diffusion model draws.
IGNORED_OPENAI_FIELDS = frozenset({"model", "style", "safety_identifier"})
DIFFUSION_FIELDS = ("negative_prompt", "num_inference_steps", "guidance_scale", "seed")
SUPPORTED_FIELDS = frozenset(
    {
        "prompt",
        "n",
        "size",
        "user",
        "priority",
        "timeout",
        "extra_params",
        "lora",
        "lora_scale",
    }
    | set(DIFFUSION_FIELDS)
    | IGNORED_OPENAI_FIELDS
    | OUTPUT_FIELDS
)
EDIT_IMAGE_FIELDS = ("image", "image[]")
"""A single image, or several as the ``openai`` client sends a list (``image[]``)."""
EDIT_MASK_FIELD = "mask"
EDIT_FIELDS = SUPPORTED_FIELDS | {"strength", "input_fidelity"}
"""The edit form's text fields (its files are :data:`EDIT_IMAGE_FIELDS` and ``mask``)."""
FORM_INTEGERS = frozenset(
    {"n", "num_inference_steps", "seed", "priority", "output_compression", "partial_images"}
)
FORM_NUMBERS = frozenset({"guidance_scale", "strength", "timeout", "lora_scale"})
EXTRA_FORM_PREFIX = "extra_params["
MAX_JSON_DEPTH = 32
"""Deepest nesting a JSON text may have before it is parsed (omni's bodies are flat; a deep one is an
attack on the parser); checked for bodies and for a form's JSON fields alike, so both endpoints give
the same answer. ``extra`` values have their own, lower, limit in core."""

# core's field names → the request parameter a client wrote.
CORE_TO_WIRE_FIELD = {
    "num_outputs_per_prompt": "n",
    "height": "size",
    "width": "size",
    "tenant": "user",
    "mask_image": "mask",
    "extra": "extra_params",
}


def wire_field(core_field: str) -> str:
    """The parameter a client wrote for core's ``core_field`` (``extra.eta`` → ``extra_params.eta``)."""
    head, dot, rest = core_field.partition(".")
    return CORE_TO_WIRE_FIELD.get(head, head) + dot + rest


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
        message = encodable(message)  # names and values a client sent, safe to encode as JSON
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = None if param is None else encodable(param)
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


def invalid_field(exc: RequestValidationError, param: str | None = None) -> APIError:
    """A 400 for ``exc``, naming the field as the client wrote it (``param``, else its wire name)."""
    name = param or wire_field(exc.field)
    return invalid(name, f"{name}: {exc.reason}")


@dataclass(frozen=True)
class ParsedRequest:
    """A client's request: what to draw (``request``) and how to deliver it (``options``)."""

    request: OmniDiffusionRequest
    options: OutputOptions


def parse_json_body(raw: bytes, *, max_depth: int, field: str | None = None) -> Any:
    """A request body (or ``field``'s JSON text in a form) as JSON, or a 400 that says what is wrong.

    Refused before or while parsing: nesting deeper than ``max_depth`` (checked
    first, so the parser never recurses deep), invalid UTF-8, ``NaN``/``Infinity``
    (not JSON), integers too long for Python to convert, and duplicate keys
    (which value would win is a guess). Each 400 names ``field`` (a duplicate
    key as ``field.key``); ``None`` is the whole body.
    """
    where = "request body" if field is None else field
    depth = json_nesting_depth(raw)
    if depth > max_depth:
        raise invalid(
            field, f"{where} nests {depth} levels deep, over the limit of {max_depth}", "invalid_json"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(field, f"{where} is not valid UTF-8: {exc}", "invalid_json") from None
    try:
        return json.loads(
            text,
            parse_constant=lambda name: _refuse_constant(name, field),
            object_pairs_hook=lambda pairs: _object_without_duplicates(pairs, field),
        )
    except APIError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and int() past its digit limit
        raise invalid(field, f"{where} is not valid JSON: {exc}", "invalid_json") from None


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


def _refuse_constant(name: str, field: str | None) -> Any:
    raise invalid(field, f"{name} is not a JSON number; send a finite number", "invalid_json")


def _object_without_duplicates(pairs: list[tuple[str, Any]], field: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            name = key if field is None else f"{field}.{key}"
            raise invalid(name, f"field {name!r} appears twice; send it once", "duplicate_field")
        result[key] = value
    return result


def parse_wire_size(value: Any) -> tuple[int | None, int | None]:
    """OpenAI's ``size``: ``"WxH"`` → (height, width) by core's one parser; ``None``/``"auto"`` → defaults."""
    if value is None or value == "auto":
        return None, None
    try:
        return parse_size(value)
    except RequestValidationError as exc:
        raise invalid_field(exc, "size") from None


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


def parse_generation_request(body: Any, limits: RequestLimits, *, request_id: str) -> ParsedRequest:
    """Validate an OpenAI-style body and build the omni request; :class:`APIError` names the field."""
    if not isinstance(body, dict):
        raise invalid(None, "request body must be a JSON object")
    return _build_request(body, SUPPORTED_FIELDS, limits, request_id=request_id)


def parse_edit_request(
    fields: dict[str, Any],
    images: list[bytes],
    mask: bytes | None,
    limits: RequestLimits,
    *,
    request_id: str,
) -> ParsedRequest:
    """An edit form (text fields already typed by :func:`form_values`) as an omni request.

    Each image is decoded by core's :func:`~omni_core.images.decode_input_image`: its
    declared size is checked against the deployment's pixel cap before any pixel is
    decompressed, and every failure is a 400 naming ``image`` or ``mask``.
    """
    if not images:
        raise invalid(
            "image", "image is required: send the picture to edit as a file", "missing_required_parameter"
        )
    if len(images) > limits.max_input_images:
        raise invalid(
            "image", f"image: {len(images)} files sent, over the limit of {limits.max_input_images}"
        )
    try:
        opened = [open_input_image(data, "image", max_pixels=limits.max_image_pixels) for data in images]
        opened_mask = (
            None if mask is None else open_input_image(mask, "mask", max_pixels=limits.max_image_pixels)
        )
        _check_sizes_agree(opened, opened_mask)  # from the headers: nothing decoded yet
        arrays = [image_to_rgb_array(load_input_image(image, "image")) for image in opened]
        mask_array = (
            None if opened_mask is None else image_to_mask_array(load_input_image(opened_mask, "mask"))
        )
    except RequestValidationError as exc:
        raise invalid_field(exc, exc.field) from None
    conditioning = {
        "image": arrays if len(arrays) > 1 else arrays[0],
        "mask_image": mask_array,
        "strength": _number(fields, "strength"),
    }
    return _build_request(fields, EDIT_FIELDS, limits, request_id=request_id, conditioning=conditioning)


def _check_sizes_agree(images: list[Any], mask: Any) -> None:
    """Every image, and the mask, the first image's size (read from their headers)."""
    width, height = images[0].size
    if any(image.size != (width, height) for image in images[1:]):
        raise RequestValidationError("image", "images of one request must all have the same size")
    if mask is not None and mask.size != (width, height):
        raise RequestValidationError(
            "mask",
            f"is {mask.size[0]}x{mask.size[1]} but the image is {width}x{height}; "
            "send a mask the image's size",
        )


def form_values(items: list[tuple[str, str]]) -> dict[str, Any]:
    """A multipart form's text fields with the JSON types a generation body would carry.

    Form fields are text: numbers are parsed by name (:data:`FORM_INTEGERS`,
    :data:`FORM_NUMBERS`); ``extra_params`` is a JSON object, or flattened as
    ``extra_params[name]`` fields (how the ``openai`` client sends a dict in a form)
    whose values are read as JSON where they parse and as text otherwise.
    """
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, text in items:
        if name in values or (
            name.startswith(EXTRA_FORM_PREFIX) and name[len(EXTRA_FORM_PREFIX) : -1] in extra
        ):
            raise invalid(name, f"field {name!r} appears twice in the form; send it once", "duplicate_field")
        if name.startswith(EXTRA_FORM_PREFIX) and name.endswith("]"):
            argument = name[len(EXTRA_FORM_PREFIX) : -1]
            extra[argument] = _json_or_text(text, f"extra_params.{argument}")
        elif name in FORM_INTEGERS:
            values[name] = _form_number(name, text, int)
        elif name in FORM_NUMBERS:
            values[name] = _form_number(name, text, float)
        elif name == "extra_params":
            values[name] = parse_json_body(_utf8(name, text), max_depth=MAX_JSON_DEPTH, field=name)
        elif name == "stream":
            values[name] = text.strip().lower() in ("true", "1")
        else:
            values[name] = text
    if extra:
        if "extra_params" in values:
            raise invalid(
                "extra_params", "send extra_params as one JSON field or as extra_params[name] fields"
            )
        values["extra_params"] = extra
    return values


JSON_LOOKING_START = frozenset('[{"-0123456789')


def _json_or_text(text: str, field: str) -> Any:
    """A flattened ``extra_params[name]`` value: JSON where it is JSON, else the text itself.

    Text that starts like JSON (a bracket, a quote, a digit) or spells ``NaN``/``Infinity`` but does
    not parse is a 400 naming the field, not silently a string (a 5000-digit integer, ``[[[``).
    """
    stripped = text.strip()
    looks_like_json = stripped[:1] in JSON_LOOKING_START or stripped in ("NaN", "Infinity")
    if not looks_like_json:
        return text
    return parse_json_body(_utf8(field, text), max_depth=MAX_JSON_DEPTH, field=field)


def _utf8(field: str, text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(field, f"{field} holds invalid Unicode (a lone surrogate); send valid UTF-8") from None


def _form_number(name: str, text: str, kind: type) -> Any:
    try:
        return kind(text.strip())
    except (ValueError, OverflowError):
        label = "an integer" if kind is int else "a number"
        raise invalid(name, f"{name} must be {label}, got {text[:40]!r}") from None


def _build_request(
    body: dict[str, Any],
    supported: frozenset[str],
    limits: RequestLimits,
    *,
    request_id: str,
    conditioning: dict[str, Any] | None = None,
) -> ParsedRequest:
    unknown = sorted(set(body) - supported)
    if unknown:
        raise invalid(
            unknown[0],
            f"unknown field {unknown[0]!r}; supported: {', '.join(sorted(supported))}",
            code="unknown_parameter",
        )
    if "prompt" not in body:
        raise invalid("prompt", "prompt is required", code="missing_required_parameter")
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise invalid("prompt", f"prompt must be a string, got {type(prompt).__name__}")
    options = parse_output_options(body, invalid)
    steps = _typed(body, "num_inference_steps", int, "an integer")
    if steps is None:
        steps = QUALITY_STEPS[options.quality]
    n = _typed(body, "n", int, "an integer")  # its range is the deployment's limit, checked below
    height, width = parse_wire_size(body.get("size"))
    guidance = _number(body, "guidance_scale")
    user = _typed(body, "user", str, "a string")
    extra = _typed(body, "extra_params", dict, "a JSON object")
    request = OmniDiffusionRequest(
        prompt=prompt,
        negative_prompt=_typed(body, "negative_prompt", str, "a string"),
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=guidance,
        seed=_typed(body, "seed", int, "an integer"),
        num_outputs_per_prompt=n if n is not None else 1,
        priority=_typed(body, "priority", int, "an integer") or 0,
        tenant=user,
        timeout=_number(body, "timeout"),
        request_id=request_id,
        extra=extra if extra is not None else {},
        lora=_typed(body, "lora", str, "a string"),
        lora_scale=_number(body, "lora_scale"),
        partial_images=options.partial_images,
        **(conditioning or {}),
    )
    try:
        validate_request(request, limits)
    except RequestValidationError as exc:
        raise invalid_field(exc) from None
    return ParsedRequest(request, options)


@dataclass
class WirePayload:
    """One request as an OpenAI-compatible server takes it: a JSON body, or an edit's multipart form."""

    path: str
    json: dict[str, Any] | None = None
    data: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, tuple[str, bytes, str]]] = field(default_factory=list)

    @property
    def streamed(self) -> bool:
        """Whether the server is asked for Server-Sent Events (the request wants previews)."""
        return bool((self.json or {}).get("stream")) or self.data.get("stream") == "true"


def build_payload(request: OmniDiffusionRequest, *, model: str | None = None) -> WirePayload:
    """Where and how to send ``request``: generations as JSON, image requests as an edit form."""
    body = build_generation_body(request, model=model)
    if request.image is None:
        return WirePayload(GENERATIONS_PATH, json=body)
    if request.strength is not None:
        body["strength"] = request.strength
    data = {name: _form_text(value) for name, value in body.items()}
    images = request.images
    image_field = "image" if len(images) == 1 else "image[]"
    files = [
        (image_field, (f"image{i}.png", _png("image", image), "image/png")) for i, image in enumerate(images)
    ]
    if request.mask_image is not None:
        files.append((EDIT_MASK_FIELD, ("mask.png", _png("mask_image", request.mask_image), "image/png")))
    return WirePayload(EDITS_PATH, data=data, files=files)


def _form_text(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _png(name: str, image: Any) -> bytes:
    try:
        return encode_png(image)
    except (TypeError, ValueError, AttributeError) as exc:
        raise RequestValidationError(name, f"must be an 8-bit image array: {exc}") from None


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
    if request.extra:
        body["extra_params"] = dict(request.extra)
    if request.lora is not None:
        body["lora"] = request.lora
    if request.lora_scale is not None:
        body["lora_scale"] = request.lora_scale
    if request.partial_images:
        # Previews travel as OpenAI's stream events; other servers that cannot stream refuse it.
        body["stream"] = True
        body["partial_images"] = request.partial_images
    return body
