"""vmcp-operator on the real single-node cluster (scripts/kube-test-env.sh start --node), installed
the way users install it: `kubectl apply --server-side -k` of a kustomize overlay whose only base
is deploy/ (it swaps in the images built from the binaries under test, imagePullPolicy Never).
The operator runs as its Deployment (two replicas, leader election, in-cluster config, its
shipped ServiceAccount and ClusterRole); the gateway Deployment it creates runs the `vmcp` image.

Checked: a backend pod registered as an MCPServerEntry, an MCPGroup and a VirtualMCPServer →
the operator's children → the gateway pod reports Ready with the backend into the CR;
vmcp-operator and vmcp-runtime own disjoint status fields; an MCP client reaches the backend's
tools through the gateway's Service; with the gateway's process frozen RuntimeReporting turns
False (ReportStale) within its bound and True again when it reports; scaled to zero and back,
the same with a new pod and the new generation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO, backend_is, connect, phase_is, tool_names
from kube import Kube, KubeEnv, condition, deployment_path, lease_path, mcpgroup_manifest, mcpgroup_path, virtualmcpserver_manifest, vmcp_path
from kube_node import GATEWAY_PORT, GROUP, NAME, POD_START, NodeCluster, container_pids
from operator_proc import managers_of

pytestmark = [pytest.mark.anyio]

OPERATOR_NAMESPACE = "vmcp-system"
FAST_CONFIG = {"operational": {"failureHandling": {"statusReportingInterval": "3s", "healthCheckInterval": "2s", "healthCheckTimeout": "1s"}}}


def kustomize_overlay(directory: Path, images: dict[str, str]) -> Path:
    """A kustomization whose base is deploy/, with the test images."""
    operator_image = images["vmcp-operator"]
    runtime_image = images["vmcp"]
    name, tag = operator_image.rsplit(":", 1)
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(REPO / "deploy", directory)],
        "images": [{"name": "ghcr.io/vmcp/vmcp-operator", "newName": name, "newTag": tag}],
        "patches": [
            {
                "target": {"kind": "Deployment", "name": "vmcp-operator"},
                "patch": yaml.safe_dump(
                    [
                        {"op": "replace", "path": "/spec/template/spec/containers/0/imagePullPolicy", "value": "Never"},
                        {"op": "replace", "path": "/spec/template/spec/containers/0/env/0", "value": {"name": "VMCP_RUNTIME_IMAGE", "value": runtime_image}},
                        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "VMCP_RUNTIME_IMAGE_PULL_POLICY", "value": "Never"}},
                        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "RUST_LOG", "value": "info,vmcp_operator=debug"}},
                    ]
                ),
            }
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    return directory


@pytest.fixture(scope="module")
def installed_operator(node_env: KubeEnv, node_kube: Kube, node_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    overlay = kustomize_overlay(tmp_path_factory.mktemp("overlay"), node_images)
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(node_env.kubeconfig), "apply", "--server-side", "--force-conflicts", "-k", str(overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"kubectl apply -k failed:\n{proc.stdout}\n{proc.stderr}"
    kube = node_kube
    deployment = deployment_path(OPERATOR_NAMESPACE, "vmcp-operator")
    kube.wait_object(deployment, lambda o: (o.get("status") or {}).get("availableReplicas") == 2, POD_START, "two operator replicas available")
    kube.wait_object(lease_path(OPERATOR_NAMESPACE, "vmcp-operator"), lambda o: o["spec"].get("holderIdentity"), 60, "an operator leader")
    yield kube


@pytest.fixture
def cluster(request: pytest.FixtureRequest, installed_operator: Kube, node_namespace: str, node_images: dict[str, str]) -> Iterator[NodeCluster]:
    cluster = NodeCluster(kube=installed_operator, namespace=node_namespace, images=node_images)
    yield cluster
    if any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call")):
        print(cluster.logs())
        print(operator_logs(installed_operator))


def operator_logs(kube: Kube) -> str:
    parts = []
    for pod in kube.items(f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods"):
        name = pod["metadata"]["name"]
        try:
            text = kube.request("GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{name}/log", params={"tailLines": 60})
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            text = f"(no log: {exc})"
        parts.append(f"--- operator pod {name}:\n{text}")
    return "\n".join(parts)


def tcp_answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def provision(cluster: NodeCluster, spec: dict[str, Any] | None = None) -> None:
    cluster.kube.create(mcpgroup_path(cluster.namespace), mcpgroup_manifest(cluster.namespace, GROUP))
    cluster.kube.create(vmcp_path(cluster.namespace), virtualmcpserver_manifest(cluster.namespace, NAME, GROUP, {"config": FAST_CONFIG, **(spec or {})}))


def reporting(status: str, reason: str | None = None):
    def check(obj: dict[str, Any]) -> bool:
        c = condition(obj, "RuntimeReporting")
        return bool(c) and c["status"] == status and (reason is None or c["reason"] == reason)

    return check


async def test_the_operator_provisions_a_gateway_that_really_runs(cluster: NodeCluster) -> None:
    cluster.add_backend("alpha")
    provision(cluster)
    obj = cluster.wait_status(phase_is("Ready", backend_is("alpha", "ready")), "the gateway pod to report Ready with alpha", timeout=POD_START)
    obj = cluster.kube.wait_object(cluster.vmcp, reporting("True", "Reporting"), POD_START, "RuntimeReporting True")
    obj = cluster.kube.wait_object(cluster.vmcp, lambda o: (condition(o, "DeploymentReady") or {}).get("status") == "True", POD_START, "DeploymentReady True")
    assert condition(obj, "Ready")["status"] == "True"
    pod = cluster.ready_gateway_pod()
    container = pod["spec"]["containers"][0]
    assert container["name"] == "vmcp" and container["image"] == cluster.images["vmcp"]
    assert pod["spec"]["serviceAccountName"] == f"{NAME}-vmcp"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    # Disjoint field ownership of the status (seed 003: runtime status appears in the CRD).
    managers = managers_of(obj, "status")
    ours, theirs = set(managers["vmcp-operator"]["f:status"]), set(managers["vmcp-runtime"]["f:status"])
    assert ours == {"f:url", "f:conditions"} and "f:phase" in theirs and "f:url" not in theirs
    # An MCP client reaches the backend's tools through the gateway's Service.
    service = cluster.kube.get(f"/api/v1/namespaces/{cluster.namespace}/services/vmcp-{NAME}")
    cluster.kube.wait_for(lambda: cluster.ready_endpoints(f"vmcp-{NAME}"), POD_START, "the gateway Service to have a ready endpoint")
    # A ready endpoint is in the API before kube-proxy has programmed the ClusterIP (CI failed
    # on that race): wait until the Service address answers TCP.
    cluster_ip = service["spec"]["clusterIP"]
    cluster.kube.wait_for(lambda: tcp_answers(cluster_ip, GATEWAY_PORT), POD_START, "the gateway's ClusterIP to accept connections")
    async with connect(f"http://{cluster_ip}:{GATEWAY_PORT}/mcp") as client:
        names = await tool_names(client)
    assert any(n.startswith("alpha") for n in names), names


async def test_runtime_reporting_follows_the_gateway_pods(cluster: NodeCluster) -> None:
    provision(cluster)
    cluster.kube.wait_object(cluster.vmcp, reporting("True"), POD_START, "RuntimeReporting True")
    # The runtime's process frozen (as hung or killed without a final flush): no more reports.
    pod = cluster.ready_gateway_pod()
    pids = container_pids(pod)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        # Bound: 2 x 3 s + 5 s = 11 s after the last report; the liveness probe needs 30 s.
        obj = cluster.kube.wait_object(cluster.vmcp, reporting("False", "ReportStale"), 30, "RuntimeReporting False (ReportStale)")
        assert condition(obj, "Ready") is not None, "the runtime's last Ready stays, the operator does not rewrite it"
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    cluster.kube.wait_object(cluster.vmcp, reporting("True", "Reporting"), POD_START, "RuntimeReporting True again")

    # Scaled to zero: no runtime at all; back to one: the new pod reports the new generation.
    cluster.kube.merge_patch(cluster.vmcp, {"spec": {"replicas": 0}})
    cluster.kube.wait_object(cluster.vmcp, reporting("False"), 60, "RuntimeReporting False with no pod")
    cluster.kube.merge_patch(cluster.vmcp, {"spec": {"replicas": 1}})
    obj = cluster.kube.wait_object(cluster.vmcp, reporting("True", "Reporting"), POD_START, "RuntimeReporting True again")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
