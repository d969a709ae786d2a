"""The runtime in Kubernetes mode, against a real kube-apiserver + etcd.

Each test gets a fresh namespace with the shipped RBAC (deploy/rbac/vmcp-runtime.yaml: the
VirtualMCPServer `example`, its group `example-group`, the ServiceAccount `example-vmcp`), real
MCP backends (vmcp-example-server over Streamable HTTP) registered as `MCPServerEntry` objects,
and `vmcp serve` started as a process with VMCP_NAME/VMCP_NAMESPACE and a kubeconfig holding a
real token of that ServiceAccount, so every API call of the runtime goes through RBAC.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from harness import (
    REPO,
    ExampleHttp,
    Gateway,
    Launcher,
    await_until,
    backend_is,
    base_gateway_config,
    connect,
    find_backend,
    phase_is,
    tool_names,
)
from kube import (
    API_VERSION,
    Kube,
    KubeError,
    condition,
    events_path,
    lease_path,
    mcpgroup_path,
    mcpserver_path,
    mcpserverentry_path,
    vmcp_path,
)
from mcp import types

pytestmark = [pytest.mark.kube, pytest.mark.anyio]

NAME = "example"
GROUP = "example-group"
SERVICE_ACCOUNT = "example-vmcp"
LEASE = "example-vmcp-status"
RBAC_YAML = REPO / "deploy" / "rbac" / "vmcp-runtime.yaml"
RUNTIME_MANAGER = "vmcp-runtime"
OPERATOR_MANAGER = "toolhive-operator"

# Probes every 2 s, unhealthy after 2 failures (base_gateway_config): a death shows after
# about 4 s idle; the deadlines leave room for a loaded 2-core machine.
SHOWS = 20.0


@dataclass
class Cluster:
    """One test's namespace, with the runtime's RBAC, group and VirtualMCPServer."""

    kube: Kube
    namespace: str
    launcher: Launcher
    kubeconfig: Path
    backends: dict[str, ExampleHttp] = field(default_factory=dict)

    @property
    def vmcp(self) -> str:
        return vmcp_path(self.namespace, NAME)

    def get(self) -> dict[str, Any]:
        return self.kube.get(self.vmcp)

    def add_entry(self, name: str, *, start: bool = True) -> ExampleHttp:
        backend = self.backends.get(name)
        if backend is None:
            backend = self.launcher.example_http(name, wait=start)
            self.backends[name] = backend
        self.kube.create(
            mcpserverentry_path(self.namespace),
            {
                "apiVersion": API_VERSION,
                "kind": "MCPServerEntry",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"remoteUrl": backend.url, "transport": "streamable-http", "groupRef": {"name": GROUP}},
            },
        )
        return backend

    def delete_entry(self, name: str) -> None:
        self.kube.delete(mcpserverentry_path(self.namespace, name))

    def runtime(self, *, label: str = "vmcp", lease_seconds: int = 15, ready: bool = True, heartbeat: str | None = None) -> Gateway:
        config = base_gateway_config([])
        config["name"] = NAME
        config["groupRef"] = GROUP
        if heartbeat is not None:
            config["operational"]["failureHandling"]["statusReportingInterval"] = heartbeat
        return self.launcher.gateway(
            config,
            ready=ready,
            label=label,
            env={
                "VMCP_NAME": NAME,
                "VMCP_NAMESPACE": self.namespace,
                "KUBECONFIG": str(self.kubeconfig),
                "VMCP_STATUS_LEASE_SECONDS": str(lease_seconds),
                "RUST_LOG": "info,vmcp_kube=debug",
            },
        )

    def wait_status(self, predicate: Any, what: str, timeout: float = SHOWS) -> dict[str, Any]:
        return self.kube.wait_object(self.vmcp, lambda o: predicate(o.get("status") or {}), timeout, what, interval=0.2)


def status_managers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """managedFields entries of the status subresource, by manager."""
    return {
        m["manager"]: m.get("fieldsV1", {}).get("f:status", {})
        for m in obj["metadata"].get("managedFields") or []
        if m.get("subresource") == "status"
    }


@pytest.fixture
def cluster(kube: Kube, namespace: str, launcher: Launcher, tmp_path: Path) -> Cluster:
    kube.apply_yaml_file(RBAC_YAML, {"example": namespace})
    kube.create(
        mcpgroup_path(namespace),
        {"apiVersion": API_VERSION, "kind": "MCPGroup", "metadata": {"name": GROUP, "namespace": namespace}, "spec": {"description": "e2e"}},
    )
    kube.create(
        vmcp_path(namespace),
        {
            "apiVersion": API_VERSION,
            "kind": "VirtualMCPServer",
            "metadata": {"name": NAME, "namespace": namespace},
            "spec": {"incomingAuth": {"type": "anonymous"}, "groupRef": {"name": GROUP}},
        },
    )
    token = kube.sa_token(namespace, SERVICE_ACCOUNT)
    kubeconfig = kube.write_kubeconfig(tmp_path / "runtime.kubeconfig", token=token, namespace=namespace)
    return Cluster(kube=kube, namespace=namespace, launcher=launcher, kubeconfig=kubeconfig)


def test_status_tells_the_truth_about_backends(cluster: Cluster) -> None:
    """Ready with two healthy entries; one killed → Degraded with it unavailable (and an Event);
    restarted → Ready again. Written by the runtime's field manager only."""
    cluster.add_entry("alpha")
    beta = cluster.add_entry("beta")
    gateway = cluster.runtime()

    obj = cluster.wait_status(
        phase_is("Ready", backend_is("alpha", "ready"), backend_is("beta", "ready")), "the CR to show Ready with both backends"
    )
    status = obj["status"]
    assert status["backendCount"] == 2
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "BackendsDiscovered")["status"] == "True"
    assert "url" not in status, "the runtime must not write the operator's url"
    assert RUNTIME_MANAGER in status_managers(obj), obj["metadata"].get("managedFields")
    ready_since = condition(obj, "Ready")["lastTransitionTime"]

    beta.kill_hard()
    killed = time.monotonic()
    obj = cluster.wait_status(phase_is("Degraded", backend_is("beta", "unavailable")), "the CR to show beta unavailable")
    took = time.monotonic() - killed
    assert find_backend(obj["status"], "alpha")["status"] == "ready"
    assert "beta" in obj["status"]["message"]
    assert "127.0.0.1" not in obj["status"]["message"], "no internal addresses in the message"
    assert took < SHOWS
    gateway.check_alive()
    assert gateway.get("/readyz").status_code == 200, "Degraded is not down"

    events = cluster.kube.wait_for(
        lambda: [
            e
            for e in cluster.kube.items(events_path(cluster.namespace))
            if e["involvedObject"].get("name") == NAME and e.get("reason") == "PhaseDegraded"
        ],
        10,
        "a PhaseDegraded event",
    )
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["kind"] == "VirtualMCPServer"
    assert events[0]["involvedObject"].get("uid") == obj["metadata"]["uid"]

    beta.start()
    beta.wait_listening()
    obj = cluster.wait_status(phase_is("Ready", backend_is("beta", "ready")), "the CR to return to Ready", timeout=40)
    ready = condition(obj, "Ready")
    assert ready["status"] == "True"
    assert ready["lastTransitionTime"] >= ready_since


