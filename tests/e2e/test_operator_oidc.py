"""vmcp-operator renders `spec.incomingAuth` (type oidc, oidcConfigRef → MCPOIDCConfig) against the
real kube-apiserver: the ConfigMap gets `incomingAuth {type: oidc, oidc}` with the MCPOIDCConfig's
issuer and the reference's audience, and names the client secret only by an env variable; the
Deployment's container gets that variable from the Secret by `secretKeyRef`; the secret's value
appears in no ConfigMap, status or Event. A change of the MCPOIDCConfig re-renders the ConfigMap
(it is watched) and the status' `oidcConfigHash`; a missing MCPOIDCConfig or Secret is
`ConfigValid=False` and nothing is provisioned (never served anonymously), and creating it
recovers.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from kube import API_VERSION, MCPOIDCCONFIGS, Kube, condition, crd_path, ns_path, vmcp_path
from operator_proc import NAME, OperatorProc, children_paths, create_gateway, wait_condition

OIDC_CONFIG = "company-sso"
SECRET = "sso-client"
SECRET_VALUE = "e2e-client-secret-7f3a9c"
ISSUER = "https://sso.example.com/realms/eng"
POLICY = 'permit(principal, action == Action::"call_tool", resource);'


def mcpoidcconfig(namespace: str, issuer: str = ISSUER) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MCPOIDCConfig",
        "metadata": {"name": OIDC_CONFIG, "namespace": namespace},
        "spec": {
            "type": "inline",
            "inline": {"issuer": issuer, "clientId": "eng-gateway", "clientSecretRef": {"name": SECRET, "key": "client-secret"}},
        },
    }


def create_secret(kube: Kube, namespace: str) -> None:
    kube.create(
        ns_path(namespace, "secrets"),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": namespace}, "stringData": {"client-secret": SECRET_VALUE}},
    )


OIDC_SPEC = {
    "incomingAuth": {
        "type": "oidc",
        "oidcConfigRef": {"name": OIDC_CONFIG, "audience": "eng-gateway", "scopes": ["mcp:tools"]},
        "authzConfig": {"type": "inline", "inline": {"policies": [POLICY]}},
    }
}


def rendered_config(kube: Kube, namespace: str) -> dict[str, Any]:
    return yaml.safe_load(kube.get(children_paths(namespace)["ConfigMap"])["data"]["config.yaml"])


def test_the_mcpoidcconfig_is_rendered_and_the_secret_passed_by_reference(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    create_secret(kube, namespace)
    kube.create(crd_path(MCPOIDCCONFIGS, namespace), mcpoidcconfig(namespace))
    create_gateway(kube, namespace, spec=OIDC_SPEC)
    paths = children_paths(namespace)
    deployment = kube.wait_object(paths["Deployment"], lambda o: o, 30, "the Deployment")
    config_map = kube.get(paths["ConfigMap"])
    vmcp = wait_condition(kube, namespace, "ConfigValid", "True", "ConfigValid")

    incoming = yaml.safe_load(config_map["data"]["config.yaml"])["incomingAuth"]
    assert incoming["type"] == "oidc"
    assert incoming["oidc"] == {
        "issuer": ISSUER,
        "audience": "eng-gateway",
        "clientId": "eng-gateway",
        "clientSecretEnv": "VMCP_OIDC_CLIENT_SECRET",
        "scopes": ["mcp:tools"],
    }
    assert incoming["authz"] == {"type": "cedar", "policies": [POLICY]}

    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["VMCP_OIDC_CLIENT_SECRET"] == {"name": "VMCP_OIDC_CLIENT_SECRET", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "client-secret"}}}

    assert vmcp["status"].get("oidcConfigHash"), "the operator records the MCPOIDCConfig's hash"
    events = kube.items(ns_path(namespace, "events")) + kube.items(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    for what, obj in (("ConfigMap", config_map), ("Deployment", deployment), ("status", vmcp["status"]), ("Events", events)):
        assert SECRET_VALUE not in json.dumps(obj), f"the client secret leaked into the {what}"


def test_a_changed_mcpoidcconfig_is_re_rendered(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    create_secret(kube, namespace)
    kube.create(crd_path(MCPOIDCCONFIGS, namespace), mcpoidcconfig(namespace))
    create_gateway(kube, namespace, spec=OIDC_SPEC)
    vmcp = kube.wait_object(vmcp_path(namespace, NAME), lambda o: (o.get("status") or {}).get("oidcConfigHash"), 30, "oidcConfigHash")
    old_hash = vmcp["status"]["oidcConfigHash"]
    kube.wait_object(children_paths(namespace)["ConfigMap"], lambda o: o, 30, "the ConfigMap")

    # No poke of the VirtualMCPServer: the MCPOIDCConfig watch triggers the reconcile.
    new_issuer = "https://sso2.example.com/realms/eng"
    kube.merge_patch(crd_path(MCPOIDCCONFIGS, namespace, OIDC_CONFIG), {"spec": {"inline": {"issuer": new_issuer}}})
    kube.wait_object(
        children_paths(namespace)["ConfigMap"],
        lambda o: yaml.safe_load(o["data"]["config.yaml"])["incomingAuth"]["oidc"]["issuer"] == new_issuer,
        30,
        "the new issuer in the ConfigMap",
    )
    vmcp = kube.wait_object(vmcp_path(namespace, NAME), lambda o: o["status"].get("oidcConfigHash") not in (None, old_hash), 30, "a new oidcConfigHash")
    assert condition(vmcp, "ConfigValid")["status"] == "True"


def test_a_missing_mcpoidcconfig_is_refused_and_recovers(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    create_secret(kube, namespace)
    create_gateway(kube, namespace, spec=OIDC_SPEC)
    vmcp = wait_condition(kube, namespace, "ConfigValid", "False", "ConfigInvalid")
    message = condition(vmcp, "ConfigValid")["message"]
    assert f"the MCPOIDCConfig {OIDC_CONFIG} does not exist in this namespace" in message, message
    assert "does not yet render" not in message, "the old refusal is gone"
    assert condition(vmcp, "Stalled")["status"] == "True"
    paths = children_paths(namespace)
    assert not kube.exists(paths["ConfigMap"]) and not kube.exists(paths["Deployment"]), "nothing provisioned without its OIDC settings"

    kube.create(crd_path(MCPOIDCCONFIGS, namespace), mcpoidcconfig(namespace))
    wait_condition(kube, namespace, "ConfigValid", "True")
    kube.wait_object(paths["Deployment"], lambda o: o, 30, "the Deployment once the MCPOIDCConfig exists")
    assert rendered_config(kube, namespace)["incomingAuth"]["oidc"]["issuer"] == ISSUER


def test_a_missing_client_secret_is_refused(kube: Kube, namespace: str, operator: OperatorProc) -> None:
    kube.create(crd_path(MCPOIDCCONFIGS, namespace), mcpoidcconfig(namespace))
    create_gateway(kube, namespace, spec=OIDC_SPEC)
    vmcp = wait_condition(kube, namespace, "ConfigValid", "False", "ConfigInvalid")
    message = condition(vmcp, "ConfigValid")["message"]
    assert f'the Secret "{SECRET}" does not exist' in message, message
    assert not kube.exists(children_paths(namespace)["Deployment"])
    # Secrets are not watched: the operator looks again within seconds on its own.
    create_secret(kube, namespace)
    wait_condition(kube, namespace, "ConfigValid", "True", timeout=40)
    kube.wait_object(children_paths(namespace)["Deployment"], lambda o: o, 30, "the Deployment once the Secret exists")
