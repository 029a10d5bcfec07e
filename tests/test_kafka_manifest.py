"""deploy/kubernetes/kafka-workers.yaml, checked offline against Kubernetes' schemas and omni's code.

The Deployment is validated strictly; KEDA's ScaledObject (a CRD kubernetes-validate does not ship)
is checked for what KEDA's kafka scaler requires and for agreeing with the worker's command: the
same brokers, consumer group and request topics. The command must parse with ``omni kafka worker``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")
pytest.importorskip("omni_executor_kafka")

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "kafka-workers.yaml"
KUBERNETES = "1.37.0"


def by_kind() -> dict[str, dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    kinds = {doc["kind"]: doc for doc in docs}
    assert len(kinds) == len(docs)
    return kinds


def worker_params() -> dict[str, Any]:
    from omni_executor_kafka.cli import worker

    container = by_kind()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["omni"]
    group, subcommand, *args = container["args"]
    assert (group, subcommand) == ("kafka", "worker")
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    options = {param.name: param for param in worker.params}
    assert options["bootstrap_servers"].envvar in env  # the brokers reach --bootstrap-servers
    context = worker.make_context(
        "worker", list(args), default_map={"bootstrap_servers": env["OMNI_KAFKA_BOOTSTRAP_SERVERS"]}
    )
    return {
        **context.params,
        "bootstrap_servers": env["OMNI_KAFKA_BOOTSTRAP_SERVERS"],
        "container": container,
    }


def test_the_deployment_validates_strictly_and_its_command_parses() -> None:
    kinds = by_kind()
    assert sorted(kinds) == ["Deployment", "ScaledObject"]
    kubernetes_validate.validate(kinds["Deployment"], KUBERNETES, strict=True)
    params = worker_params()
    devices = [d for d in params["devices"].split(",") if d]
    assert params["container"]["resources"]["limits"]["nvidia.com/gpu"] == str(len(devices))  # one per GPU


def test_keda_scales_on_the_groups_lag_on_every_request_topic() -> None:
    from omni_executor_kafka.settings import KafkaSettings

    kinds = by_kind()
    scaled = kinds["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"]
    params = worker_params()
    settings = KafkaSettings(
        bootstrap_servers=params["bootstrap_servers"],
        request_topic=params["request_topic"],
        priority_levels=params["priority_levels"],
        partitions=params["partitions"],
    )
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= settings.partitions
    topics = []
    for trigger in spec["triggers"]:
        assert trigger["type"] == "kafka"
        metadata = trigger["metadata"]
        assert metadata["bootstrapServers"] == settings.bootstrap_servers
        assert metadata["consumerGroup"] == params["group"]
        assert int(metadata["lagThreshold"]) >= 1
        topics.append(metadata["topic"])
    assert topics == settings.request_topics()
