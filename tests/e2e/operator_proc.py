"""Running `vmcp-operator` as a local process against the test API server, and reading it.

    op = OperatorProc.start(log_dir, kubeconfig, namespace="t-abc")   # --leader-elect=false
    op.wait_ready()
    op.metric("vmcp_operator_api_writes_total")          # sum over all label sets
    op.metric("vmcp_operator_reconciles_total", kind="VirtualMCPServer")
    op.stop()

The operator binary is $VMCP_OPERATOR_BIN, else `vmcp-operator` next to the gateway binary.
Also here: the gateway the operator tests provision (`demo` of the group `tools`), its children's
paths, and waits on its conditions.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx

from harness import LOOPBACK, Proc, default_vmcp_bin, free_port, wait_until
from kube import (
    Kube,
    condition,
    deployment_path,
    mcpgroup_manifest,
    mcpgroup_path,
    ns_path,
    role_path,
    rolebinding_path,
    service_path,
    serviceaccount_path,
    virtualmcpserver_manifest,
    vmcp_path,
)

# The image the operator writes into Deployments in the API-server-only tests (no node pulls it).
TEST_RUNTIME_IMAGE = "localhost/vmcp/vmcp:e2e"

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$")


def default_operator_bin() -> Path:
    explicit = os.environ.get("VMCP_OPERATOR_BIN")
    return Path(explicit) if explicit else default_vmcp_bin().parent / "vmcp-operator"


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample of an OpenMetrics text."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        samples.append((match["name"], labels, float(match["value"])))
    return samples


class OperatorProc(Proc):
    """One `vmcp-operator` process with its health/metrics endpoint on a free loopback port."""

    def __init__(self, log_dir: Path, kubeconfig: Path, *, namespace: str | None, args: list[str], label: str) -> None:
        binary = default_operator_bin()
        assert binary.is_file() and os.access(binary, os.X_OK), (
            f"operator binary not found: {binary} (cargo build --release -p vmcp-operator, or set VMCP_OPERATOR_BIN)"
        )
        self.health_port = free_port()
        argv = [str(binary), "--health-addr", f"{LOOPBACK}:{self.health_port}", "--runtime-image", TEST_RUNTIME_IMAGE]
        if namespace:
            argv += ["--namespace", namespace]
        super().__init__(label, argv + args, log_dir, env={"KUBECONFIG": str(kubeconfig), "RUST_LOG": "info,vmcp_operator=debug"})

    @classmethod
    def start_new(
        cls,
        log_dir: Path,
        kubeconfig: Path,
        *,
        namespace: str | None,
        leader_elect: bool = False,
        args: list[str] | None = None,
        label: str = "operator",
    ) -> OperatorProc:
        extra = list(args or [])
        if not leader_elect:
            extra += ["--leader-elect", "false"]
        proc = cls(log_dir, kubeconfig, namespace=namespace, args=extra, label=label)
        proc.start()
        return proc

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://{LOOPBACK}:{self.health_port}{path}", timeout=5.0)

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            self.check_alive()
            try:
                return self.get("/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, what=f"{self.label} /readyz")

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        self.check_alive()
        resp = self.get("/metrics")
        assert resp.status_code == 200, f"/metrics answered {resp.status_code}"
        return parse_metrics(resp.text)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
        return sum(v for n, ls, v in self.samples() if n == name and all(ls.get(k) == want for k, want in labels.items()))

    def writes(self) -> float:
        return self.metric("vmcp_operator_api_writes_total")

    def reconciles(self, kind: str = "VirtualMCPServer") -> float:
        return self.metric("vmcp_operator_reconciles_total", kind=kind)


def managers_of(obj: dict[str, Any], subresource: str | None = None) -> dict[str, dict[str, Any]]:
    """managedFields entries by manager (only those of `subresource`, '' for the main resource)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        if (entry.get("subresource") or "") == (subresource or ""):
            out[entry["manager"]] = entry.get("fieldsV1") or {}
    return out


# ---------------------------------------------------------------------------
# the gateway under test

NAME = "demo"
GROUP = "tools"
CONFIG_HASH = "vmcp.toolhive.stacklok.dev/config-hash"


def configmap_path(namespace: str, name: str | None = None) -> str:
    return ns_path(namespace, "configmaps", name)


def children_paths(namespace: str, name: str = NAME) -> dict[str, str]:
    return {
        "ServiceAccount": serviceaccount_path(namespace, f"{name}-vmcp"),
        "Role": role_path(namespace, f"{name}-vmcp"),
        "RoleBinding": rolebinding_path(namespace, f"{name}-vmcp"),
        "Service": service_path(namespace, f"vmcp-{name}"),
        "ConfigMap": configmap_path(namespace, f"{name}-vmcp-config"),
        "Deployment": deployment_path(namespace, name),
    }


def create_gateway(kube: Kube, namespace: str, *, group: bool = True, spec: dict[str, Any] | None = None) -> None:
    if group:
        kube.create(mcpgroup_path(namespace), mcpgroup_manifest(namespace, GROUP))
    kube.create(vmcp_path(namespace), virtualmcpserver_manifest(namespace, NAME, GROUP, spec))


def wait_children(kube: Kube, namespace: str, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    return {kind: kube.wait_object(path, lambda o: o, timeout, f"{kind} created") for kind, path in children_paths(namespace).items()}


def wait_condition(kube: Kube, namespace: str, type_: str, status: str, reason: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    def holds(obj: dict[str, Any]) -> bool:
        c = condition(obj, type_)
        return bool(c) and c["status"] == status and (reason is None or c["reason"] == reason)

    what = f"{type_}={status}" + (f" ({reason})" if reason else "")
    return kube.wait_object(vmcp_path(namespace, NAME), holds, timeout, what)
