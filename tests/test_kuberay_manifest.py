"""deploy/kubernetes/ray-cluster.yaml, checked offline against Kubernetes' schemas and omni's code.

kubernetes-validate ships the core API's schemas but not KubeRay's CRD, so the RayCluster is
checked in parts: each of its pod templates strictly as a core/v1 PodTemplate (the schema the
API server applies to pods), and the RayCluster's own fields for what KubeRay requires. The
other objects (Deployment, Service, NetworkPolicy) are validated whole. The omni command must
parse with omni's own CLI, and its probes must hit routes the server has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "ray-cluster.yaml"
KUBERNETES = "1.37.0"


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def pod_templates(cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = cluster["spec"]
    found = [("head", spec["headGroupSpec"]["template"])]
    found += [(group["groupName"], group["template"]) for group in spec["workerGroupSpecs"]]
    return found


def test_kubernetes_objects_validate_strictly() -> None:
    kinds = []
    for doc in documents():
        kinds.append(doc["kind"])
        if doc["kind"] == "RayCluster":
            continue
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    assert kinds == ["RayCluster", "Deployment", "Service", "NetworkPolicy"]


def test_the_ray_clusters_pod_templates_validate_as_core_pod_templates() -> None:
    (cluster,) = [doc for doc in documents() if doc["kind"] == "RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["rayVersion"]
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert {"groupName", "template", "replicas", "rayStartParams"} <= set(group)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for name, template in pod_templates(cluster):
        wrapped = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": name},
            "template": template,
        }
        kubernetes_validate.validate(wrapped, KUBERNETES, strict=True)
    workers = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert workers["resources"]["limits"]["nvidia.com/gpu"] == "1"  # one actor per GPU


def test_the_omni_command_and_probes_agree_with_the_code(server_routes: set[str]) -> None:
    from omni_executor_http.server.cli import serve

    (deployment,) = [doc for doc in documents() if doc["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["omni"]
    subcommand, *args = container["args"]
    assert subcommand == "serve"
    context = serve.make_context("serve", list(args))  # raises on a flag omni serve lacks
    assert context.params["executor_class"] == "ray"
    assert "ray_address=ray://omni-ray-head-svc:10001" in context.params["executor_options"]
    port = context.params["port"]
    assert container["ports"][0]["containerPort"] == port
    routes = server_routes
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
        assert container[probe]["timeoutSeconds"] <= 1