def test_no_write_when_nothing_changes(cluster: Cluster) -> None:
    """A stable runtime does not rewrite its status between heartbeats (30 s by default), and
    its idle discovery watches stay up (a 15 s request timeout used to cut them)."""
    cluster.add_entry("alpha")
    gateway = cluster.runtime()
    obj = cluster.wait_status(phase_is("Ready", backend_is("alpha", "ready")), "Ready")
    # Watch the resourceVersion over ten probe intervals.
    version = obj["metadata"]["resourceVersion"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        current = cluster.get()
        assert current["metadata"]["resourceVersion"] == version, "the status was rewritten without a change"
        assert "watching the group's members failed" not in gateway.log_tail(400), gateway.log_tail(40)
        time.sleep(1)


def test_operator_and_runtime_own_their_own_fields(cluster: Cluster) -> None:
    """Another field manager (standing in for the operator) writes `url` and its conditions while
    the runtime reports; neither clobbers the other, and managedFields says who owns what."""
    cluster.add_entry("alpha")
    beta = cluster.add_entry("beta")
    cluster.runtime()
    cluster.wait_status(phase_is("Ready", backend_is("beta", "ready")), "Ready")

    operator_status = {
        "apiVersion": API_VERSION,
        "kind": "VirtualMCPServer",
        "metadata": {"name": NAME, "namespace": cluster.namespace},
        "status": {
            "url": "http://example-vmcp.example.svc:4483",
            "conditions": [
                {
                    "type": "DeploymentReady",
                    "status": "True",
                    "reason": "DeploymentAvailable",
                    "message": "1 of 1 replicas available",
                    "lastTransitionTime": "2026-11-21T00:00:00Z",
                }
            ],
        },
    }
    cluster.kube.apply_status(cluster.vmcp, operator_status, field_manager=OPERATOR_MANAGER)

    # The runtime reports a change after the operator's write.
    beta.kill_hard()
    obj = cluster.wait_status(phase_is("Degraded", backend_is("beta", "unavailable")), "Degraded")
    status = obj["status"]
    assert status["url"] == "http://example-vmcp.example.svc:4483", "the runtime clobbered the operator's url"
    assert condition(obj, "DeploymentReady") is not None, "the runtime removed the operator's condition"
    assert condition(obj, "Degraded")["status"] == "True"
    assert condition(obj, "Ready")["status"] == "True", "Degraded is not down: Ready stays True"

    managers = status_managers(obj)
    runtime, operator = managers[RUNTIME_MANAGER], managers[OPERATOR_MANAGER]
    assert "f:phase" in runtime and "f:discoveredBackends" in runtime
    assert "f:url" in operator and "f:url" not in runtime
    runtime_conditions = {k for k in runtime.get("f:conditions", {}) if k.startswith("k:")}
    operator_conditions = {k for k in operator.get("f:conditions", {}) if k.startswith("k:")}
    assert any('"Ready"' in k for k in runtime_conditions), runtime_conditions
    assert any('"DeploymentReady"' in k for k in operator_conditions), operator_conditions
    assert not any('"DeploymentReady"' in k for k in runtime_conditions)
    assert not any('"Ready"' in k for k in operator_conditions)

    # And the operator's next write leaves the runtime's fields alone.
    operator_status["status"]["url"] = "http://example-vmcp.example.svc:8080"
    cluster.kube.apply_status(cluster.vmcp, operator_status, field_manager=OPERATOR_MANAGER)
    obj = cluster.get()
    assert obj["status"]["phase"] == "Degraded"
    assert find_backend(obj["status"], "beta")["status"] == "unavailable"
    assert condition(obj, "Ready") is not None


def test_rbac_lets_the_runtime_write_only_its_own_status(cluster: Cluster) -> None:
    """Impersonating the runtime's ServiceAccount with the shipped Role."""
    kube, ns = cluster.kube, cluster.namespace
    kube.create(
        vmcp_path(ns),
        {"apiVersion": API_VERSION, "kind": "VirtualMCPServer", "metadata": {"name": "other", "namespace": ns}, "spec": {"incomingAuth": {"type": "anonymous"}, "groupRef": {"name": GROUP}}},
    )
    runtime = kube.impersonate_sa(ns, SERVICE_ACCOUNT)
    status = {"phase": "Ready", "message": "rbac test", "backendCount": 0}

    def body(name: str) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "VirtualMCPServer", "metadata": {"name": name, "namespace": ns}, "status": status}

    written = runtime.apply_status(vmcp_path(ns, NAME), body(NAME), field_manager=RUNTIME_MANAGER)
    assert written["status"]["message"] == "rbac test"

    with pytest.raises(KubeError) as denied:
        runtime.apply_status(vmcp_path(ns, "other"), body("other"), field_manager=RUNTIME_MANAGER)
    assert denied.value.status == 403

    spec_change = {"apiVersion": API_VERSION, "kind": "VirtualMCPServer", "metadata": {"name": NAME, "namespace": ns}, "spec": {"replicas": 3}}
    with pytest.raises(KubeError) as denied:
        runtime.apply(vmcp_path(ns, NAME), spec_change, field_manager=RUNTIME_MANAGER)
    assert denied.value.status == 403

    with pytest.raises(KubeError) as denied:
        runtime.create(
            mcpserverentry_path(ns),
            {"apiVersion": API_VERSION, "kind": "MCPServerEntry", "metadata": {"name": "x", "namespace": ns},
             "spec": {"remoteUrl": "http://x/mcp", "transport": "sse", "groupRef": {"name": GROUP}}},
        )
    assert denied.value.status == 403

    group = "toolhive.stacklok.dev"
    assert runtime.can_i("list", "mcpserverentries", ns, group=group)
    assert runtime.can_i("watch", "mcpservers", ns, group=group)
    assert runtime.can_i("create", "events", ns)
    assert runtime.can_i("update", "leases", ns, name=LEASE, group="coordination.k8s.io")
    assert not runtime.can_i("update", "leases", ns, name="someone-elses-lease", group="coordination.k8s.io")
    assert not runtime.can_i("get", "secrets", ns)
    assert not runtime.can_i("delete", "virtualmcpservers", ns, name=NAME, group=group)
    assert not runtime.can_i("list", "mcpserverentries", "default", group=group), "nothing outside its namespace"


