"""vmcp as users deploy it, on a real single-node cluster (scripts/kube-test-env.sh start --node).

Each test gets a namespace with the shipped runtime RBAC (deploy/rbac/vmcp-runtime.yaml), an
MCPGroup and a VirtualMCPServer, backends that are pods of `vmcp-example-server` behind
Services (registered as MCPServerEntry objects by their ClusterIP URL), and the gateway as a
Deployment of the `vmcp` image with the ServiceAccount, in-cluster configuration (no kubeconfig:
the pod's projected token and the `kubernetes` Service), probes on /health and /readyz, and a
Service. The images are built from the release binaries under test (scripts/build-images.sh).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO, backend_is, base_gateway_config, connect, find_backend, phase_is, tool_names
from kube import (
    Kube,
    KubeError,
    condition,
    deployment_path,
    endpointslices_path,
    lease_path,
    mcpgroup_manifest,
    mcpgroup_path,
    mcpserverentry_manifest,
    mcpserverentry_path,
    ns_path,
    pod_path,
    service_path,
    virtualmcpserver_manifest,
    vmcp_path,
)

pytestmark = [pytest.mark.anyio]

NAME = "example"
GROUP = "example-group"
SERVICE_ACCOUNT = "example-vmcp"
LEASE = "example-vmcp-status"
RBAC_YAML = REPO / "deploy" / "rbac" / "vmcp-runtime.yaml"
GATEWAY = "example-vmcp"
GATEWAY_PORT = 4483
BACKEND_PORT = 8080
# Pods start in a few seconds here; the deadlines leave room for a loaded 2-core machine.
POD_START = 90.0
SHOWS = 45.0


@dataclass
class NodeCluster:
    kube: Kube
    namespace: str
    images: dict[str, str]

    @property
    def vmcp(self) -> str:
        return vmcp_path(self.namespace, NAME)

    def wait_status(self, predicate: Any, what: str, timeout: float = SHOWS) -> dict[str, Any]:
        return self.kube.wait_object(self.vmcp, lambda o: predicate(o.get("status") or {}), timeout, what, interval=0.3)

    # --- objects ----------------------------------------------------------------------------

    def service(self, name: str, selector: dict[str, str], port: int) -> str:
        """A ClusterIP Service; its ClusterIP."""
        svc = self.kube.create(
            service_path(self.namespace),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"selector": selector, "ports": [{"name": "mcp", "port": port, "targetPort": port}]},
            },
        )
        return svc["spec"]["clusterIP"]

    def backend_pod(self, name: str, service_ip: str) -> dict[str, Any]:
        return self.kube.create(
            pod_path(self.namespace),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": self.namespace, "labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "server",
                            "image": self.images["vmcp-example-server"],
                            "imagePullPolicy": "Never",
                            "args": ["--name", name, "http", "--host", "0.0.0.0", "--port", str(BACKEND_PORT), "--allowed-host", service_ip],
                            "ports": [{"containerPort": BACKEND_PORT}],
                            "readinessProbe": {"tcpSocket": {"port": BACKEND_PORT}, "periodSeconds": 1},
                            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
                        }
                    ],
                },
            },
        )

    def add_backend(self, name: str) -> str:
        """Service + pod of the example server, and its MCPServerEntry; the Service IP."""
        ip = self.service(name, {"app": name}, BACKEND_PORT)
        self.backend_pod(name, ip)
        self.kube.create(
            mcpserverentry_path(self.namespace),
            mcpserverentry_manifest(self.namespace, name, f"http://{ip}:{BACKEND_PORT}/mcp", GROUP),
        )
        return ip

    def gateway(self, *, replicas: int = 1, drain_seconds: int = 5) -> str:
        """The gateway Service, config and Deployment; the Service's ClusterIP."""
        ip = self.service(GATEWAY, {"app.kubernetes.io/name": "vmcp", "app.kubernetes.io/instance": NAME}, GATEWAY_PORT)
        config = base_gateway_config([])
        config["name"] = NAME
        config["groupRef"] = GROUP
        config["server"]["allowedHosts"] = [ip]
        self.kube.create(
            ns_path(self.namespace, "configmaps"),
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{GATEWAY}-config", "namespace": self.namespace},
                "data": {"config.yaml": yaml.safe_dump(config, sort_keys=False)},
            },
        )
        labels = {"app.kubernetes.io/name": "vmcp", "app.kubernetes.io/instance": NAME}
        self.kube.create(
            deployment_path(self.namespace),
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": GATEWAY, "namespace": self.namespace, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": SERVICE_ACCOUNT,
                            "terminationGracePeriodSeconds": drain_seconds + 10,
                            "containers": [
                                {
                                    "name": "vmcp",
                                    "image": self.images["vmcp"],
                                    "imagePullPolicy": "Never",
                                    "args": [
                                        "serve",
                                        "--config",
                                        "/etc/vmcp/config.yaml",
                                        "--host",
                                        "0.0.0.0",
                                        "--port",
                                        str(GATEWAY_PORT),
                                        "--drain-seconds",
                                        str(drain_seconds),
                                    ],
                                    "env": [
                                        {"name": "VMCP_NAME", "value": NAME},
                                        {"name": "VMCP_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                        {"name": "VMCP_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                        {"name": "VMCP_STATUS_LEASE_SECONDS", "value": "10"},
                                        {"name": "RUST_LOG", "value": "info,vmcp_kube=debug"},
                                    ],
                                    "ports": [{"name": "mcp", "containerPort": GATEWAY_PORT}],
                                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": GATEWAY_PORT}, "periodSeconds": 1, "failureThreshold": 1},
                                    "livenessProbe": {"httpGet": {"path": "/health", "port": GATEWAY_PORT}, "periodSeconds": 5, "failureThreshold": 3},
                                    "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
                                    "volumeMounts": [{"name": "config", "mountPath": "/etc/vmcp", "readOnly": True}],
                                }
                            ],
                            "volumes": [{"name": "config", "configMap": {"name": f"{GATEWAY}-config"}}],
                        },
                    },
                },
            },
        )
        return ip

    # --- observations -----------------------------------------------------------------------

    def pods(self, label: str) -> list[dict[str, Any]]:
        return self.kube.items(pod_path(self.namespace), labelSelector=label)

    def gateway_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.pods(f"app.kubernetes.io/instance={NAME}") if not p["metadata"].get("deletionTimestamp")]

    def ready_gateway_pod(self, timeout: float = POD_START, other_than: str | None = None) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            for pod in self.gateway_pods():
                cond = condition(pod, "Ready")
                if pod["metadata"]["name"] != other_than and cond and cond.get("status") == "True":
                    return pod
            return None

        return self.kube.wait_for(ready, timeout, "a Ready gateway pod", interval=0.3)

    def ready_endpoints(self, service: str) -> list[str]:
        """Addresses of the Service's EndpointSlices that are ready."""
        out: list[str] = []
        for eps in self.kube.items(endpointslices_path(self.namespace), labelSelector=f"kubernetes.io/service-name={service}"):
            for ep in eps.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready"):
                    out.extend(ep.get("addresses") or [])
        return out

    def logs(self) -> str:
        """Logs of every container in the namespace (through the API server and the kubelet)."""
        parts = []
        for pod in self.kube.items(pod_path(self.namespace)):
            name = pod["metadata"]["name"]
            try:
                text = self.kube.request("GET", pod_path(self.namespace, name) + "/log", params={"tailLines": 40})
            except KubeError as exc:
                text = f"(no log: {exc})"
            parts.append(f"--- pod {name} ({(pod.get('status') or {}).get('phase')}):\n{text}")
        return "\n".join(parts)


