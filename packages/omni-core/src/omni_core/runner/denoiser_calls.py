"""Merging several pipeline calls' denoiser forwards into one, and splitting the answer.

Step-level batching runs each request's own pipeline ``__call__`` and stops it
at every denoiser call (:mod:`omni_core.runner.step_batching`). What is left
here is torch-level bookkeeping: which arguments of a UNet or DiT forward
are per row (the latents, the timestep, the text embeddings, SDXL's added
conditions, Flux's guidance) and which are shared by every row (Flux's
position ids, ``return_dict``, attention kwargs), which calls may share
one forward (equal shared arguments, equal row shapes), and how the merged
output is cut back into each call's rows.

The timestep is the one argument diffusers pipelines pass as a scalar for
the whole call; the denoisers expand it to one value per row themselves, so
expanding it here first changes nothing for a call that runs alone.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SHARED_ARGUMENTS = frozenset({"img_ids", "txt_ids", "return_dict"})
"""Arguments that describe every row alike even where their first dimension could match the rows."""
TIMESTEP_ARGUMENTS = frozenset({"timestep", "timesteps"})

CallKey = tuple[object, ...]


@dataclass(eq=False)
class DenoiserCall:
    """One pipeline's request for a denoiser forward, parked until the batch runs."""

    arguments: dict[str, Any]
    """Keyword form of the call (positional arguments bound to the forward's signature)."""
    sample_name: str
    """The latents' argument (``sample`` for UNets, ``hidden_states`` for DiTs)."""
    group: object = None
    """What else the call's rows must share (the active LoRA): set by the caller."""
    result: Any = None
    error: BaseException | None = None
    key: CallKey = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.group, _key_of(self.arguments, self.rows))

    @property
    def rows(self) -> int:
        return int(self.arguments[self.sample_name].shape[0])


_SIGNATURES: dict[type, inspect.Signature] = {}
"""The forward's signature by denoiser class: read once, not at every step of every request."""


def bind_call(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], group: object) -> DenoiserCall:
    """A :class:`DenoiserCall` for ``module(*args, **kwargs)``."""
    signature = _SIGNATURES.get(type(module))
    if signature is None:
        signature = _SIGNATURES.setdefault(type(module), inspect.signature(module.forward))
    bound = signature.bind_partial(*args, **kwargs)
    arguments = dict(bound.arguments)
    extra = next(
        (p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD and p.name in arguments),
        None,
    )
    if extra is not None:
        arguments.update(arguments.pop(extra))
    sample_name = next(iter(signature.parameters))
    return DenoiserCall(arguments, sample_name, group)


def _key_of(value: Any, rows: int, name: str = "") -> object:
    """What calls must agree on to share a forward: row shapes, dtypes and every shared value."""
    import torch

    if isinstance(value, torch.Tensor):
        if name in TIMESTEP_ARGUMENTS:
            return ("timestep", value.dtype, str(value.device))
        if value.dim() >= 1 and value.shape[0] == rows and name not in SHARED_ARGUMENTS:
            return ("rows", tuple(value.shape[1:]), value.dtype, str(value.device))
        return ("shared", tuple(value.shape), value.dtype, str(value.device))
    if isinstance(value, dict):
        return ("dict", tuple((k, _key_of(v, rows, k)) for k, v in sorted(value.items())))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_key_of(v, rows, name) for v in value))
    if isinstance(value, (int, float)) and name in TIMESTEP_ARGUMENTS:
        return ("timestep", type(value).__name__)
    try:
        hash(value)
    except TypeError:
        return ("value", repr(value))
    return ("value", value)


def shared_values_equal(first: DenoiserCall, other: DenoiserCall) -> bool:
    """Whether ``other``'s shared tensors equal ``first``'s (the key compared only their shapes)."""
    return _shared_equal(first.arguments, other.arguments, first.rows, other.rows, "")


def _shared_equal(a: Any, b: Any, rows_a: int, rows_b: int, name: str) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        if name in TIMESTEP_ARGUMENTS or _is_per_row(a, rows_a, name):
            return True
        return a is b or bool(torch.equal(a, b))
    if isinstance(a, dict):
        return all(_shared_equal(a[k], b[k], rows_a, rows_b, k) for k in a)
    if isinstance(a, (list, tuple)):
        return all(_shared_equal(x, y, rows_a, rows_b, name) for x, y in zip(a, b, strict=True))
    return True  # plain values are in the key itself


def _is_per_row(value: Any, rows: int, name: str) -> bool:
    return value.dim() >= 1 and value.shape[0] == rows and name not in SHARED_ARGUMENTS


def merge_arguments(calls: Sequence[DenoiserCall]) -> dict[str, Any]:
    """One forward's arguments for every row of ``calls`` (which share a key), in order."""
    rows = [call.rows for call in calls]
    return {name: _merge([call.arguments[name] for call in calls], rows, name) for name in calls[0].arguments}


def _merge(values: list[Any], rows: list[int], name: str) -> Any:
    import torch

    first = values[0]
    if isinstance(first, torch.Tensor):
        if name in TIMESTEP_ARGUMENTS:
            return torch.cat([_per_row_timestep(v, n) for v, n in zip(values, rows, strict=True)])
        if _is_per_row(first, rows[0], name):
            return first if len(values) == 1 else torch.cat(values)
        return first
    if isinstance(first, (int, float)) and not isinstance(first, bool) and name in TIMESTEP_ARGUMENTS:
        return torch.cat([_per_row_timestep(torch.tensor(v), n) for v, n in zip(values, rows, strict=True)])
    if isinstance(first, dict):
        return {key: _merge([v[key] for v in values], rows, key) for key in first}
    if isinstance(first, (list, tuple)):
        merged = [_merge([v[i] for v in values], rows, name) for i in range(len(first))]
        return type(first)(merged)
    return first


def _per_row_timestep(value: Any, rows: int) -> Any:
    """A call's timestep as one value per row (what the denoiser would expand it to)."""
    if value.dim() == 0:
        return value.reshape(1).expand(rows)
    if value.shape[0] == 1 and rows != 1:
        return value.expand(rows)
    return value


def split_output(output: Any, rows: Sequence[int]) -> list[Any]:
    """Cut a merged forward's output into each call's rows, keeping the output's type."""
    import torch

    total = sum(rows)
    if len(rows) == 1:
        return [output]

    def cut(value: Any) -> list[Any]:
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == total:
            return list(torch.split(value, list(rows)))
        return [value] * len(rows)

    if isinstance(output, torch.Tensor):
        return cut(output)
    if isinstance(output, tuple):
        pieces = [cut(value) for value in output]
        return [tuple(piece[i] for piece in pieces) for i in range(len(rows))]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        names = [f.name for f in dataclasses.fields(output)]
        fields = {name: cut(getattr(output, name)) for name in names}
        kind: Any = type(output)
        return [kind(**{name: fields[name][i] for name in names}) for i in range(len(rows))]
    raise TypeError(f"cannot split a denoiser output of type {type(output).__name__} by rows")