def test_reporter_recovers_from_an_api_server_restart(cluster: Cluster, kube_restart: Any) -> None:
    """kube-apiserver stops; a backend dies meanwhile; when the API server is back the latest
    status lands. The runtime keeps serving throughout."""
    cluster.add_entry("alpha")
    beta = cluster.add_entry("beta")
    gateway = cluster.runtime()
    cluster.wait_status(phase_is("Ready", backend_is("beta", "ready")), "Ready")

    kube_restart.stop_apiserver()
    try:
        beta.kill_hard()
        # The gateway itself notices (its own /status) while the API is down.
        deadline = time.monotonic() + SHOWS
        while (gateway.backend_status("beta") or {}).get("status") != "unavailable":
            assert time.monotonic() < deadline, "the gateway never saw beta die"
            gateway.check_alive()
            time.sleep(0.2)
        assert gateway.get("/readyz").status_code == 200
    finally:
        kube_restart.start_apiserver()
    obj = cluster.wait_status(phase_is("Degraded", backend_is("beta", "unavailable")), "the latest status after the restart", timeout=60)
    assert find_backend(obj["status"], "alpha")["status"] == "ready"
    gateway.check_alive()


def test_two_replicas_one_writer_and_failover(cluster: Cluster) -> None:
    """Two runtimes for one VirtualMCPServer: the Lease names one writer; SIGKILL it and the other
    takes over within the lease duration and reports the next change."""
    cluster.add_entry("alpha")
    beta = cluster.add_entry("beta")
    lease_seconds = 6
    first = cluster.runtime(label="replica-a", lease_seconds=lease_seconds)
    second = cluster.runtime(label="replica-b", lease_seconds=lease_seconds)
    cluster.wait_status(phase_is("Ready", backend_is("beta", "ready")), "Ready")

    path = lease_path(cluster.namespace, LEASE)
    lease = cluster.kube.wait_object(path, lambda o: o["spec"].get("holderIdentity"), 20, "a Lease holder")
    holder = lease["spec"]["holderIdentity"]
    by_pid = {first.pid: first, second.pid: second}
    writer = next((g for pid, g in by_pid.items() if f"-{pid}-" in holder), None)
    assert writer is not None, f"the holder {holder!r} is neither replica ({list(by_pid)})"
    standby = second if writer is first else first
    assert f"-{standby.pid}-" not in holder

    writer.signal(signal.SIGKILL)
    killed = time.monotonic()
    lease = cluster.kube.wait_object(
        path,
        lambda o: f"-{standby.pid}-" in (o["spec"].get("holderIdentity") or ""),
        lease_seconds + 10,
        "the standby to take the Lease",
        interval=0.2,
    )
    took_over = time.monotonic() - killed
    assert took_over <= lease_seconds + 4, f"fail-over took {took_over:.1f}s with a {lease_seconds}s lease"
    assert lease["spec"]["leaseTransitions"] >= 1

    # The new writer reports the next change.
    beta.kill_hard()
    cluster.wait_status(phase_is("Degraded", backend_is("beta", "unavailable")), "the new writer to report beta's death")
    standby.check_alive()


