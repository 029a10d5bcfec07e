"""The config: cheap to build, checked early, extensible by subclassing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from omni_core import (
    DiffusionEngine,
    DiffusionExecutor,
    DiffusionOutput,
    ExecutorOptionsError,
    ModelLoadError,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
)


@dataclass
class RemoteConfig(OmniDiffusionConfig):
    remote_url: str = "http://127.0.0.1:9"
    api_token: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class EchoOptions:
    prefix: str = "echo"
    retries: int = 0
    ratio: float | None = None


class EchoExecutor(DiffusionExecutor):
    """Returns no images; records what it was configured with."""

    options_class = EchoOptions

    def _init_executor(self) -> None:
        self.seen_config = self.od_config

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        return [DiffusionOutput(request_id=f"{self.options.prefix}-{r.request_id}") for r in requests]

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        return [method]

    def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


def test_config_needs_no_model_on_disk() -> None:
    config = OmniDiffusionConfig(model_class_name="Test", executor_class=EchoExecutor)
    assert config.model_class_name == "Test"
    with DiffusionEngine(config) as engine:
        assert engine.step([OmniDiffusionRequest(prompt="x", request_id="r")])[0].request_id == "echo-r"


def test_missing_model_fails_when_loaded_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    config = OmniDiffusionConfig(model_name_or_path=str(missing), executor_class="inproc")
    with pytest.raises(ModelLoadError, match=str(missing)):
        DiffusionEngine(config)


def test_unknown_pipeline_class_fails_when_loaded(tiny_model: Path) -> None:
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), model_class_name="Test", executor_class="inproc"
    )
    with pytest.raises(ModelLoadError, match="model_class_name 'Test'"):
        DiffusionEngine(config)


def test_config_subclass_reaches_executor_unchanged() -> None:
    config = RemoteConfig(executor_class=EchoExecutor, remote_url="http://127.0.0.1:1234", timeout=2.5)
    with DiffusionEngine(config) as engine:
        assert isinstance(engine.executor, EchoExecutor)
        seen = engine.executor.seen_config
        assert seen is config
        assert isinstance(seen, RemoteConfig)
        assert (seen.remote_url, seen.timeout, seen.api_token) == ("http://127.0.0.1:1234", 2.5, None)


def test_executor_options_are_parsed_into_the_dataclass() -> None:
    config = OmniDiffusionConfig(
        executor_class=EchoExecutor, executor_options={"prefix": "p", "retries": 3, "ratio": 1}
    )
    with DiffusionEngine(config) as engine:
        assert engine.executor.options == EchoOptions(prefix="p", retries=3, ratio=1)


def test_unknown_executor_option_lists_valid_ones() -> None:
    config = OmniDiffusionConfig(executor_class=EchoExecutor, executor_options={"retrys": 3})
    with pytest.raises(ExecutorOptionsError) as info:
        DiffusionEngine(config)
    message = str(info.value)
    assert "'retrys'" in message
    assert "prefix, ratio, retries" in message
    assert "did you mean 'retries'?" in message


def test_wrong_option_type_names_option_and_type() -> None:
    config = OmniDiffusionConfig(executor_class=EchoExecutor, executor_options={"retries": "3"})
    with pytest.raises(ExecutorOptionsError, match=r"'retries'.*must be int"):
        DiffusionEngine(config)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("dtype", "float8", "dtype must be one of 'auto'.*got str 'float8'"),
        ("max_batch_size", 0, "max_batch_size"),
        ("num_gpus", -1, "num_gpus"),
        ("executor_options", [], "executor_options must be a dict"),
        ("model_name_or_path", 5, "model_name_or_path must be str or None"),
        ("max_guidance_scale", float("nan"), "max_guidance_scale must be a finite number"),
        ("request_timeout", 0, "request_timeout must be > 0"),
    ],
)
def test_bad_config_fields_fail_at_construction(field: str, value: Any, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        OmniDiffusionConfig(executor_class="inproc", **{field: value})


def test_model_alias_and_replace_keep_subclass() -> None:
    config = RemoteConfig(model="some/model", executor_class=EchoExecutor)
    assert config.model_name_or_path == "some/model"
    changed = config.replace(model_name_or_path="other/model")
    assert isinstance(changed, RemoteConfig)
    assert changed.model_name_or_path == "other/model"
    with pytest.raises(ValueError, match="both set and differ"):
        OmniDiffusionConfig(model="a/b", model_name_or_path="c/d")
