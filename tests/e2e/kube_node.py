"""vmcp deployed the way users deploy it, on the single-node cluster of
scripts/kube-test-env.sh start --node: manifests and observations shared by
tests/e2e/test_kube_node.py and bench/node_bench.py.

NodeCluster(kube, namespace, images).setup() applies the shipped runtime RBAC
(deploy/rbac/vmcp-runtime.yaml), the MCPGroup and the VirtualMCPServer; add_backend() runs a pod
of `vmcp-example-server` behind a Service and registers it as an MCPServerEntry (by ClusterIP
URL); gateway() runs `vmcp serve` as a Deployment with the ServiceAccount, in-cluster
configuration (no kubeconfig), probes on /health and /readyz, and a Service.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from harness import REPO, base_gateway_config
from kube import (
    Kube,
    KubeError,
    condition,
    deployment_path,
    endpointslices_path,
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

    def setup(self) -> NodeCluster:
        """RBAC, group and VirtualMCPServer in the namespace."""
        self.kube.apply_yaml_file(RBAC_YAML, {"example": self.namespace})
        self.kube.create(mcpgroup_path(self.namespace), mcpgroup_manifest(self.namespace, GROUP))
        self.kube.create(vmcp_path(self.namespace), virtualmcpserver_manifest(self.namespace, NAME, GROUP))
        return self

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
                                    "livenessProbe": {
                                        "httpGet": {"path": "/health", "port": GATEWAY_PORT},
                                        "periodSeconds": 3,
                                        "timeoutSeconds": 1,
                                        "failureThreshold": 3,
                                        # A hung process gets no graceful drain.
                                        "terminationGracePeriodSeconds": 1,
                                    },
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

    def routes(self, ip: str, port: int) -> bool:
        """True once a TCP connection to ip:port is accepted. A Service's ClusterIP is programmed
        by kube-proxy asynchronously, some time after its EndpointSlice shows a ready endpoint;
        until then the connection is refused."""
        try:
            with socket.create_connection((ip, port), timeout=1.0):
                return True
        except OSError:
            return False

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


def container_cgroup(pod: dict[str, Any], controller: str) -> Path:
    """The cgroup (v1 hierarchy `controller`) of the pod's first container on this machine."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    for root, dirs, _files in os.walk(f"/sys/fs/cgroup/{controller}/kubepods"):
        if container_id in dirs:
            return Path(root, container_id)
    raise AssertionError(f"no {controller} cgroup for container {container_id}")


def container_pids(pod: dict[str, Any]) -> list[int]:
    """Host pids of the pod's first container, from its cgroup (the node runs on this machine)."""
    return [int(p) for p in (container_cgroup(pod, "pids") / "cgroup.procs").read_text().split()]
