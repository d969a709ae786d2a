"""The Kubernetes test environment itself (scripts/kube-test-env.sh + kube.py): a real
kube-apiserver with RBAC, token authentication and impersonation, data that survives an API
server restart, and the client operations the status tests rely on (server-side apply of
spec and status under separate managers, watches, CRD installation).

None of this needs deploy/crds: the CRD used here is a throwaway in its own API group."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
import yaml

from kube import (
    Kube,
    await_for,
    KubeEnv,
    KubeError,
    condition,
    crd_definition_path,
    events_path,
    lease_path,
    ns_path,
    resource_path,
    role_path,
    rolebinding_path,
    sa_username,
    serviceaccount_path,
    wait_for,
)

pytestmark = pytest.mark.kube

WIDGET_GROUP = "e2e.vmcp.test"
WIDGET_API = f"{WIDGET_GROUP}/v1"

# Two CRDs in one multi-document file (as deploy/crds/ may have), each with a status subresource.
THROWAWAY_CRDS = f"""
# throwaway CRDs for test_kube_env.py
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{WIDGET_GROUP}
spec:
  group: {WIDGET_GROUP}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {{status: {{}}}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {{type: integer}}
                color: {{type: string}}
            status:
              type: object
              properties:
                phase: {{type: string}}
                url: {{type: string}}
                conditions:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [type]
                  items:
                    type: object
                    required: [type, status]
                    properties:
                      type: {{type: string}}
                      status: {{type: string}}
                      reason: {{type: string}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{WIDGET_GROUP}
spec:
  group: {WIDGET_GROUP}
  scope: Namespaced
  names: {{plural: gadgets, singular: gadget, kind: Gadget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""

# An RBAC file in the shape deploy/rbac/ will have: fixed namespace, moved by the test.
RBAC_YAML = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: configmap-reader
  namespace: vmcp-system
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: configmap-reader
  namespace: vmcp-system
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmap-reader}
subjects:
  - {kind: ServiceAccount, name: runner, namespace: vmcp-system}
"""


def configmap(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def expect_error(status: int, fn: Any, *args: Any) -> KubeError:
    with pytest.raises(KubeError) as info:
        fn(*args)
    assert info.value.status == status, f"expected {status}, got {info.value}"
    return info.value


def test_apiserver_answers_readyz_and_version(kube_admin: Kube) -> None:
    assert kube_admin.readyz() == "ok"
    verbose = kube_admin.readyz(verbose=True)
    assert "[+]etcd ok" in verbose, verbose
    version = kube_admin.get("/version")
    assert version["gitVersion"].startswith("v1."), version
    assert kube_admin.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"


def test_token_authentication(kube_env: KubeEnv, kube_admin: Kube) -> None:
    admin = kube_admin.whoami()
    assert admin["username"] == "admin" and "system:masters" in admin["groups"], admin
    user = kube_env.user().whoami()
    assert user["username"] == "vmcp-test-user", user
    assert "system:masters" not in user["groups"] and "system:authenticated" in user["groups"], user
    err = expect_error(401, kube_admin.with_token("not-a-valid-token").get, "/api/v1/namespaces")
    assert err.reason == "Unauthorized", err


def test_rbac_denies_the_plain_user(kube_env: KubeEnv, kube_admin: Kube, namespace: str) -> None:
    user = kube_env.user()
    err = expect_error(403, user.list, ns_path(namespace, "secrets"))
    assert err.reason == "Forbidden" and "vmcp-test-user" in err.message, err
    expect_error(403, user.list, "/api/v1/secrets")
    expect_error(403, user.create, ns_path(namespace, "configmaps"), configmap(namespace, "nope", {}))
    assert not user.can_i("list", "secrets", namespace)
    assert kube_admin.can_i("list", "secrets", namespace)
    assert not kube_admin.can("vmcp-test-user", "list", "secrets", namespace)


def test_impersonated_service_account_gains_access_through_a_role(kube_admin: Kube, namespace: str, tmp_path: Path) -> None:
    kube_admin.ensure_service_account(namespace, "runner")
    kube_admin.create(ns_path(namespace, "configmaps"), configmap(namespace, "settings", {"k": "v"}))
    sa = kube_admin.impersonate_sa(namespace, "runner")
    me = sa.whoami()
    assert me["username"] == sa_username(namespace, "runner"), me
    assert f"system:serviceaccounts:{namespace}" in me["groups"], me

    assert not sa.can_i("get", "configmaps", namespace, name="settings")
    err = expect_error(403, sa.get, ns_path(namespace, "configmaps", "settings"))
    assert sa_username(namespace, "runner") in err.message, err

    rbac = tmp_path / "rbac.yaml"
    rbac.write_text(RBAC_YAML)
    applied = kube_admin.apply_yaml_file(rbac, {"vmcp-system": namespace})
    assert [o["kind"] for o in applied] == ["Role", "RoleBinding"]
    binding = kube_admin.get(rolebinding_path(namespace, "configmap-reader"))
    assert binding["subjects"][0]["namespace"] == namespace
    assert kube_admin.exists(role_path(namespace, "configmap-reader"))

    # The RBAC authorizer reads roles from an informer cache: allow a moment.
    wait_for(lambda: sa.can_i("get", "configmaps", namespace, name="settings"), 10, "the RoleBinding to take effect")
    assert sa.get(ns_path(namespace, "configmaps", "settings"))["data"] == {"k": "v"}
    assert [c["metadata"]["name"] for c in sa.items(ns_path(namespace, "configmaps"))] == ["settings"]
    # ...and nothing more than the Role says.
    assert not sa.can_i("update", "configmaps", namespace, name="settings")
    expect_error(403, sa.list, ns_path(namespace, "secrets"))
    expect_error(403, sa.list, ns_path("default", "configmaps"))

    # A real service account token (TokenRequest) authenticates as the same account.
    token = kube_admin.sa_token(namespace, "runner", expiration_seconds=600)
    real = kube_admin.with_token(token)
    assert real.whoami()["username"] == sa_username(namespace, "runner")
    assert real.get(ns_path(namespace, "configmaps", "settings"))["data"] == {"k": "v"}
    # ...also for a process given a kubeconfig.
    kubeconfig = kube_admin.write_kubeconfig(tmp_path / "sa.kubeconfig", token=token, namespace=namespace)
    assert kubeconfig.stat().st_mode & 0o077 == 0


def test_crds_install_and_apply_spec_and_status_under_separate_managers(kube_admin: Kube, namespace: str, tmp_path: Path) -> None:
    crd_dir = tmp_path / "crds"
    crd_dir.mkdir()
    (crd_dir / "widgets.yaml").write_text(THROWAWAY_CRDS)
    (crd_dir / "README.txt").write_text("not a manifest")  # ignored: only *.yaml/*.yml
    names = kube_admin.install_crds(crd_dir)
    assert names == [f"widgets.{WIDGET_GROUP}", f"gadgets.{WIDGET_GROUP}"]
    assert kube_admin.install_crds(crd_dir) == names  # idempotent
    crd = kube_admin.get(crd_definition_path(names[0]))
    assert condition(crd, "Established")["status"] == "True"
    assert kube_admin.resource_for(WIDGET_API, "Widget") == ("widgets", True)

    path = resource_path(WIDGET_API, "widgets", namespace, "w1")
    widget = {"apiVersion": WIDGET_API, "kind": "Widget", "metadata": {"name": "w1", "namespace": namespace}, "spec": {"size": 1}}
    created = kube_admin.apply(path, widget, field_manager="e2e-owner")
    assert created["metadata"]["generation"] == 1 and "status" not in created

    status = {"apiVersion": WIDGET_API, "kind": "Widget", "metadata": {"name": "w1"}}
    runtime_status = {**status, "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True", "reason": "Fine"}]}}
    operator_status = {**status, "status": {"url": "http://w1", "conditions": [{"type": "Serving", "status": "True", "reason": "Up"}]}}
    kube_admin.apply_status(path, runtime_status, field_manager="e2e-runtime")
    after = kube_admin.apply_status(path, operator_status, field_manager="e2e-operator")
    # Each manager owns its own fields; the conditions list is merged by `type`.
    assert after["status"]["phase"] == "Ready" and after["status"]["url"] == "http://w1", after["status"]
    assert sorted(c["type"] for c in after["status"]["conditions"]) == ["Ready", "Serving"]
    managers = {(m["manager"], m.get("subresource", "")) for m in after["metadata"]["managedFields"]}
    assert {("e2e-owner", ""), ("e2e-runtime", "status"), ("e2e-operator", "status")} <= managers, managers
    # Status writes do not bump the generation; spec writes do, and keep the status.
    assert after["metadata"]["generation"] == 1
    patched = kube_admin.merge_patch(path, {"spec": {"color": "blue"}})
    assert patched["metadata"]["generation"] == 2 and patched["status"]["phase"] == "Ready"
    # Dropping a field from one manager's apply removes only that manager's field.
    runtime_status["status"] = {"conditions": [{"type": "Ready", "status": "False", "reason": "Broken"}]}
    final = kube_admin.apply_status(path, runtime_status, field_manager="e2e-runtime")
    assert "phase" not in final["status"] and final["status"]["url"] == "http://w1", final["status"]

    # Identical re-apply is a no-op: the resourceVersion does not move.
    again = kube_admin.apply_status(path, runtime_status, field_manager="e2e-runtime")
    assert again["metadata"]["resourceVersion"] == final["metadata"]["resourceVersion"]


def test_watch_sees_changes(kube_admin: Kube, namespace: str) -> None:
    collection = ns_path(namespace, "configmaps")
    start = kube_admin.list(collection)["metadata"]["resourceVersion"]
    kube_admin.create(collection, configmap(namespace, "watched", {"n": "1"}))
    kube_admin.merge_patch(ns_path(namespace, "configmaps", "watched"), {"data": {"n": "2"}})
    events = []
    for event in kube_admin.watch(collection, resource_version=start, timeout=5):
        events.append((event["type"], event["object"]["data"]["n"]))
        if len(events) == 2:
            break
    assert events == [("ADDED", "1"), ("MODIFIED", "2")]
    seen = kube_admin.watch_until(collection, lambda o: o["data"]["n"] == "2", 10, "n == 2", fieldSelector="metadata.name=watched")
    assert seen["metadata"]["name"] == "watched"


@pytest.mark.anyio
async def test_await_for_polls_without_blocking_the_event_loop(kube_admin: Kube, namespace: str) -> None:
    path = ns_path(namespace, "configmaps", "later")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.3)
        await anyio.to_thread.run_sync(kube_admin.create, ns_path(namespace, "configmaps"), configmap(namespace, "later", {}))
        found = await await_for(lambda: kube_admin.exists(path), 10, "configmap later")
        tg.cancel_scope.cancel()
    assert found and ticks > 10
    with pytest.raises(AssertionError, match="last observed: False"):
        await await_for(lambda: kube_admin.exists(path + "-missing"), 0.3, "a configmap that never comes")


def test_leases_events_and_service_accounts(kube_admin: Kube, namespace: str) -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "vmcp-leader", "namespace": namespace},
        "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 15},
    }
    got = kube_admin.apply(lease_path(namespace, "vmcp-leader"), lease)
    assert got["spec"]["holderIdentity"] == "replica-a"
    # Compare-and-swap on resourceVersion: a stale writer gets 409 Conflict.
    stale = dict(got, spec={**got["spec"], "holderIdentity": "replica-b"})
    kube_admin.merge_patch(lease_path(namespace, "vmcp-leader"), {"spec": {"leaseTransitions": 1}})
    err = expect_error(409, kube_admin.replace, lease_path(namespace, "vmcp-leader"), stale)
    assert err.reason == "Conflict"
    assert kube_admin.items(events_path(namespace)) == []
    kube_admin.ensure_service_account(namespace, "runner")
    assert kube_admin.get(serviceaccount_path(namespace, "runner"))["metadata"]["name"] == "runner"
    assert not kube_admin.delete(serviceaccount_path(namespace, "nobody"), missing_ok=True)
    expect_error(404, kube_admin.delete, serviceaccount_path(namespace, "nobody"))


def test_apiserver_restart_keeps_data(kube_restart: KubeEnv, kube_admin: Kube, namespace: str) -> None:
    path = ns_path(namespace, "configmaps", "survivor")
    kube_admin.create(ns_path(namespace, "configmaps"), configmap(namespace, "survivor", {"before": "restart"}))
    kube_restart.stop_apiserver()
    err = expect_error(0, kube_admin.get, path)  # nothing listens
    assert err.reason in ("ConnectError", "RemoteProtocolError", "ReadError"), err
    assert not kube_admin.is_ready()
    started = time.monotonic()
    kube_restart.start_apiserver()
    assert kube_admin.is_ready()
    assert time.monotonic() - started < 120
    assert kube_admin.get(path)["data"] == {"before": "restart"}
    # The same client (and its connection pool) keeps working after the restart.
    kube_admin.merge_patch(path, {"data": {"after": "restart"}})
    assert kube_admin.get(path)["data"] == {"before": "restart", "after": "restart"}


def test_the_admin_kubeconfig_works_for_other_clients(kube_env: KubeEnv) -> None:
    # What a process under test gets via KUBECONFIG: the server URL, CA and token in one file.
    config = yaml.safe_load(kube_env.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    ca = kube_env.state_dir / "pki" / "ca.crt"
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as http:
        resp = http.get(f"{cluster['server']}/api/v1/namespaces/default", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
