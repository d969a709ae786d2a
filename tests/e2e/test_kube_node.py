"""vmcp as users deploy it, on a real single-node cluster (scripts/kube-test-env.sh start --node).

Each test gets a namespace with the shipped runtime RBAC, an MCPGroup and a VirtualMCPServer,
backends that are pods of `vmcp-example-server` behind Services (registered as MCPServerEntry
objects by their ClusterIP URL), and the gateway as a Deployment of the `vmcp` image with the
ServiceAccount, in-cluster configuration (no kubeconfig: the pod's projected token and the
`kubernetes` Service), probes on /health and /readyz, and a Service (tests/e2e/kube_node.py).
The images are built from the release binaries under test (scripts/build-images.sh).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from harness import backend_is, connect, find_backend, phase_is, tool_names
from kube import Kube, condition, events_path, lease_path, mcpserverentry_path, pod_path
from kube_node import GATEWAY, GATEWAY_PORT, LEASE, POD_START, SERVICE_ACCOUNT, NodeCluster, container_pids

pytestmark = [pytest.mark.anyio]


@pytest.fixture
def cluster(request: pytest.FixtureRequest, node_kube: Kube, node_namespace: str, node_images: dict[str, str]) -> Iterator[NodeCluster]:
    cluster = NodeCluster(kube=node_kube, namespace=node_namespace, images=node_images).setup()
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
    cluster.kube.wait_for(lambda: cluster.routes(gateway_ip, GATEWAY_PORT), 30, "kube-proxy to route the gateway Service")
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


async def test_liveness_probe_restarts_a_hung_gateway(cluster: NodeCluster) -> None:
    """The gateway process frozen (SIGSTOP from the host): /health stops answering, the kubelet's
    liveness probe fails, it records an `Unhealthy` event and restarts the container, which
    comes back Ready."""
    cluster.add_backend("alpha")
    cluster.gateway()
    pod = cluster.ready_gateway_pod()
    name = pod["metadata"]["name"]

    for pid in container_pids(pod):
        os.kill(pid, signal.SIGSTOP)

    def liveness_failed() -> list[dict[str, Any]]:
        return [
            e
            for e in cluster.kube.items(events_path(cluster.namespace))
            if e["involvedObject"].get("name") == name and e.get("reason") == "Unhealthy" and "Liveness probe failed" in e.get("message", "")
        ]

    cluster.kube.wait_for(liveness_failed, 60, "a 'Liveness probe failed' event from the kubelet")

    def restarted_and_ready() -> bool:
        current = cluster.kube.get(pod_path(cluster.namespace, name))
        cond = condition(current, "Ready")
        status = current["status"]["containerStatuses"][0]
        return bool(status.get("restartCount", 0) >= 1 and cond and cond.get("status") == "True")

    cluster.kube.wait_for(restarted_and_ready, POD_START, "the container to be restarted and Ready again")
