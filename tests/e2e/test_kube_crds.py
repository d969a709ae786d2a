"""Our CRDs accept manifests in ToolHive's v1beta1 shapes unchanged, on the real API server.

The manifests are tests/fixtures/toolhive-v1beta1/*.yaml (written for these tests, in the shapes
of ToolHive's v1beta1 Go types). Each is applied with a server-side dry run (`dryRun=All`) and
`fieldValidation=Strict`, so an unknown field is an error rather than silently pruned; the
answer must keep every field as sent and add the reference's defaults. Broken variants (a bad
enum value, a missing required field, the pre-v1beta1 shapes of `groupRef` and the entry's URL,
a violated CEL rule) must be rejected, so the test can fail. A coverage check makes sure every
field our CRD schemas declare is set in at least one fixture.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kube import API_VERSION, CRD_DIR, REPO, Kube, KubeError, crd_definition_path, load_yaml_docs

FIXTURES = REPO / "tests" / "fixtures" / "toolhive-v1beta1"
STRICT_DRY_RUN = {"dryRun": "All", "fieldValidation": "Strict"}


def fixture_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for doc in load_yaml_docs(path):
            docs.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


def dry_run_apply(kube: Kube, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    return kube.apply(kube.object_path(doc), doc, **STRICT_DRY_RUN)


def missing_from(sent: Any, got: Any, path: str = "") -> Iterator[str]:
    """Paths of `sent` that `got` lacks or holds with another value (extra fields in `got`, such
    as defaults, are fine)."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            yield f"{path}: sent an object, got {got!r}"
            return
        for key, value in sent.items():
            if key not in got:
                yield f"{path}.{key}: dropped"
            else:
                yield from missing_from(value, got[key], f"{path}.{key}")
    elif isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            yield f"{path}: sent {len(sent)} items, got {got!r}"
            return
        for i, (a, b) in enumerate(zip(sent, got)):
            yield from missing_from(a, b, f"{path}[{i}]")
    elif sent != got:
        yield f"{path}: sent {sent!r}, got {got!r}"


@pytest.mark.parametrize("name,doc", fixture_docs(), ids=[name for name, _ in fixture_docs()])
def test_reference_manifest_is_accepted_and_kept(kube: Kube, namespace: str, name: str, doc: dict[str, Any]) -> None:
    try:
        got = dry_run_apply(kube, namespace, doc)
    except KubeError as exc:
        pytest.fail(f"{name} rejected: {exc}")
    lost = list(missing_from(doc.get("spec") or {}, got.get("spec") or {}, "spec"))
    assert not lost, f"{name}: fields not kept as sent: {lost}"
    # A dry run stores nothing.
    assert not kube.exists(kube.object_path({**doc, "metadata": {**doc["metadata"], "namespace": namespace}}))


def test_the_reference_defaults_are_filled_in(kube: Kube, namespace: str) -> None:
    server = {"apiVersion": API_VERSION, "kind": "MCPServer", "metadata": {"name": "d"}, "spec": {"image": "example"}}
    spec = dry_run_apply(kube, namespace, server)["spec"]
    assert {k: spec.get(k) for k in ("transport", "proxyMode", "proxyPort", "sessionAffinity")} == {
        "transport": "stdio",
        "proxyMode": "streamable-http",
        "proxyPort": 8080,
        "sessionAffinity": "ClientIP",
    }
    vmcp = {
        "apiVersion": API_VERSION,
        "kind": "VirtualMCPServer",
        "metadata": {"name": "d"},
        "spec": {"incomingAuth": {"type": "anonymous"}, "groupRef": {"name": "g"}, "outgoingAuth": {}},
    }
    spec = dry_run_apply(kube, namespace, vmcp)["spec"]
    assert (spec["serviceType"], spec["sessionAffinity"], spec["outgoingAuth"]["source"]) == ("ClusterIP", "ClientIP", "discovered")


def _fixture(kind: str, name: str) -> dict[str, Any]:
    for _, doc in fixture_docs():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return copy.deepcopy(doc)
    raise KeyError(f"{kind}/{name}")


def _without(doc: dict[str, Any], *path: str) -> dict[str, Any]:
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return doc


