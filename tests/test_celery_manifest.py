"""deploy/kubernetes/celery-workers.yaml, checked offline against Kubernetes' schemas and omni's code.

kubernetes-validate ships the core API's schemas, not KEDA's CRDs: the Secret and Deployment
are validated strictly; the ScaledObject and TriggerAuthentication are checked for the fields
KEDA's rabbitmq scaler requires and for agreeing with the Deployment (target, queue, secret).
The worker's command must parse with ``omni celery worker``'s own CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "celery-workers.yaml"
KUBERNETES = "1.37.0"


def by_kind() -> dict[str, dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    kinds = {doc["kind"]: doc for doc in docs}
    assert len(kinds) == len(docs)
    return kinds


def test_kubernetes_objects_validate_strictly() -> None:
    kinds = by_kind()
    assert sorted(kinds) == ["Deployment", "ScaledObject", "Secret", "TriggerAuthentication"]
    for kind in ("Secret", "Deployment"):
        kubernetes_validate.validate(kinds[kind], KUBERNETES, strict=True)


def _worker_container() -> dict[str, Any]:
    return by_kind()["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def test_the_worker_command_parses_with_omni_celery_worker() -> None:
    from omni_executor_celery.app import CelerySettings
    from omni_executor_celery.cli import worker

    container = _worker_container()
    assert container["command"] == ["omni"]
    group, subcommand, *args = container["args"]
    assert (group, subcommand) == ("celery", "worker")
    secret = by_kind()["Secret"]["stringData"]
    env = {}
    for variable in container["env"]:
        env[variable["name"]] = secret[variable["valueFrom"]["secretKeyRef"]["key"]]
    options = {param.name: param for param in worker.params}
    assert options["broker_url"].envvar in env  # the Secret reaches --broker and --backend
    assert options["result_backend"].envvar in env
    context = worker.make_context(
        "worker", list(args), default_map={"broker_url": env["OMNI_CELERY_BROKER"]}
    )  # raises on a flag the command lacks
    params = context.params
    # The URLs are a pair the executor and workers accept (RabbitMQ needs a key-value result store).
    CelerySettings(broker_url=env["OMNI_CELERY_BROKER"], result_backend=env["OMNI_CELERY_BACKEND"])
    devices = [d for d in params["devices"].split(",") if d]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(len(devices))  # one worker per GPU
    grace = by_kind()["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= params["task_time_limit"]


def test_keda_scales_the_worker_deployment_on_its_queue() -> None:
    from omni_executor_celery.cli import worker

    kinds = by_kind()
    scaled, auth, secret = kinds["ScaledObject"], kinds["TriggerAuthentication"], kinds["Secret"]
    for doc in (scaled, auth):
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"]
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "rabbitmq"
    metadata = trigger["metadata"]
    args = _worker_container()["args"][2:]
    queue = worker.make_context("worker", list(args), default_map={"broker_url": "amqp://x//"}).params[
        "queue"
    ]
    assert metadata["queueName"] == queue
    assert metadata["mode"] == "QueueLength"
    assert int(metadata["value"]) >= 1
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host"
    assert ref["name"] == secret["metadata"]["name"]
    assert secret["stringData"][ref["key"]].startswith("amqp://")
