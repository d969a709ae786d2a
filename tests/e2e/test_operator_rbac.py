"""The operator's shipped RBAC (deploy/operator/rbac-namespaced.yaml, generated from
crates/vmcp-crd/src/rbac.rs) against the real kube-apiserver: the operator runs with a real token
of its ServiceAccount and provisions a gateway (so its rules suffice, including Kubernetes' rule
that whoever creates a Role must hold its permissions); SubjectAccessReviews show that nothing
more is granted; the runtime Role it creates is exactly deploy/rbac/vmcp-runtime.yaml's.
"""

from __future__ import annotations

from pathlib import Path

from harness import REPO
from kube import Kube, KubeEnv, load_yaml_docs, mcpgroup_path, sa_groups, sa_username

from operator_proc import GROUP, NAME, OperatorProc, create_gateway, wait_children, wait_condition
OPERATOR_RBAC_NAMESPACED = REPO / "deploy" / "operator" / "rbac-namespaced.yaml"
RUNTIME_RBAC = REPO / "deploy" / "rbac" / "vmcp-runtime.yaml"


def test_the_shipped_operator_rbac_suffices_and_grants_nothing_more(tmp_path: Path, kube: Kube, kube_env: KubeEnv, namespace: str) -> None:
    # The namespaced variant, moved into the test's namespace; the operator runs with a real
    # token of its ServiceAccount (not the admin's credentials).
    kube.apply_yaml_file(OPERATOR_RBAC_NAMESPACED, {"vmcp-system": namespace})
    token = kube.sa_token(namespace, "vmcp-operator")
    kubeconfig = kube.write_kubeconfig(tmp_path / "operator.kubeconfig", token=token, namespace=namespace)
    proc = OperatorProc.start_new(tmp_path, kubeconfig, namespace=namespace, leader_elect=True, args=["--lease-namespace", namespace])
    try:
        proc.wait_ready()
        create_gateway(kube, namespace)
        children = wait_children(kube, namespace)
        wait_condition(kube, namespace, "RBACReady", "True", "RBACApplied")
        kube.wait_object(mcpgroup_path(namespace, GROUP), lambda o: (o.get("status") or {}).get("phase") == "Ready", 30, "group status")
        assert proc.metric("vmcp_operator_reconcile_errors_total") == 0, proc.log_tail()
        # The runtime's Role is exactly the shipped one (names substituted).
        shipped = next(d for d in load_yaml_docs(RUNTIME_RBAC) if d["kind"] == "Role")
        renames = {"example": NAME, "example-group": GROUP, "example-vmcp-status": f"{NAME}-vmcp-status"}
        for rule in shipped["rules"]:
            if "resourceNames" in rule:
                rule["resourceNames"] = [renames[n] for n in rule["resourceNames"]]
        assert children["Role"]["rules"] == shipped["rules"]
    finally:
        proc.stop()
    # Nothing more: the operator's account cannot do what it does not need.
    user, groups = sa_username(namespace, "vmcp-operator"), sa_groups(namespace)
    denied = [
        ("delete", "deployments", "apps", None),
        ("delete", "configmaps", "", None),
        ("list", "secrets", "", None),
        ("watch", "secrets", "", None),
        ("update", "virtualmcpservers", "toolhive.stacklok.dev", None),
        ("patch", "virtualmcpservers", "toolhive.stacklok.dev", None),
        ("create", "mcpoidcconfigs", "toolhive.stacklok.dev", None),
        ("patch", "mcpoidcconfigs", "toolhive.stacklok.dev", None),
        ("delete", "mcpoidcconfigs", "toolhive.stacklok.dev", None),
        ("escalate", "roles", "rbac.authorization.k8s.io", None),
        ("bind", "roles", "rbac.authorization.k8s.io", None),
        ("create", "pods", "", None),
        ("get", "configmaps", "", "default"),
    ]
    for verb, resource, group, other_namespace in denied:
        assert not kube.can(user, verb, resource, namespace=other_namespace or namespace, group=group, groups=groups), f"{verb} {resource}"
    assert not kube.can(user, "get", "nodes", groups=groups)
    assert kube.can(user, "get", "secrets", namespace=namespace, groups=groups), "get of a referenced Secret"
    for verb in ("get", "list", "watch"):
        assert kube.can(user, verb, "mcpoidcconfigs", namespace=namespace, group="toolhive.stacklok.dev", groups=groups), f"{verb} mcpoidcconfigs"