def test_clean_shutdown_hands_over_at_once(cluster: Cluster) -> None:
    """SIGTERM: the final status is written, then the Lease released, so the standby takes over
    at its next look instead of waiting for expiry."""
    cluster.add_entry("alpha")
    lease_seconds = 30
    first = cluster.runtime(label="replica-a", lease_seconds=lease_seconds)
    path = lease_path(cluster.namespace, LEASE)
    cluster.kube.wait_object(path, lambda o: f"-{first.pid}-" in (o["spec"].get("holderIdentity") or ""), 20, "replica-a to hold the Lease")
    second = cluster.runtime(label="replica-b", lease_seconds=lease_seconds)
    cluster.wait_status(phase_is("Ready"), "Ready")

    first.signal(signal.SIGTERM)
    stopped = time.monotonic()
    cluster.kube.wait_object(
        path, lambda o: f"-{second.pid}-" in (o["spec"].get("holderIdentity") or ""), 15, "replica-b to take the released Lease", interval=0.2
    )
    assert time.monotonic() - stopped < lease_seconds / 2, "the Lease was not released on shutdown"
    assert first.proc is not None and first.proc.wait(timeout=20) == 0


async def test_entries_come_and_go_live(cluster: Cluster) -> None:
    """Adding and deleting an MCPServerEntry changes the catalogue without a restart; a
    connected client hears tools/list_changed."""
    cluster.add_entry("alpha")
    gateway = cluster.runtime()
    changes: list[float] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changes.append(time.monotonic())

    async with connect(gateway.url, message_handler=on_message) as client:
        names = await tool_names(client)
        assert any(n.startswith("alpha_") for n in names), names
        assert not any(n.startswith("gamma_") for n in names)

        seen = len(changes)
        cluster.add_entry("gamma")
        await await_until(lambda: len(changes) > seen, 20, what="tools/list_changed after adding gamma")

        async def has_gamma() -> bool:
            return any(n.startswith("gamma_") for n in await tool_names(client))

        await await_until(has_gamma, 20, what="gamma's tools in the catalogue")
        result = await client.call_tool("gamma_echo", {"text": "hi"})
        assert not result.is_error

        seen = len(changes)
        cluster.delete_entry("alpha")
        await await_until(lambda: len(changes) > seen, 20, what="tools/list_changed after deleting alpha")

        async def alpha_gone() -> bool:
            return not any(n.startswith("alpha_") for n in await tool_names(client))

        await await_until(alpha_gone, 20, what="alpha's tools to leave the catalogue")
    obj = cluster.wait_status(
        lambda s: s.get("backendCount") == 1 and find_backend(s, "gamma") and not find_backend(s, "alpha"),
        "the CR to list gamma only",
    )
    assert obj["status"]["phase"] == "Ready"
    gateway.check_alive()


