"""Fixtures: the tiny model, moto's S3, and the local Lambda service running real awslambdaric processes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omni_core import DiffusionEngine, OmniDiffusionConfig
from omni_core.testing import isolated_omni_cache, tiny_model
from omni_executor_lambda.local import LocalFunction, LocalLambdaService
from omni_executor_lambda.testing import TEST_CREDENTIALS, local_lambda, moto_s3

__all__ = ["isolated_omni_cache", "tiny_model"]

CODE_DIR = Path(__file__).parent / "function_code"
BUCKET = "omni-test-outputs"


@pytest.fixture(scope="session", autouse=True)
def aws_test_credentials() -> Iterator[None]:
    """Fake credentials, so nothing here can reach a real AWS account."""
    saved = {name: os.environ.get(name) for name in TEST_CREDENTIALS}
    os.environ.update(TEST_CREDENTIALS)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def s3_bucket() -> str:
    return BUCKET


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_s3(BUCKET) as endpoint:
        yield endpoint


class RunLog:
    """Lines the test handlers append for every run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def runs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.path.read_text().splitlines()]


@pytest.fixture(scope="session")
def run_log(tmp_path_factory: pytest.TempPathFactory) -> RunLog:
    return RunLog(tmp_path_factory.mktemp("runs") / "runs.jsonl")


@pytest.fixture(scope="session")
def service(
    tiny_model: Path, s3_endpoint: str, run_log: RunLog, isolated_omni_cache: Path
) -> Iterator[LocalLambdaService]:
    common = {
        "OMNI_MODEL": str(tiny_model),
        "OMNI_EAGER_LOAD": "1",
        "OMNI_TEST_RUN_LOG": str(run_log.path),
        "OMNI_CACHE_DIR": str(isolated_omni_cache),
    }
    functions = [
        # omni's handler, counted; offloads large responses to moto's S3.
        LocalFunction(
            "omni",
            handler="omni_test_handlers.counted",
            code_dir=CODE_DIR,
            concurrency=2,
            timeout=120,
            environment={**common, "OMNI_S3_BUCKET": BUCKET, "AWS_ENDPOINT_URL": s3_endpoint},
        ),
        # The same with a short timeout.
        LocalFunction(
            "omni-strict",
            handler="omni_test_handlers.counted",
            code_dir=CODE_DIR,
            concurrency=1,
            timeout=3,
            environment=common,
        ),
        # The same without a bucket.
        LocalFunction(
            "omni-no-bucket",
            handler="omni_test_handlers.counted",
            code_dir=CODE_DIR,
            concurrency=1,
            timeout=120,
            environment=common,
        ),
    ]
    with local_lambda(functions) as running:
        yield running


@pytest.fixture
def lambda_engine(service: LocalLambdaService) -> Iterator[Callable[..., DiffusionEngine]]:
    engines: list[DiffusionEngine] = []

    def make(**options: object) -> DiffusionEngine:
        config_fields = {k: options.pop(k) for k in list(options) if k in {"max_prompt_length"}}
        engine = DiffusionEngine(
            OmniDiffusionConfig(
                executor_class="lambda",
                executor_options={"function_name": "omni", "endpoint_url": service.endpoint_url, **options},
                **config_fields,  # type: ignore[arg-type]
            )
        )
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture(scope="session")
def inproc_engine(tiny_model: Path) -> Iterator[DiffusionEngine]:
    engine = DiffusionEngine(OmniDiffusionConfig(model_name_or_path=str(tiny_model), executor_class="inproc"))
    yield engine
    engine.close()
