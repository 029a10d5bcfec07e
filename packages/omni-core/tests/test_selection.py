"""Executor selection: every rule of docs/architecture.md, one test each."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from omni_core import (
    DiffusionExecutor,
    ExecutorNotInstalledError,
    ExecutorResolutionError,
    OmniDiffusionConfig,
    register_executor,
    resolve_executor_class,
    unregister_executor,
)
from omni_core.executors.inproc import InProcDiffusionExecutor

MODULE_SOURCE = textwrap.dedent(
    """
    from omni_core import DiffusionExecutor, DiffusionOutput

    class PluginExecutor(DiffusionExecutor):
        def _init_executor(self):
            pass
        def execute_model(self, requests):
            return [DiffusionOutput(request_id=r.request_id) for r in requests]
        def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
            return []
        def check_health(self):
            pass
        def shutdown(self):
            pass

    class NotAnExecutor:
        pass
    """
)


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real importable package on sys.path holding executor classes."""
    package = tmp_path / "thirdparty_omni"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "executors.py").write_text(MODULE_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "thirdparty_omni.executors"


def test_none_selects_mp() -> None:
    try:
        import omni_executor_multiproc
    except ImportError:
        with pytest.raises(ExecutorNotInstalledError) as info:
            resolve_executor_class(None)
        assert info.value.shorthand == "mp"
        assert "pip install omni-executor-multiproc" in str(info.value)
    else:
        assert resolve_executor_class(None) is omni_executor_multiproc.MultiProcDiffusionExecutor


def test_inproc_shorthand_comes_from_entry_point() -> None:
    assert resolve_executor_class("inproc") is InProcDiffusionExecutor
    assert OmniDiffusionConfig(executor_class="inproc").resolve_executor_class() is InProcDiffusionExecutor


def test_third_party_shorthand_registered_by_entry_point(
    plugin_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real installed-distribution layout: importlib.metadata scans sys.path for dist-info.
    dist_info = tmp_path / "thirdparty_omni-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-omni\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[omni.executors]\nmyexec = {plugin_module}:PluginExecutor\n"
    )
    config = OmniDiffusionConfig(executor_class="myexec")
    assert config.resolve_executor_class().__name__ == "PluginExecutor"


def test_runtime_registration() -> None:
    register_executor("inproc-alias", InProcDiffusionExecutor)
    try:
        assert resolve_executor_class("inproc-alias") is InProcDiffusionExecutor
        with pytest.raises(ValueError, match="already registered"):
            register_executor("inproc-alias", InProcDiffusionExecutor)
    finally:
        unregister_executor("inproc-alias")


@pytest.mark.parametrize("separator", [":", "."])
def test_dotted_paths(plugin_module: str, separator: str) -> None:
    cls = resolve_executor_class(f"{plugin_module}{separator}PluginExecutor")
    assert cls.__name__ == "PluginExecutor"
    assert issubclass(cls, DiffusionExecutor)


def test_class_is_used_as_is() -> None:
    config = OmniDiffusionConfig(executor_class=InProcDiffusionExecutor)
    assert config.resolve_executor_class() is InProcDiffusionExecutor


def test_wrong_type_is_type_error_naming_accepted_types() -> None:
    with pytest.raises(TypeError) as info:
        OmniDiffusionConfig(executor_class=123)  # type: ignore[arg-type]
    message = str(info.value)
    assert "int" in message
    assert "str" in message
    assert "DiffusionExecutor subclass" in message


def test_unimportable_dotted_path_is_value_error_with_import_error() -> None:
    with pytest.raises(ValueError, match=r"'nonexistent\.Module'") as info:
        OmniDiffusionConfig(executor_class="nonexistent.Module")
    assert "No module named 'nonexistent'" in str(info.value)


def test_missing_attribute_in_dotted_path(plugin_module: str) -> None:
    with pytest.raises(ValueError, match="has no attribute 'Missing'"):
        OmniDiffusionConfig(executor_class=f"{plugin_module}:Missing")


def test_non_executor_class_is_type_error_naming_it(plugin_module: str) -> None:
    with pytest.raises(TypeError, match="NotAnExecutor"):
        OmniDiffusionConfig(executor_class=f"{plugin_module}:NotAnExecutor")
    with pytest.raises(TypeError, match="dict"):
        OmniDiffusionConfig(executor_class=dict)


@pytest.mark.parametrize(
    ("shorthand", "package"),
    [
        ("http", "omni-executor-http"),
        ("lambda", "omni-executor-lambda"),
        ("priority", "omni-executor-priority"),
    ],
)
def test_known_shorthand_without_package_says_what_to_install(shorthand: str, package: str) -> None:
    module = package.replace("-", "_")
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{package} is installed in this environment")
    with pytest.raises(ExecutorNotInstalledError) as info:
        resolve_executor_class(shorthand)
    assert info.value.package == package
    assert f"pip install {package}" in str(info.value)


def test_unknown_shorthand_lists_installed_and_suggests_closest() -> None:
    with pytest.raises(ExecutorResolutionError) as info:
        OmniDiffusionConfig(executor_class="inprocc")
    message = str(info.value)
    assert "'inprocc'" in message
    assert "installed: " in message
    assert "inproc" in message.split("installed: ")[1]
    assert "did you mean 'inproc'?" in message


def test_empty_string_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        OmniDiffusionConfig(executor_class="")