def test_mcp_servers_join_when_serving_and_leave_when_stopped(cluster: Cluster) -> None:
    """An MCPServer becomes a backend once the operator publishes its status.url (transport from
    proxyMode), and leaves when it is Stopped; one outside the group is ignored."""
    cluster.add_entry("alpha")
    served = cluster.launcher.example_http("delta")
    gateway = cluster.runtime()
    cluster.wait_status(phase_is("Ready", backend_is("alpha", "ready")), "Ready with alpha")
    kube, ns = cluster.kube, cluster.namespace

    def server(name: str, group: str) -> None:
        kube.create(
            mcpserver_path(ns),
            {"apiVersion": API_VERSION, "kind": "MCPServer", "metadata": {"name": name, "namespace": ns},
             "spec": {"image": "example", "transport": "stdio", "proxyMode": "streamable-http", "groupRef": {"name": group}}},
        )

    def publish(name: str, phase: str, url: str | None) -> None:
        status: dict[str, Any] = {"phase": phase}
        if url:
            status["url"] = url
        kube.apply_status(
            mcpserver_path(ns, name),
            {"apiVersion": API_VERSION, "kind": "MCPServer", "metadata": {"name": name, "namespace": ns}, "status": status},
            field_manager=OPERATOR_MANAGER,
        )

    server("delta", GROUP)
    server("outsider", "another-group")
    publish("outsider", "Ready", served.url)
    publish("delta", "Pending", None)  # no URL yet: not a backend
    publish("delta", "Ready", served.url)
    obj = cluster.wait_status(phase_is("Ready", backend_is("delta", "ready")), "delta to join")
    assert obj["status"]["backendCount"] == 2
    assert find_backend(obj["status"], "outsider") is None

    publish("delta", "Stopped", served.url)
    obj = cluster.wait_status(lambda s: find_backend(s, "delta") is None and s.get("backendCount") == 1, "delta to leave")
    assert obj["status"]["phase"] == "Ready"
    gateway.check_alive()


def test_deleted_object_is_survived(cluster: Cluster) -> None:
    """The VirtualMCPServer is deleted under a running runtime: the failed write is logged, the
    runtime keeps serving, and once the object is back the status lands again at the next
    heartbeat (5 s here)."""
    alpha = cluster.add_entry("alpha")
    gateway = cluster.runtime(heartbeat="5s")
    cluster.wait_status(phase_is("Ready"), "Ready")
    cluster.kube.delete(cluster.vmcp)
    cluster.kube.wait_for(lambda: not cluster.kube.exists(cluster.vmcp), 10, "the object to go")

    alpha.kill_hard()  # a change the runtime must try to report
    cluster.kube.wait_for(
        lambda: "does not exist" in gateway.log_tail(300), SHOWS, "the runtime to log that its object does not exist"
    )
    gateway.check_alive()
    assert gateway.get("/health").status_code == 200

    cluster.kube.create(
        vmcp_path(cluster.namespace),
        {"apiVersion": API_VERSION, "kind": "VirtualMCPServer", "metadata": {"name": NAME, "namespace": cluster.namespace},
         "spec": {"incomingAuth": {"type": "anonymous"}, "groupRef": {"name": GROUP}}},
    )
    obj = cluster.wait_status(phase_is("Failed"), "the status on the recreated object", timeout=30)
    assert find_backend(obj["status"], "alpha")["status"] == "unavailable"
    gateway.check_alive()
