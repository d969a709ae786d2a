"""vmcp-operator against the real kube-apiserver (no node: pods never run, garbage collection
does not happen). The operator runs as a local process scoped to the test's namespace; where a
runtime is needed, the real `vmcp serve` runs locally with the config the operator rendered,
reporting into the VirtualMCPServer like a pod would.

What is checked: children with owner references and the reference's names; the operator's
status fields and the runtime's kept apart (managedFields); a deleted or edited child repaired;
a spec.config change → new ConfigMap content, new pod-template hash and config generation; a
missing group → GroupRefValidated False, Stalled, recovery; an injector's label on the pod
template → no write loop; a reconcile of an unchanged object (runtime heartbeats) → zero writes;
RuntimeReporting False when the runtime stops, True when it reports again; MCPGroup status;
one active operator among two (Lease), fail-over.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import Launcher, wait_until
from kube import (
    Kube,
    KubeEnv,
    condition,
    lease_path,
    mcpgroup_manifest,
    mcpgroup_path,
    mcpserverentry_manifest,
    mcpserverentry_path,
    ns_path,
    vmcp_path,
)
from operator_proc import CONFIG_HASH, GROUP, NAME, OperatorProc, children_paths, create_gateway, managers_of, wait_children, wait_condition

OPERATOR_CONDITIONS = {"GroupRefValidated", "ConfigValid", "RBACReady", "DeploymentReady", "ServiceReady", "RuntimeReporting", "Reconciling", "Stalled"}
RUNTIME_CONDITIONS = {"Ready", "BackendsDiscovered", "Degraded"}
# A short heartbeat so the staleness bound (2 x heartbeat + 5 s) is 9 s.
FAST_CONFIG = {"operational": {"failureHandling": {"statusReportingInterval": "2s", "healthCheckInterval": "2s", "healthCheckTimeout": "1s"}}}


def settled(op: OperatorProc, kube: Kube, namespace: str, quiet_reconciles: int = 2, timeout: float = 60.0) -> float:
    """Wait until the operator ran `quiet_reconciles` reconciles in a row without a write; the
    write count then. Triggers reconciles by touching an annotation no child depends on."""
    state = {"writes": op.writes(), "reconciles": op.reconciles(), "quiet": 0}

    def quiet() -> bool:
        writes, reconciles = op.writes(), op.reconciles()
        if writes != state["writes"]:
            state.update(writes=writes, reconciles=reconciles, quiet=0)
        elif reconciles > state["reconciles"]:
            state["quiet"] += int(reconciles - state["reconciles"])
            state["reconciles"] = reconciles
        if state["quiet"] >= quiet_reconciles:
            return True
        kube.merge_patch(vmcp_path(namespace, NAME), {"metadata": {"annotations": {"e2e/poke": str(reconciles)}}})
        return False

    wait_until(quiet, timeout, interval=0.5, what="the operator to reconcile without writing")
    return state["writes"]


def runtime_env(kube_env: KubeEnv, namespace: str, generation: str) -> dict[str, str]:
    return {
        "VMCP_NAME": NAME,
        "VMCP_NAMESPACE": namespace,
        "VMCP_CONFIG_GENERATION": generation,
        "VMCP_POD_NAME": "local-runtime",
        "KUBECONFIG": str(kube_env.kubeconfig),
    }


def start_runtime(launcher: Launcher, kube: Kube, kube_env: KubeEnv, namespace: str, label: str = "vmcp"):
    """The real runtime, run locally with the operator's ConfigMap and the Deployment's generation."""
    config = yaml.safe_load(kube.get(children_paths(namespace)["ConfigMap"])["data"]["config.yaml"])
    deployment = kube.get(children_paths(namespace)["Deployment"])
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    return launcher.gateway(config, ready=False, env=runtime_env(kube_env, namespace, env["VMCP_CONFIG_GENERATION"]), label=label)


# ---------------------------------------------------------------------------


def test_children_are_created_with_owner_references_and_reference_names(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    create_gateway(kube, namespace)
    children = wait_children(kube, namespace)
    vmcp = kube.get(vmcp_path(namespace, NAME))
    for kind, obj in children.items():
        refs = obj["metadata"].get("ownerReferences") or []
        assert [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in refs] == [("VirtualMCPServer", NAME, vmcp["metadata"]["uid"], True)], kind
        assert "vmcp-operator" in managers_of(obj), f"{kind} is applied by vmcp-operator"
    service = children["Service"]["spec"]
    assert service["ports"][0]["name"] == "http" and service["ports"][0]["port"] == 4483
    assert service["sessionAffinity"] == "ClientIP"
    pod = children["Deployment"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["name"] == "vmcp"
    assert "replicas" not in managers_of(children["Deployment"])["vmcp-operator"].get("f:spec", {}), "replicas left to an autoscaler"
    assert pod["spec"]["serviceAccountName"] == f"{NAME}-vmcp"
    config = yaml.safe_load(children["ConfigMap"]["data"]["config.yaml"])
    assert config["groupRef"] == GROUP and config["name"] == NAME
    role_rules = children["Role"]["rules"]
    assert any("virtualmcpservers/status" in r["resources"] for r in role_rules)

    vmcp = wait_condition(kube, namespace, "GroupRefValidated", "True", "GroupFound")
    assert vmcp["status"]["url"] == f"http://vmcp-{NAME}.{namespace}.svc.cluster.local:4483/mcp"
    types = {c["type"] for c in vmcp["status"]["conditions"]}
    assert OPERATOR_CONDITIONS <= types
    # No controller-manager: the Deployment never rolls out.
    assert condition(vmcp, "DeploymentReady")["status"] == "False"
    assert condition(vmcp, "Reconciling")["status"] == "True"
    assert "phase" not in vmcp["status"], "the operator never writes the phase"
    for c in vmcp["status"]["conditions"]:
        assert c["observedGeneration"] == vmcp["metadata"]["generation"]


def test_runtime_and_operator_own_disjoint_status_fields(kube: Kube, kube_env: KubeEnv, namespace: str, operator: OperatorProc, launcher: Launcher) -> None:
    create_gateway(kube, namespace, spec={"config": FAST_CONFIG})
    wait_children(kube, namespace)
    runtime = start_runtime(launcher, kube, kube_env, namespace)
    vmcp = wait_condition(kube, namespace, "RuntimeReporting", "True", "Reporting", timeout=60)
    runtime.check_alive()
    status = vmcp["status"]
    assert status.get("phase"), "the runtime reported a phase"
    managers = managers_of(vmcp, "status")
    ours = managers["vmcp-operator"]["f:status"]
    theirs = managers["vmcp-runtime"]["f:status"]
    assert set(ours) == {"f:url", "f:conditions"}, ours
    assert "f:url" not in theirs and "f:phase" in theirs
    keys = lambda fields: {k for k in fields.get("f:conditions", {}) if k.startswith("k:")}  # noqa: E731
    op_types = {yaml.safe_load(k[2:])["type"] for k in keys(ours)}
    rt_types = {yaml.safe_load(k[2:])["type"] for k in keys(theirs)}
    assert op_types == OPERATOR_CONDITIONS, op_types
    assert rt_types <= RUNTIME_CONDITIONS and "Ready" in rt_types, rt_types
    assert not op_types & rt_types


def test_unchanged_object_costs_no_writes_even_with_runtime_heartbeats(kube: Kube, kube_env: KubeEnv, namespace: str, operator: OperatorProc, launcher: Launcher) -> None:
    create_gateway(kube, namespace, spec={"config": FAST_CONFIG})
    wait_children(kube, namespace)
    start_runtime(launcher, kube, kube_env, namespace)
    wait_condition(kube, namespace, "RuntimeReporting", "True", timeout=60)
    writes = settled(operator, kube, namespace)
    versions = {kind: kube.get(path)["metadata"]["resourceVersion"] for kind, path in children_paths(namespace).items()}
    before = kube.get(vmcp_path(namespace, NAME))
    reconciles = operator.reconciles()
    # Several runtime heartbeats (every 2 s) and operator reconciles later ...
    wait_until(
        lambda: (kube.get(vmcp_path(namespace, NAME))["status"]["timestamp"] != before["status"]["timestamp"]) and operator.reconciles() >= reconciles + 3,
        60,
        interval=0.5,
        what="runtime heartbeats and operator reconciles",
    )
    # ... not one write by the operator, and no child changed.
    assert operator.writes() == writes, operator.samples()
    assert {kind: kube.get(path)["metadata"]["resourceVersion"] for kind, path in children_paths(namespace).items()} == versions
    after = kube.get(vmcp_path(namespace, NAME))
    op_time = lambda obj: [e["time"] for e in obj["metadata"]["managedFields"] if e["manager"] == "vmcp-operator" and e.get("subresource") == "status"]  # noqa: E731
    assert op_time(after) == op_time(before), "the operator's status entry was not rewritten"


def test_deleted_and_edited_children_are_repaired(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    create_gateway(kube, namespace)
    children = wait_children(kube, namespace)
    paths = children_paths(namespace)
    for kind in ("ConfigMap", "Service", "Role"):
        kube.delete(paths[kind])
    for kind in ("ConfigMap", "Service", "Role"):
        old_uid = children[kind]["metadata"]["uid"]
        kube.wait_object(paths[kind], lambda o, uid=old_uid: o["metadata"]["uid"] != uid, 30, f"{kind} recreated")
    # An edit of a field the operator owns is put back.
    kube.merge_patch(paths["ConfigMap"], {"data": {"config.yaml": "name: hijacked\n"}})
    kube.wait_object(paths["ConfigMap"], lambda o: "hijacked" not in o["data"]["config.yaml"], 30, "ConfigMap content restored")


def test_config_change_rolls_the_pods(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    create_gateway(kube, namespace)
    children = wait_children(kube, namespace)
    paths = children_paths(namespace)
    old_hash = children["Deployment"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
    kube.merge_patch(vmcp_path(namespace, NAME), {"spec": {"config": {"operational": {"logLevel": "debug"}}}})
    generation = kube.get(vmcp_path(namespace, NAME))["metadata"]["generation"]
    kube.wait_object(paths["ConfigMap"], lambda o: yaml.safe_load(o["data"]["config.yaml"])["operational"]["logLevel"] == "debug", 30, "new ConfigMap content")

    def rolled(obj: dict[str, Any]) -> bool:
        template = obj["spec"]["template"]
        env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
        return template["metadata"]["annotations"][CONFIG_HASH] != old_hash and env["VMCP_CONFIG_GENERATION"] == str(generation)

    kube.wait_object(paths["Deployment"], rolled, 30, "new pod-template hash and config generation")


def test_a_changed_referenced_secret_rolls_the_pods(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    kube.create(ns_path(namespace, "secrets"), {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api", "namespace": namespace}, "stringData": {"key": "one"}})
    template = {"spec": {"containers": [{"name": "vmcp", "env": [{"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "key"}}}]}]}}
    create_gateway(kube, namespace, spec={"podTemplateSpec": template})
    children = wait_children(kube, namespace)
    old_hash = children["Deployment"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
    kube.merge_patch(ns_path(namespace, "secrets", "api"), {"stringData": {"key": "two"}})
    # The operator reads referenced Secrets at each reconcile (no Secret watch): poke it.
    kube.merge_patch(vmcp_path(namespace, NAME), {"metadata": {"annotations": {"e2e/poke": "1"}}})
    kube.wait_object(
        children_paths(namespace)["Deployment"],
        lambda o: o["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH] != old_hash,
        30,
        "a new pod-template hash after the Secret changed",
    )


def test_invalid_config_is_a_condition_with_field_paths(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    create_gateway(kube, namespace, spec={"config": {"operational": {"failureHandling": {"healthCheckInterval": "5s", "healthCheckTimeout": "10s"}}}})
    vmcp = wait_condition(kube, namespace, "ConfigValid", "False", "ConfigInvalid")
    assert "spec.config.operational.failureHandling" in condition(vmcp, "ConfigValid")["message"]
    assert condition(vmcp, "Stalled")["status"] == "True"
    assert not kube.exists(children_paths(namespace)["Deployment"]), "nothing deployed from an invalid config"
    kube.merge_patch(vmcp_path(namespace, NAME), {"spec": {"config": {"operational": {"failureHandling": {"healthCheckTimeout": "1s"}}}}})
    wait_condition(kube, namespace, "ConfigValid", "True")
    kube.wait_object(children_paths(namespace)["Deployment"], lambda o: o, 30, "Deployment after the fix")


def test_missing_group_is_reported_and_recovers(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    create_gateway(kube, namespace, group=False)
    vmcp = wait_condition(kube, namespace, "GroupRefValidated", "False", "GroupNotFound")
    assert condition(vmcp, "Stalled")["status"] == "True"
    assert condition(vmcp, "Reconciling")["status"] == "False"
    assert not kube.exists(children_paths(namespace)["Deployment"])
    operator.check_alive()

    def failure_event() -> bool:
        # The operator records the Event after it applies the status, so poll.
        events = kube.items(ns_path(namespace, "events"))
        events += kube.items(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
        return any(e.get("reason") == "GroupNotFound" and e.get("type") == "Warning" for e in events)

    wait_until(failure_event, 15, what="a Warning Event naming the failure")
    kube.create(mcpgroup_path(namespace), mcpgroup_manifest(namespace, GROUP))
    wait_condition(kube, namespace, "GroupRefValidated", "True", "GroupFound")
    wait_children(kube, namespace)
    vmcp = kube.get(vmcp_path(namespace, NAME))
    assert condition(vmcp, "Stalled")["status"] == "False"


def test_an_injected_pod_template_label_causes_no_loop(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    create_gateway(kube, namespace)
    wait_children(kube, namespace)
    settled(operator, kube, namespace)
    writes = operator.writes()
    reconciles = operator.reconciles()
    path = children_paths(namespace)["Deployment"]
    # What a mesh injector's webhook or controller does: another manager adds a label.
    kube.apply(path, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": namespace},
                      "spec": {"template": {"metadata": {"labels": {"sidecar.istio.io/inject": "true"}}}}}, field_manager="mesh-injector")
    version = kube.get(path)["metadata"]["resourceVersion"]
    wait_until(lambda: operator.reconciles() > reconciles, 30, what="the operator reacting to the Deployment change")
    settled(operator, kube, namespace)
    assert operator.writes() == writes, "no write answered the injector's label"
    deployment = kube.get(path)
    assert deployment["metadata"]["resourceVersion"] == version
    assert deployment["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"


def test_runtime_reporting_goes_false_when_the_runtime_stops_and_recovers(kube: Kube, kube_env: KubeEnv, namespace: str, operator: OperatorProc, launcher: Launcher) -> None:
    create_gateway(kube, namespace, spec={"config": FAST_CONFIG})
    wait_children(kube, namespace)
    runtime = start_runtime(launcher, kube, kube_env, namespace)
    wait_condition(kube, namespace, "RuntimeReporting", "True", timeout=60)
    runtime.kill_hard()
    # Bound: 2 x 2 s + 5 s = 9 s after the last report; the operator looks again just after.
    vmcp = wait_condition(kube, namespace, "RuntimeReporting", "False", "ReportStale", timeout=30)
    assert condition(vmcp, "Ready") is not None, "the runtime's last Ready is left in place, not rewritten"
    start_runtime(launcher, kube, kube_env, namespace, label="vmcp-again")
    wait_condition(kube, namespace, "RuntimeReporting", "True", "Reporting", timeout=60)


def test_runtime_on_an_older_generation_is_reported(kube: Kube, kube_env: KubeEnv, namespace: str, operator: OperatorProc, launcher: Launcher) -> None:
    create_gateway(kube, namespace, spec={"config": FAST_CONFIG})
    wait_children(kube, namespace)
    start_runtime(launcher, kube, kube_env, namespace)
    wait_condition(kube, namespace, "RuntimeReporting", "True", timeout=60)
    kube.merge_patch(vmcp_path(namespace, NAME), {"spec": {"config": {"operational": {"logLevel": "debug"}}}})
    wait_condition(kube, namespace, "RuntimeReporting", "False", "GenerationBehind", timeout=30)


def test_group_status_lists_its_members(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    kube.create(mcpgroup_path(namespace), mcpgroup_manifest(namespace, GROUP))
    kube.create(mcpgroup_path(namespace), mcpgroup_manifest(namespace, "other"))
    for name, group in (("a", GROUP), ("b", GROUP), ("c", "other")):
        kube.create(mcpserverentry_path(namespace), mcpserverentry_manifest(namespace, name, f"http://{name}.example/mcp", group))

    def listed(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return status.get("entries") == ["a", "b"] and status.get("entryCount") == 2

    group = kube.wait_object(mcpgroup_path(namespace, GROUP), listed, 30, "group status with entries a, b")
    assert group["status"]["serverCount"] == 0 and group["status"]["phase"] == "Ready"
    assert condition(group, "Ready")["status"] == "True"
    kube.delete(mcpserverentry_path(namespace, "a"))
    kube.wait_object(mcpgroup_path(namespace, GROUP), lambda o: o["status"].get("entries") == ["b"], 30, "entry a removed")
    assert kube.get(mcpgroup_path(namespace, "other"))["status"]["entries"] == ["c"]


def test_two_operators_one_active_and_fail_over(tmp_path: Path, kube: Kube, kube_env: KubeEnv, namespace: str) -> None:
    lease_args = ["--lease-namespace", namespace, "--lease-seconds", "4"]
    first = OperatorProc.start_new(tmp_path, kube_env.kubeconfig, namespace=namespace, leader_elect=True, args=[*lease_args, "--identity", "op-1"], label="op-1")
    second = OperatorProc.start_new(tmp_path, kube_env.kubeconfig, namespace=namespace, leader_elect=True, args=[*lease_args, "--identity", "op-2"], label="op-2")
    try:
        first.wait_ready()
        second.wait_ready()
        lease = kube.wait_object(lease_path(namespace, "vmcp-operator"), lambda o: o["spec"].get("holderIdentity") in ("op-1", "op-2"), 30, "a leader")
        leader, standby = (first, second) if lease["spec"]["holderIdentity"] == "op-1" else (second, first)
        create_gateway(kube, namespace)
        wait_children(kube, namespace)
        assert leader.reconciles() > 0
        assert standby.reconciles() == 0, "the standby does not reconcile"
        leader.signal(signal.SIGKILL)
        kube.wait_object(lease_path(namespace, "vmcp-operator"), lambda o: o["spec"].get("holderIdentity") == standby.label, 30, "the standby takes the Lease")
        kube.delete(children_paths(namespace)["Service"])
        kube.wait_object(children_paths(namespace)["Service"], lambda o: o, 30, "the new leader repairs the Service")
        assert standby.reconciles() > 0
    finally:
        for proc in (first, second):
            proc.stop()

