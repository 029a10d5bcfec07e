"""Every manifest in deploy/kubernetes/, checked offline, and omni-serve.yaml against the code.

kubernetes-validate ships the core API's schemas: every core object in every file is validated
strictly here. The custom resources (KubeRay's RayCluster, KEDA's ScaledObject and
TriggerAuthentication) are checked by the tests of their own files for what their operators
require and for agreeing with omni. omni-serve.yaml: the command parses with ``omni serve``,
the probes and the KEDA scaler hit routes and metrics the server has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
KUBERNETES = "1.37.0"
CUSTOM_KINDS = {"RayCluster", "ScaledObject", "TriggerAuthentication"}


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def test_every_core_object_in_every_manifest_validates_strictly() -> None:
    files = sorted(path.name for path in DEPLOY.glob("*.yaml"))
    assert files == ["celery-workers.yaml", "kafka-workers.yaml", "omni-serve.yaml", "ray-cluster.yaml"]
    for name in files:
        for doc in documents(name):
            if doc["kind"] not in CUSTOM_KINDS:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def by_kind() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in documents("omni-serve.yaml")}


def test_omni_serve_command_probes_and_port_agree_with_the_server(server_routes: set[str]) -> None:
    from omni_executor_http.server.cli import serve

    kinds = by_kind()
    assert sorted(kinds) == ["Deployment", "PodDisruptionBudget", "ScaledObject", "Service"]
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["omni"]
    subcommand, *args = container["args"]
    assert subcommand == "serve"
    params = serve.make_context("serve", list(args)).params  # raises on a flag omni serve lacks
    assert params["executor_class"] == "mp"
    (port,) = container["ports"]
    assert port["containerPort"] == params["port"]
    routes = server_routes
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
        assert container[probe]["httpGet"]["port"] == port["name"]
        assert container[probe]["timeoutSeconds"] <= 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # Draining on SIGTERM takes up to the request timeout: the grace period covers it.
    assert pod["terminationGracePeriodSeconds"] >= params["request_timeout"]


def test_service_budget_and_scaler_point_at_the_deployment(server_routes: set[str]) -> None:
    kinds = by_kind()
    deployment = kinds["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert kinds["Service"]["spec"]["selector"] == labels
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    container_port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert kinds["Service"]["spec"]["ports"][0]["targetPort"] == container_port["name"]
    scaled = kinds["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "metrics-api"
    metadata = trigger["metadata"]
    assert metadata["format"] == "prometheus"
    service = kinds["Service"]
    assert metadata["url"] == (
        f"http://{service['metadata']['name']}.default.svc:{service['spec']['ports'][0]['port']}/metrics"
    )
    assert "/metrics" in server_routes
    assert metadata["valueLocation"] in _server_metric_names()
    assert int(metadata["targetValue"]) >= 1


def _server_metric_names() -> set[str]:
    from omni_executor_http.server.metrics import ServerMetrics

    return {metric.name for metric in ServerMetrics().registry.collect()}