def container_pids(pod: dict[str, Any]) -> list[int]:
    """Host pids of the pod's first container, from its cgroup (the node runs on this machine)."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    for root, dirs, _files in os.walk("/sys/fs/cgroup/pids/kubepods"):
        if container_id in dirs:
            procs = Path(root, container_id, "cgroup.procs").read_text().split()
            return [int(p) for p in procs]
    raise AssertionError(f"no cgroup for container {container_id}")


@pytest.fixture
def cluster(request: pytest.FixtureRequest, node_kube: Kube, node_namespace: str, node_images: dict[str, str]) -> Any:
    kube = node_kube
    kube.apply_yaml_file(RBAC_YAML, {"example": node_namespace})
    kube.create(mcpgroup_path(node_namespace), mcpgroup_manifest(node_namespace, GROUP))
    kube.create(vmcp_path(node_namespace), virtualmcpserver_manifest(node_namespace, NAME, GROUP))
    cluster = NodeCluster(kube=kube, namespace=node_namespace, images=node_images)
    yield cluster
    if any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call")):
        print(cluster.logs())


async def test_gateway_pod_reports_status_through_in_cluster_config(cluster: NodeCluster) -> None:
    """Backend pods behind Services as MCPServerEntry objects, the gateway as a Deployment with the
    shipped ServiceAccount and in-cluster config: the CR shows Ready with both backends, written
    by the pod, and MCP clients reach both backends' tools through the gateway's Service."""
    cluster.add_backend("alpha")
    cluster.add_backend("beta")
    gateway_ip = cluster.gateway()

    obj = cluster.wait_status(
        phase_is("Ready", backend_is("alpha", "ready"), backend_is("beta", "ready")), "the CR to show Ready with both backends", timeout=POD_START
    )
    assert obj["status"]["backendCount"] == 2
    assert condition(obj, "Ready")["status"] == "True"
    pod = cluster.ready_gateway_pod()
    # The status Lease is held by the pod (its identity starts with the pod name).
    lease = cluster.kube.get(lease_path(cluster.namespace, LEASE))
    assert lease["spec"]["holderIdentity"].startswith(pod["metadata"]["name"] + "-"), lease["spec"]
    # No kubeconfig in the pod: the API server was reached through the `kubernetes` Service.
    spec = pod["spec"]["containers"][0]
    assert "KUBECONFIG" not in {e["name"] for e in spec.get("env") or []}
    assert pod["spec"]["serviceAccountName"] == SERVICE_ACCOUNT

    cluster.kube.wait_for(lambda: cluster.ready_endpoints(GATEWAY), POD_START, "the gateway Service to have a ready endpoint")
    async with connect(f"http://{gateway_ip}:{GATEWAY_PORT}/mcp") as client:
        names = await tool_names(client)
    assert any(n.startswith("alpha") for n in names), names
    assert any(n.startswith("beta") for n in names), names


async def test_backend_pod_deleted_degrades_and_recovers(cluster: NodeCluster) -> None:
    """`kubectl delete pod` of a backend: Degraded with it unavailable; the pod created again
    (new pod IP, same Service): Ready again."""
    cluster.add_backend("alpha")
    beta_ip = cluster.add_backend("beta")
    cluster.gateway()
    cluster.wait_status(phase_is("Ready", backend_is("alpha", "ready"), backend_is("beta", "ready")), "Ready with both backends", timeout=POD_START)

    cluster.kube.delete(pod_path(cluster.namespace, "beta"), gracePeriodSeconds=0)
    obj = cluster.wait_status(phase_is("Degraded", backend_is("beta", "unavailable")), "the CR to show beta unavailable")
    assert find_backend(obj["status"], "alpha")["status"] == "ready"

    cluster.kube.wait_for(lambda: not cluster.kube.exists(pod_path(cluster.namespace, "beta")), 60, "the old beta pod to be gone")
    cluster.backend_pod("beta", beta_ip)
    obj = cluster.wait_status(phase_is("Ready", backend_is("beta", "ready")), "the CR to return to Ready", timeout=POD_START)
    assert condition(obj, "Ready")["status"] == "True"
    assert find_backend(obj["status"], "alpha")["status"] == "ready"


async def test_gateway_pod_killed_replacement_takes_over_status(cluster: NodeCluster) -> None:
    """The gateway pod deleted: the Deployment's replacement takes the status Lease over and
    keeps the CR up to date (a backend removed afterwards shows in the status)."""
    cluster.add_backend("alpha")
    cluster.add_backend("beta")
    cluster.gateway()
    cluster.wait_status(phase_is("Ready", backend_is("alpha", "ready"), backend_is("beta", "ready")), "Ready with both backends", timeout=POD_START)
    first = cluster.ready_gateway_pod()["metadata"]["name"]

    cluster.kube.delete(pod_path(cluster.namespace, first), gracePeriodSeconds=0)
    second = cluster.ready_gateway_pod(other_than=first)["metadata"]["name"]
    assert second != first

    def held_by_second(lease: dict[str, Any]) -> bool:
        return (lease.get("spec") or {}).get("holderIdentity", "").startswith(second + "-")

    lease = cluster.kube.wait_object(lease_path(cluster.namespace, LEASE), held_by_second, 60, f"the Lease to be taken over by {second}", interval=0.3)
    assert lease["spec"]["holderIdentity"].startswith(second)

    # Only a live writer can report this change.
    cluster.kube.delete(mcpserverentry_path(cluster.namespace, "beta"))
    obj = cluster.wait_status(lambda s: find_backend(s, "beta") is None and find_backend(s, "alpha") is not None, "beta to leave the status")
    assert obj["status"]["backendCount"] == 1


async def test_readiness_probe_takes_a_draining_pod_out_of_the_service(cluster: NodeCluster) -> None:
    """SIGTERM to the gateway process (the pod is not deleted): /readyz answers 503 while it
    drains, the kubelet's readiness probe marks the pod not Ready and the Service's endpoints
    drop it; after the drain the container exits, the kubelet restarts it, and it is Ready and
    back in the Service again."""
    cluster.add_backend("alpha")
    cluster.gateway(drain_seconds=8)
    pod = cluster.ready_gateway_pod()
    name = pod["metadata"]["name"]
    pod_ip = pod["status"]["podIP"]
    cluster.kube.wait_for(lambda: pod_ip in cluster.ready_endpoints(GATEWAY), POD_START, "the pod in the Service's ready endpoints")

    for pid in container_pids(pod):
        os.kill(pid, signal.SIGTERM)
    signalled = time.monotonic()

    def not_ready() -> bool:
        current = cluster.kube.get(pod_path(cluster.namespace, name))
        cond = condition(current, "Ready")
        return bool(cond and cond.get("status") == "False" and not current["metadata"].get("deletionTimestamp"))

    cluster.kube.wait_for(not_ready, 20, "the kubelet to mark the draining pod not Ready")
    cluster.kube.wait_for(lambda: pod_ip not in cluster.ready_endpoints(GATEWAY), 20, "the draining pod to leave the Service's ready endpoints")
    assert time.monotonic() - signalled < 20

    def restarted_and_ready() -> bool:
        current = cluster.kube.get(pod_path(cluster.namespace, name))
        cond = condition(current, "Ready")
        restarts = current["status"]["containerStatuses"][0].get("restartCount", 0)
        return bool(restarts >= 1 and cond and cond.get("status") == "True")

    cluster.kube.wait_for(restarted_and_ready, POD_START, "the container to be restarted and Ready again")
    cluster.kube.wait_for(lambda: pod_ip in cluster.ready_endpoints(GATEWAY), 30, "the pod back in the Service's ready endpoints")