def _with(doc: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    parent = doc
    for key in path[:-1]:
        parent = parent.setdefault(key, {})
    parent[path[-1]] = value
    return doc


BROKEN = [
    ("bad transport enum", _with(_fixture("MCPServer", "fetch"), "websocket", "spec", "transport"), "spec.transport"),
    ("bad sessionAffinity enum", _with(_fixture("MCPServer", "fetch"), "Sticky", "spec", "sessionAffinity"), "spec.sessionAffinity"),
    ("MCPServer without image", _without(_fixture("MCPServer", "minimal"), "spec", "image"), "spec.image"),
    ("proxyPort out of range", _with(_fixture("MCPServer", "minimal"), 70000, "spec", "proxyPort"), "spec.proxyPort"),
    ("env entry without value", _with(_fixture("MCPServer", "minimal"), [{"name": "A"}], "spec", "env"), "spec.env[0].value"),
    ("VirtualMCPServer without incomingAuth", _without(_fixture("VirtualMCPServer", "minimal"), "spec", "incomingAuth"), "spec.incomingAuth"),
    ("VirtualMCPServer without groupRef", _without(_fixture("VirtualMCPServer", "minimal"), "spec", "groupRef"), "spec.groupRef"),
    ("bad incomingAuth type", _with(_fixture("VirtualMCPServer", "minimal"), "basic", "spec", "incomingAuth", "type"), "spec.incomingAuth.type"),
    ("oidc without oidcConfigRef", _with(_fixture("VirtualMCPServer", "minimal"), "oidc", "spec", "incomingAuth", "type"), "oidcConfigRef is required"),
    ("bad serviceType", _with(_fixture("VirtualMCPServer", "minimal"), "ExternalName", "spec", "serviceType"), "spec.serviceType"),
    ("redis sessions without address", _with(_fixture("VirtualMCPServer", "minimal"), {"provider": "redis"}, "spec", "sessionStorage"), "address is required"),
    ("bad outgoing backend type", _with(_fixture("VirtualMCPServer", "minimal"), {"backends": {"a": {"type": "token"}}}, "spec", "outgoingAuth"), "spec.outgoingAuth.backends.a.type"),
    ("entry without transport", _without(_fixture("MCPServerEntry", "in-cluster-sse"), "spec", "transport"), "spec.transport"),
    ("entry with a non-HTTP URL", _with(_fixture("MCPServerEntry", "in-cluster-sse"), "ftp://files/mcp", "spec", "remoteUrl"), "spec.remoteUrl"),
    # The shapes of vmcp's CRDs before they followed the reference: rejected, not half-read.
    ("groupRef as a bare name", _with(_fixture("MCPServerEntry", "in-cluster-sse"), "engineering", "spec", "groupRef"), "spec.groupRef"),
    ("remoteURL spelling", _with(_without(_fixture("MCPServerEntry", "in-cluster-sse"), "spec", "remoteUrl"), "http://x/mcp", "spec", "remoteURL"), "remoteURL"),
    ("unknown spec field", _with(_fixture("VirtualMCPServer", "minimal"), 1, "spec", "replica"), 'unknown field "spec.replica"'),
]


@pytest.mark.parametrize("what,doc,mentions", BROKEN, ids=[what for what, _, _ in BROKEN])
def test_broken_manifest_is_rejected(kube: Kube, namespace: str, what: str, doc: dict[str, Any], mentions: str) -> None:
    # A create, not an apply: server-side apply answers a manifest that does not fit the schema's
    # types with a 500 ("failed to create typed patch object"), a create with the validation error.
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    collection = kube.object_path(doc).rsplit("/", 1)[0]
    with pytest.raises(KubeError) as caught:
        kube.create(collection, doc, **STRICT_DRY_RUN)
    assert caught.value.status in (400, 422), f"{what}: {caught.value}"
    assert mentions in str(caught.value), f"{what}: the error does not name {mentions!r}: {caught.value}"


# The reference's names, short names, categories and printer columns, per kind (vmcp adds
# `Reporting` to VirtualMCPServer: the operator's RuntimeReporting condition, last).
EXPECTED_NAMES = {
    "VirtualMCPServer": (["vmcp", "virtualmcp"], ["Phase", "URL", "Backends", "Age", "Ready", "Reporting"]),
    "MCPGroup": (["mcpg", "mcpgroup"], ["Servers", "Proxies", "Phase", "Checked", "Age"]),
    "MCPServer": (["mcpserver", "mcpservers"], ["Status", "Ready", "Replicas", "URL", "Age"]),
    "MCPServerEntry": (["mcpentry"], ["Phase", "Transport", "Remote URL", "Group", "Age"]),
}


def test_short_names_categories_and_columns_are_the_references(kube: Kube) -> None:
    served = {r["kind"]: r for r in kube.resources(API_VERSION, refresh=True) if "/" not in r["name"]}
    for kind, (short_names, columns) in EXPECTED_NAMES.items():
        assert served[kind].get("shortNames") == short_names, kind
        assert served[kind].get("categories") == ["toolhive"], kind
        crd = kube.get(crd_definition_path(f"{served[kind]['name']}.toolhive.stacklok.dev"))
        (version,) = crd["spec"]["versions"]
        assert [c["name"] for c in version["additionalPrinterColumns"]] == columns, kind


def declared_paths(schema: dict[str, Any], path: str) -> Iterator[str]:
    """Every field path a structural schema declares, down to subtrees kept as written."""
    yield path
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    for key, sub in (schema.get("properties") or {}).items():
        yield from declared_paths(sub, f"{path}.{key}")
    if "items" in schema:
        yield from declared_paths(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from declared_paths(schema["additionalProperties"], f"{path}{{}}")


def set_paths(schema: dict[str, Any], value: Any, path: str) -> Iterator[str]:
    """The declared paths (as declared_paths names them) that `value` sets."""
    yield path
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, sub in value.items():
            if key in properties:
                yield from set_paths(properties[key], sub, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from set_paths(schema["additionalProperties"], sub, f"{path}{{}}")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            yield from set_paths(schema["items"], item, f"{path}[]")


def test_fixtures_set_every_spec_field_our_crds_declare() -> None:
    docs = [doc for _, doc in fixture_docs()]
    unset = {}
    for path in sorted(Path(CRD_DIR).glob("*.yaml")):
        for crd in load_yaml_docs(path):
            kind = crd["spec"]["names"]["kind"]
            (version,) = crd["spec"]["versions"]
            spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            seen: set[str] = set()
            for doc in docs:
                if doc["kind"] == kind:
                    seen.update(set_paths(spec, doc.get("spec") or {}, "spec"))
            missing = [p for p in declared_paths(spec, "spec") if p not in seen]
            if missing:
                unset[kind] = missing
    assert not unset, f"fields no fixture sets: {unset}"
