"""Turning ``executor_class`` into an executor class.

The rules, in order (see docs/architecture.md):

1. a class is used as is (it must subclass :class:`DiffusionExecutor`);
2. ``None`` means the default shorthand, ``"mp"``;
3. a string with ``.`` or ``:`` is a dotted path, ``"pkg.mod:Cls"``
   (canonical) or ``"pkg.mod.Cls"``;
4. any other string is a shorthand, looked up first in names registered at
   run time with :func:`register_executor`, then in the ``omni.executors``
   entry-point group, which is how executor packages (omni's own and
   third-party ones) make their shorthand available without touching omni.

Like fsspec's registry, core keeps a table of the shorthands it knows and the
package that provides each, so a missing package is an actionable message
(``pip install ./packages/omni-executor-http`` from a checkout) instead of "not found".
"""

from __future__ import annotations

import difflib
import importlib
import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from omni_core.errors import ExecutorNotInstalledError, ExecutorResolutionError

if TYPE_CHECKING:
    from omni_core.executors.base import DiffusionExecutor

ENTRY_POINT_GROUP = "omni.executors"
DEFAULT_EXECUTOR = "mp"


@dataclass(frozen=True)
class KnownExecutor:
    """A shorthand omni knows about even when its package is absent."""

    package: str
    target: str
    summary: str

    @property
    def install_hint(self) -> str:
        """How to install it: by name once published, and from a checkout of omni (not yet on PyPI)."""
        return install_hint(self.package)


def install_hint(requirement: str) -> str:
    """``pip install NAME`` and its checkout form ``pip install ./packages/NAME`` (extras kept)."""
    name, bracket, extras = requirement.partition("[")
    local = f"./packages/{name}" + (f"[{extras}" if bracket else "")
    quote = "'" if bracket else ""
    checkout = f"pip install {quote}{local}{quote}"
    return f"pip install {quote}{requirement}{quote} (from a checkout of omni: {checkout})"


KNOWN_EXECUTORS: dict[str, KnownExecutor] = {
    "inproc": KnownExecutor(
        "omni-core[diffusers]",
        "omni_core.executors.inproc:InProcDiffusionExecutor",
        "runs the model in the caller's process",
    ),
    "mp": KnownExecutor(
        "omni-executor-multiproc",
        "omni_executor_multiproc:MultiProcDiffusionExecutor",
        "one worker process per GPU (or CPU workers)",
    ),
    "multiproc": KnownExecutor(
        "omni-executor-multiproc",
        "omni_executor_multiproc:MultiProcDiffusionExecutor",
        "alias of mp",
    ),
    "http": KnownExecutor(
        "omni-executor-http",
        "omni_executor_http:HTTPDiffusionExecutor",
        "a remote OpenAI-compatible image server",
    ),
    "external": KnownExecutor(
        "omni-executor-http",
        "omni_executor_http:ExternalDiffusionExecutor",
        "image servers started elsewhere (a list, DNS or a file), least-loaded routing",
    ),
    "lambda": KnownExecutor(
        "omni-executor-lambda",
        "omni_executor_lambda:LambdaDiffusionExecutor",
        "AWS Lambda invocations",
    ),
    "priority": KnownExecutor(
        "omni-executor-priority",
        "omni_executor_priority:PriorityDiffusionExecutor",
        "a priority scheduler in front of another executor",
    ),
    "ray": KnownExecutor(
        "omni-executor-ray",
        "omni_executor_ray:RayDiffusionExecutor",
        "actors on a Ray cluster, one per GPU",
    ),
    "celery": KnownExecutor(
        "omni-executor-celery[redis]",
        "omni_executor_celery:CeleryDiffusionExecutor",
        "Celery workers behind a Redis or RabbitMQ queue",
    ),
    "kafka": KnownExecutor(
        "omni-executor-kafka",
        "omni_executor_kafka:KafkaDiffusionExecutor",
        "omni kafka workers in a consumer group, requests and results on Kafka topics",
    ),
}

_runtime_registry: dict[str, type[DiffusionExecutor] | str] = {}
_runtime_lock = threading.Lock()


def register_executor(name: str, executor: type[DiffusionExecutor] | str, *, clobber: bool = False) -> None:
    """Register a shorthand at run time (tests, notebooks, apps that embed omni).

    Packages should prefer the ``omni.executors`` entry point, which needs no
    import-time side effect. ``clobber=False`` refuses to replace a name
    already registered, so two plugins cannot silently shadow each other.
    """
    if not name or "." in name or ":" in name:
        raise ValueError(f"executor shorthand {name!r} must be a non-empty name without '.' or ':'")
    with _runtime_lock:
        if name in _runtime_registry and not clobber:
            raise ValueError(f"executor shorthand {name!r} is already registered; pass clobber=True")
        _runtime_registry[name] = executor


def unregister_executor(name: str) -> None:
    """Remove a run-time registration (no error if absent)."""
    with _runtime_lock:
        _runtime_registry.pop(name, None)


def installed_executor_entry_points() -> dict[str, EntryPoint]:
    """Shorthands provided by installed packages, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def installed_shorthands() -> list[str]:
    """Every shorthand usable right now (entry points and run-time registrations)."""
    with _runtime_lock:
        runtime = set(_runtime_registry)
    return sorted(runtime | set(installed_executor_entry_points()))


def is_dotted_path(spec: str) -> bool:
    """A string with ``.`` or ``:`` is a dotted path, anything else a shorthand."""
    return "." in spec or ":" in spec


def resolve_executor_class(spec: str | type | None) -> type[DiffusionExecutor]:
    """Apply the selection rules; raise ``TypeError``/``ValueError`` with the fix."""
    if spec is None:
        spec = DEFAULT_EXECUTOR
    if isinstance(spec, type):
        return check_executor_class(spec, spec)
    if not isinstance(spec, str):
        raise TypeError(
            "executor_class must be None, a shorthand or dotted-path str, or a "
            f"DiffusionExecutor subclass; got {type(spec).__name__} {spec!r}"
        )
    if not spec.strip():
        raise ExecutorResolutionError(
            "executor_class '' is empty; use a shorthand such as 'mp', a dotted path "
            "'pkg.mod:Cls', or None for the default"
        )
    if is_dotted_path(spec):
        return check_executor_class(import_dotted_path(spec), spec)
    return check_executor_class(_load_shorthand(spec), spec)


def check_executor_spec(spec: str | type | None) -> None:
    """Check ``spec`` without importing an executor package (what a config does when built).

    A class must subclass :class:`DiffusionExecutor`; a shorthand must be registered,
    installed (its entry point exists) or known (then the error says what to install),
    and is imported only when an engine is built; a dotted path is imported and checked.
    """
    if spec is None or isinstance(spec, type):
        if spec is not None:
            check_executor_class(spec, spec)
        return
    if not spec.strip():
        resolve_executor_class(spec)  # raises the "empty" error
        return
    if not is_dotted_path(spec):
        with _runtime_lock:
            if spec in _runtime_registry:
                return
        if spec in installed_executor_entry_points():
            return
        _load_shorthand(spec)  # raises the not-installed or unknown-name error
        return
    # A dotted path names the operator's own module: importing it is the only way to check it.
    check_executor_class(import_dotted_path(spec), spec)


def check_executor_class(candidate: Any, spec: str | type) -> type[DiffusionExecutor]:
    """Ensure ``candidate`` is a :class:`DiffusionExecutor` subclass."""
    from omni_core.executors.base import DiffusionExecutor

    if not isinstance(candidate, type) or not issubclass(candidate, DiffusionExecutor):
        what = candidate.__qualname__ if isinstance(candidate, type) else repr(candidate)
        raise TypeError(
            f"executor_class {spec!r} resolved to {what}, which is not a subclass of "
            "omni_core.DiffusionExecutor"
        )
    return candidate


def import_dotted_path(spec: str, *, setting: str = "executor_class") -> Any:
    """Import ``"pkg.mod:Attr.Inner"`` or ``"pkg.mod.Attr"`` and return the object.

    Only ever called with operator configuration, never with request data;
    ``setting`` names the config field the path came from, for the error.
    """
    if ":" in spec:
        module_name, _, attr_path = spec.partition(":")
        if not module_name or not attr_path:
            raise ExecutorResolutionError(
                f"{setting} {spec!r} is not a valid dotted path; write 'pkg.module:ClassName'"
            )
    else:
        module_name, _, attr_path = spec.rpartition(".")
        if not module_name or not attr_path:
            raise ExecutorResolutionError(
                f"{setting} {spec!r} is not a valid dotted path; write 'pkg.module:ClassName'"
            )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ExecutorResolutionError(
            f"{setting} {spec!r}: cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ExecutorResolutionError(
                f"{setting} {spec!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from exc
    return obj


def _load_shorthand(name: str) -> Any:
    with _runtime_lock:
        runtime = _runtime_registry.get(name)
    if runtime is not None:
        return import_dotted_path(runtime) if isinstance(runtime, str) else runtime

    entry_point = installed_executor_entry_points().get(name)
    if entry_point is not None:
        try:
            return entry_point.load()
        except Exception as exc:
            raise ExecutorResolutionError(
                f"executor_class {name!r}: the installed entry point {entry_point.value!r} "
                f"failed to load: {type(exc).__name__}: {exc}"
            ) from exc

    known = KNOWN_EXECUTORS.get(name)
    if known is not None:
        raise ExecutorNotInstalledError(
            f"executor_class {name!r} needs the package {known.package!r}, which is not "
            f"installed; run: {known.install_hint}",
            shorthand=name,
            package=known.package,
        )

    installed = installed_shorthands()
    close = difflib.get_close_matches(name, sorted(set(installed) | set(KNOWN_EXECUTORS)), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ExecutorResolutionError(
        f"executor_class {name!r} is not a known executor shorthand; installed: "
        f"{', '.join(installed) or '(none)'}{hint} (a dotted path 'pkg.mod:Cls' also works)"
    )
