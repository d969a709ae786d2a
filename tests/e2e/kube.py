"""A small Kubernetes REST client for the end-to-end tests (httpx, JSON in and out).

It talks to the real kube-apiserver that scripts/kube-test-env.sh runs on loopback:

    kube = Kube.from_state_dir(STATE_DIR)             # admin (group system:masters)
    user = Kube.from_state_dir(STATE_DIR, user="user")  # plain user, RBAC denies almost everything
    sa = kube.impersonate_sa("t-abc", "vmcp")         # admin acting as a service account

    kube.create(ns_path("t-abc", "serviceaccounts"), {...})
    kube.apply(vmcp_path("t-abc", "demo"), obj, field_manager="e2e")
    kube.apply_status(vmcp_path("t-abc", "demo"), {"status": {...}}, field_manager="e2e")
    kube.wait_for(lambda: kube.get(path)["status"].get("phase") == "Ready", 30, "phase Ready")
    await await_for(lambda: ..., 30, "...")          # the same from an async test (polls in a thread)

Every non-2xx answer raises KubeError(status, reason, message). Paths are plain API paths
(`/api/v1/namespaces/x`, `/apis/toolhive.stacklok.dev/v1beta1/...`); the helpers below build them.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO / ".cache" / "kube-test-env"
CRD_DIR = REPO / "deploy" / "crds"

# Our CRDs (GUIDE section 4).
GROUP = "toolhive.stacklok.dev"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
VIRTUALMCPSERVERS = "virtualmcpservers"
MCPGROUPS = "mcpgroups"
MCPSERVERS = "mcpservers"
MCPSERVERENTRIES = "mcpserverentries"
MCPOIDCCONFIGS = "mcpoidcconfigs"
CRD_PLURALS = (VIRTUALMCPSERVERS, MCPGROUPS, MCPSERVERS, MCPSERVERENTRIES, MCPOIDCCONFIGS)

FIELD_MANAGER = "vmcp-e2e"


class KubeError(Exception):
    """A non-2xx answer from the API server (or no answer at all: status 0)."""

    def __init__(self, status: int, reason: str, message: str, *, method: str = "", path: str = "", body: Any = None) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path
        self.body = body
        super().__init__(f"{method} {path}: {status} {reason}: {message}".strip())


class WaitTimeout(AssertionError):
    """wait_for/watch_until gave up; `last` is the last value observed (or the last error)."""

    def __init__(self, message: str, last: Any = None) -> None:
        self.last = last
        super().__init__(message)


# ---------------------------------------------------------------------------
# paths


def api_prefix(api_version: str) -> str:
    """`/api/v1` for the core group, `/apis/<group>/<version>` otherwise."""
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def resource_path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
    """Collection or object path of any resource (namespaced when `namespace` is given)."""
    path = api_prefix(api_version)
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{name}"
    if subresource is not None:
        assert name is not None, "a subresource needs an object name"
        path += f"/{subresource}"
    return path


def crd_path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """Path of one of our custom resources (toolhive.stacklok.dev/v1beta1)."""
    return resource_path(API_VERSION, plural, namespace, name)


def vmcp_path(namespace: str | None = None, name: str | None = None) -> str:
    return crd_path(VIRTUALMCPSERVERS, namespace, name)


def mcpgroup_path(namespace: str | None = None, name: str | None = None) -> str:
    return crd_path(MCPGROUPS, namespace, name)


def mcpserver_path(namespace: str | None = None, name: str | None = None) -> str:
    return crd_path(MCPSERVERS, namespace, name)


def mcpserverentry_path(namespace: str | None = None, name: str | None = None) -> str:
    return crd_path(MCPSERVERENTRIES, namespace, name)


def namespace_path(name: str | None = None) -> str:
    return resource_path("v1", "namespaces", None, name)


def ns_path(namespace: str, plural: str, name: str | None = None) -> str:
    """Core (v1) namespaced resource: serviceaccounts, secrets, configmaps, events, services..."""
    return resource_path("v1", plural, namespace, name)


def serviceaccount_path(namespace: str, name: str | None = None) -> str:
    return ns_path(namespace, "serviceaccounts", name)


def events_path(namespace: str | None = None, name: str | None = None) -> str:
    """Core v1 events (what kube-rs' Recorder writes are events.k8s.io/v1; see events_v1_path)."""
    return resource_path("v1", "events", namespace, name)


def events_v1_path(namespace: str | None = None, name: str | None = None) -> str:
    return resource_path("events.k8s.io/v1", "events", namespace, name)


def lease_path(namespace: str, name: str | None = None) -> str:
    return resource_path("coordination.k8s.io/v1", "leases", namespace, name)


def role_path(namespace: str, name: str | None = None) -> str:
    return resource_path("rbac.authorization.k8s.io/v1", "roles", namespace, name)


def rolebinding_path(namespace: str, name: str | None = None) -> str:
    return resource_path("rbac.authorization.k8s.io/v1", "rolebindings", namespace, name)


def clusterrole_path(name: str | None = None) -> str:
    return resource_path("rbac.authorization.k8s.io/v1", "clusterroles", None, name)


def clusterrolebinding_path(name: str | None = None) -> str:
    return resource_path("rbac.authorization.k8s.io/v1", "clusterrolebindings", None, name)


def crd_definition_path(name: str | None = None) -> str:
    return resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions", None, name)


def pod_path(namespace: str, name: str | None = None) -> str:
    return ns_path(namespace, "pods", name)


def service_path(namespace: str, name: str | None = None) -> str:
    return ns_path(namespace, "services", name)


def deployment_path(namespace: str, name: str | None = None) -> str:
    return resource_path("apps/v1", "deployments", namespace, name)


def endpointslices_path(namespace: str) -> str:
    return resource_path("discovery.k8s.io/v1", "endpointslices", namespace)


# ---------------------------------------------------------------------------
# manifests of our custom resources (their shape lives here, in one place)


def mcpgroup_manifest(namespace: str, name: str, description: str = "e2e") -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "MCPGroup", "metadata": {"name": name, "namespace": namespace}, "spec": {"description": description}}


def virtualmcpserver_manifest(namespace: str, name: str, group: str, spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A VirtualMCPServer of `group`; `spec` adds fields (e.g. `config`, `replicas`)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualMCPServer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"incomingAuth": {"type": "anonymous"}, "groupRef": {"name": group}, **(spec or {})},
    }


def mcpserverentry_manifest(namespace: str, name: str, url: str, group: str, transport: str = "streamable-http") -> dict[str, Any]:
    """An MCPServerEntry (a remote backend) of `group` at `url`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "MCPServerEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"remoteUrl": url, "transport": transport, "groupRef": {"name": group}},
    }


def sa_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def sa_groups(namespace: str) -> list[str]:
    return ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]


# ---------------------------------------------------------------------------
# small helpers


def wait_for(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call `fn` until it returns something truthy and return that. Exceptions count as "not yet".
    On timeout raise WaitTimeout naming `what` and showing the last value (or error) seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except Exception as exc:  # keep polling; report it if it is the last thing seen
            last = exc
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}; last observed: {_show(last)}", last)
        time.sleep(interval)


async def await_for(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """wait_for for async tests: each call of `fn` (which may block on HTTP, e.g. a Kube method)
    runs in a worker thread, so the event loop (and an MCP session on it) keeps running."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = await anyio.to_thread.run_sync(fn)
            if value:
                return value
            last = value
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}; last observed: {_show(last)}", last)
        await anyio.sleep(interval)


def _show(value: Any, limit: int = 2000) -> str:
    if isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, indent=1, default=str)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + " …"


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    """The status condition of type `type_` of an object, or None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def load_yaml_docs(path: Path | str, substitutions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """All non-empty YAML documents of a file (after plain-text `substitutions`); `List` kinds are flattened."""
    text = Path(path).read_text()
    for old, new in (substitutions or {}).items():
        text = text.replace(old, new)
    docs: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise ValueError(f"{path}: a document without apiVersion/kind: {_show(doc, 300)}")
        if doc["kind"].endswith("List") and isinstance(doc.get("items"), list):
            docs.extend(doc["items"])
        else:
            docs.append(doc)
    return docs


# ---------------------------------------------------------------------------
# the client


class Kube:
    """JSON client for one identity on one API server. Cheap to copy (`impersonate`)."""

    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        ca_file: Path | str | None = None,
        headers: list[tuple[str, str]] | None = None,
        timeout: float = 15.0,
        state_dir: Path | None = None,
        _http: httpx.Client | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.ca_file = Path(ca_file) if ca_file else None
        self.headers = list(headers or [])
        self.timeout = timeout
        self.state_dir = state_dir
        if _http is None:
            verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True
            _http = httpx.Client(base_url=self.server, verify=verify, timeout=timeout)
        self._http = _http
        self._discovery: dict[str, list[dict[str, Any]]] = {}

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_state_dir(cls, state_dir: Path | str = DEFAULT_STATE_DIR, user: str = "admin", timeout: float = 15.0) -> Kube:
        """Client for scripts/kube-test-env.sh's environment: `user` is "admin" or "user"
        (the plain user vmcp-test-user, only system:authenticated)."""
        state_dir = Path(state_dir)
        token_file = state_dir / f"{user}.token"
        if not token_file.is_file():
            raise FileNotFoundError(f"{token_file} missing: is the environment in {state_dir} started?")
        return cls(
            server_from_state_dir(state_dir),
            token=token_file.read_text().strip(),
            ca_file=state_dir / "pki" / "ca.crt",
            timeout=timeout,
            state_dir=state_dir,
        )

    def with_token(self, token: str) -> Kube:
        """Same server, another bearer token (e.g. a service account token from `sa_token`)."""
        return Kube(self.server, token=token, ca_file=self.ca_file, timeout=self.timeout, state_dir=self.state_dir, _http=self._http)

    def impersonate(self, user: str, groups: Iterable[str] = ()) -> Kube:
        """A client sending Impersonate-User/Impersonate-Group (this client's identity must be
        allowed to impersonate; admin is). The API server adds system:authenticated itself."""
        headers = [("Impersonate-User", user)] + [("Impersonate-Group", g) for g in groups]
        return Kube(
            self.server, token=self.token, ca_file=self.ca_file, headers=headers, timeout=self.timeout, state_dir=self.state_dir, _http=self._http
        )

    def impersonate_sa(self, namespace: str, name: str) -> Kube:
        """Impersonate service account `namespace/name` with its usual groups."""
        return self.impersonate(sa_username(namespace, name), sa_groups(namespace))

    def close(self) -> None:
        self._http.close()

    # --- raw requests ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        """One request; the decoded JSON answer (or text when it is not JSON). Raises KubeError."""
        headers = list(self.headers)
        headers.append(("Accept", "application/json"))
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        content = None
        if body is not None:
            content = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers.append(("Content-Type", content_type))
        params = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._http.request(
                method, path, params=params, content=content, headers=headers, timeout=timeout if timeout is not None else self.timeout
            )
        except httpx.HTTPError as exc:
            raise KubeError(0, type(exc).__name__, str(exc) or repr(exc), method=method, path=path) from exc
        return _decode(resp, method, path)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def list(self, path: str, **params: Any) -> dict[str, Any]:
        """A collection GET: the List object (`items`, `metadata.resourceVersion`). Params such as
        labelSelector, fieldSelector, limit go to the query string."""
        return self.request("GET", path, params=params)

    def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        return self.list(path, **params).get("items") or []

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise

    def create(self, path: str, obj: Mapping[str, Any], **params: Any) -> dict[str, Any]:
        """POST to a collection path."""
        return self.request("POST", path, params=params, body=obj)

    def replace(self, path: str, obj: Mapping[str, Any], **params: Any) -> dict[str, Any]:
        """PUT (an update; with metadata.resourceVersion set it is a compare-and-swap)."""
        return self.request("PUT", path, params=params, body=obj)

    def delete(self, path: str, *, missing_ok: bool = False, **params: Any) -> Any:
        try:
            return self.request("DELETE", path, params=params)
        except KubeError as exc:
            if missing_ok and exc.status == 404:
                return None
            raise

    def apply(self, path: str, obj: Mapping[str, Any], field_manager: str = FIELD_MANAGER, force: bool = True, **params: Any) -> dict[str, Any]:
        """Server-side apply of `obj` to the object path `path` (JSON is valid YAML)."""
        params = {"fieldManager": field_manager, "force": force, **params}
        return self.request("PATCH", path, params=params, body=obj, content_type="application/apply-patch+yaml")

    def apply_status(self, path: str, obj: Mapping[str, Any], field_manager: str = FIELD_MANAGER, force: bool = True, **params: Any) -> dict[str, Any]:
        """Server-side apply to the /status subresource of the object at `path`. `obj` needs
        apiVersion, kind, metadata.name and the `status` fields this manager owns."""
        return self.apply(path.rstrip("/") + "/status", obj, field_manager, force, **params)

    def merge_patch(self, path: str, patch: Mapping[str, Any], **params: Any) -> dict[str, Any]:
        """JSON merge patch (RFC 7386). For a subresource append it to the path (`.../status`)."""
        return self.request("PATCH", path, params=params, body=patch, content_type="application/merge-patch+json")

    def json_patch(self, path: str, ops: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        """JSON patch (RFC 6902), e.g. [{"op": "test", ...}, {"op": "replace", ...}]."""
        return self.request("PATCH", path, params=params, body=ops, content_type="application/json-patch+json")

    # --- waiting and watching -------------------------------------------------------------

    @staticmethod
    def wait_for(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
        return wait_for(fn, timeout, what, interval)

    def wait_object(self, path: str, predicate: Callable[[dict[str, Any]], Any], timeout: float, what: str, interval: float = 0.1) -> dict[str, Any]:
        """Poll GET `path` until `predicate(obj)` is truthy; return that object. On timeout the
        error shows the last object seen (or the last error, e.g. 404)."""
        seen: list[Any] = [None]

        def probe() -> dict[str, Any] | None:
            try:
                obj = self.get(path)
            except KubeError as exc:
                seen[0] = exc
                return None
            seen[0] = obj
            return obj if predicate(obj) else None

        try:
            return wait_for(probe, timeout, what, interval)
        except WaitTimeout as exc:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what} at {path}; last observed: {_show(seen[0])}", seen[0]) from None

    def watch(
        self, path: str, *, resource_version: str | None = None, timeout: float = 30.0, **params: Any
    ) -> Iterator[dict[str, Any]]:
        """Watch events ({"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": {...}}) of the
        collection at `path` (narrow it with fieldSelector="metadata.name=x"). Ends after `timeout`
        seconds (server side); without `resource_version` it starts with ADDED for what exists."""
        query = {"watch": "true", "timeoutSeconds": max(1, int(timeout)), "resourceVersion": resource_version, **params}
        query = {k: _param(v) for k, v in query.items() if v is not None}
        headers = list(self.headers) + [("Accept", "application/json")]
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        try:
            with self._http.stream("GET", path, params=query, headers=headers, timeout=httpx.Timeout(self.timeout, read=timeout + 10)) as resp:
                if resp.status_code >= 300:
                    resp.read()
                    _decode(resp, "WATCH", path)
                for line in resp.iter_lines():
                    if line.strip():
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object") or {}
                            raise KubeError(status.get("code", 0), status.get("reason", ""), status.get("message", ""), method="WATCH", path=path, body=status)
                        yield event
        except httpx.HTTPError as exc:
            raise KubeError(0, type(exc).__name__, str(exc) or repr(exc), method="WATCH", path=path) from exc

    def watch_until(
        self, path: str, predicate: Callable[[dict[str, Any]], Any], timeout: float, what: str = "condition", **params: Any
    ) -> dict[str, Any]:
        """Watch the collection at `path` until an event's object satisfies `predicate` (objects
        that exist already count: they arrive as ADDED); return that object."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"timed out after {timeout}s watching {path} for {what}; last observed: {_show(last)}", last)
            try:
                for event in self.watch(path, timeout=max(1.0, remaining), **params):
                    last = event.get("object")
                    if event.get("type") in ("ADDED", "MODIFIED") and predicate(last):
                        return last
            except KubeError as exc:  # e.g. 410 Gone or a restarting API server: start over
                last = exc
                time.sleep(0.2)

    # --- authorization --------------------------------------------------------------------

    def can_i(
        self,
        verb: str,
        resource: str,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        group: str = "",
    ) -> bool:
        """SelfSubjectAccessReview for this client's identity (the impersonated one, if any)."""
        attrs: dict[str, Any] = {"verb": verb, "resource": resource, "group": group}
        for key, value in (("namespace", namespace), ("name", name), ("subresource", subresource)):
            if value is not None:
                attrs[key] = value
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
        answer = self.create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
        return bool(answer.get("status", {}).get("allowed"))

    def can(
        self,
        user: str,
        verb: str,
        resource: str,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        group: str = "",
        groups: Iterable[str] = (),
    ) -> bool:
        """SubjectAccessReview: may `user` (with `groups`) do this? Needs an admin client."""
        attrs: dict[str, Any] = {"verb": verb, "resource": resource, "group": group}
        for key, value in (("namespace", namespace), ("name", name), ("subresource", subresource)):
            if value is not None:
                attrs[key] = value
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": list(groups), "resourceAttributes": attrs},
        }
        answer = self.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
        return bool(answer.get("status", {}).get("allowed"))

    def whoami(self) -> dict[str, Any]:
        """SelfSubjectReview: the user info the API server sees (username, groups)."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        return self.create("/apis/authentication.k8s.io/v1/selfsubjectreviews", review)["status"]["userInfo"]

    # --- service accounts and kubeconfigs -------------------------------------------------

    def ensure_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}}
        return self.apply(namespace_path(name), obj)

    def ensure_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        obj = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
        return self.apply(serviceaccount_path(namespace, name), obj)

    def sa_token(self, namespace: str, name: str, expiration_seconds: int = 3600) -> str:
        """A real service account token (TokenRequest API; the API server signs it). The service
        account must exist (ensure_service_account)."""
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_seconds},
        }
        answer = self.create(serviceaccount_path(namespace, name) + "/token", request)
        return answer["status"]["token"]

    def write_kubeconfig(self, path: Path | str, *, token: str | None = None, namespace: str = "default", user: str = "vmcp") -> Path:
        """A kubeconfig for this server with `token` (default: this client's token), for processes
        under test (KUBECONFIG=path). Impersonation headers are not carried over: use a
        service account token (sa_token) to run a process as a service account."""
        ca = self.ca_file.read_bytes() if self.ca_file else b""
        cluster: dict[str, Any] = {"server": self.server}
        if ca:
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "vmcp-test", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token or self.token}}],
            "contexts": [{"name": "vmcp-test", "context": {"cluster": "vmcp-test", "user": user, "namespace": namespace}}],
            "current-context": "vmcp-test",
        }
        path = Path(path)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # --- discovery, CRDs and YAML files ----------------------------------------------------

    def resources(self, api_version: str, refresh: bool = False) -> list[dict[str, Any]]:
        """Discovery: the APIResource list of a group/version (cached)."""
        if refresh or api_version not in self._discovery:
            self._discovery[api_version] = self.get(api_prefix(api_version)).get("resources") or []
        return self._discovery[api_version]

    def resource_for(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of `kind` in `api_version`, from discovery."""
        for refresh in (False, True):
            try:
                found = self.resources(api_version, refresh)
            except KubeError as exc:
                if exc.status != 404 or refresh:
                    raise
                continue
            for res in found:
                if res.get("kind") == kind and "/" not in res.get("name", ""):
                    return res["name"], bool(res.get("namespaced"))
        raise KubeError(404, "NotFound", f"no resource of kind {kind} in {api_version}")

    def object_path(self, obj: Mapping[str, Any], namespace: str | None = None) -> str:
        """The object path of a manifest; namespaced kinds take metadata.namespace or `namespace`."""
        plural, namespaced = self.resource_for(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata") or {}
        ns = None
        if namespaced:
            ns = meta.get("namespace") or namespace
            if not ns:
                raise ValueError(f"{obj['kind']} {meta.get('name')}: namespaced, but no namespace given")
        return resource_path(obj["apiVersion"], plural, ns, meta["name"])

    def apply_objects(self, docs: Iterable[Mapping[str, Any]], field_manager: str = FIELD_MANAGER, namespace: str | None = None) -> list[dict[str, Any]]:
        """Server-side apply each manifest, in order; returns what the server answered."""
        out = []
        for doc in docs:
            doc = dict(doc)
            plural, namespaced = self.resource_for(doc["apiVersion"], doc["kind"])
            if namespaced and namespace and not (doc.get("metadata") or {}).get("namespace"):
                doc["metadata"] = {**doc["metadata"], "namespace": namespace}
            out.append(self.apply(self.object_path(doc), doc, field_manager))
        return out

    def apply_yaml_file(
        self,
        path: Path | str,
        namespace_substitutions: Mapping[str, str] | None = None,
        *,
        namespace: str | None = None,
        substitutions: Mapping[str, str] | None = None,
        field_manager: str = FIELD_MANAGER,
    ) -> list[dict[str, Any]]:
        """Apply every document of a YAML file (e.g. deploy/rbac/*.yaml).

        namespace_substitutions: {"vmcp-system": "t-abc"} moves objects (metadata.namespace) and
        RoleBinding/ClusterRoleBinding subjects (subjects[].namespace) from one namespace to
        another. `namespace` is used for namespaced objects that name none. `substitutions` are
        plain-text replacements made before parsing (for placeholders)."""
        docs = load_yaml_docs(path, substitutions)
        moved = []
        for doc in docs:
            doc = json.loads(json.dumps(doc))  # deep copy
            meta = doc.setdefault("metadata", {})
            for old, new in (namespace_substitutions or {}).items():
                if meta.get("namespace") == old:
                    meta["namespace"] = new
                for subject in doc.get("subjects") or []:
                    if subject.get("namespace") == old:
                        subject["namespace"] = new
            moved.append(doc)
        return self.apply_objects(moved, field_manager, namespace)

    def install_crds(self, directory: Path | str = CRD_DIR, timeout: float = 60.0) -> list[str]:
        """Apply every CustomResourceDefinition in `directory`/*.yaml (multi-document files
        allowed), wait until each is Established and its resources are served. Idempotent.
        Returns the CRD names."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"CRD directory {directory} does not exist")
        files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        names: list[str] = []
        served: list[tuple[str, str]] = []  # (group/version, plural)
        for file in files:
            for doc in load_yaml_docs(file):
                if doc.get("kind") != "CustomResourceDefinition":
                    raise ValueError(f"{file}: expected only CustomResourceDefinition documents, found {doc.get('kind')}")
                name = doc["metadata"]["name"]
                self.apply(crd_definition_path(name), doc, field_manager=FIELD_MANAGER)
                names.append(name)
                spec = doc["spec"]
                for version in spec.get("versions") or []:
                    if version.get("served", True):
                        served.append((f"{spec['group']}/{version['name']}", spec["names"]["plural"]))
        if not names:
            raise ValueError(f"no CustomResourceDefinition found in {directory}")
        for name in names:

            def established(obj: dict[str, Any]) -> bool:
                cond = condition(obj, "Established")
                return bool(cond and cond.get("status") == "True")

            self.wait_object(crd_definition_path(name), established, timeout, f"CRD {name} to be Established")
        self.wait_served(served, timeout)
        return names

    def wait_served(self, resources: Iterable[tuple[str, str]], timeout: float = 60.0) -> None:
        """Wait until discovery lists each (group/version, plural) and a LIST of it answers."""
        wanted = list(resources)

        def all_served() -> bool:
            for api_version, plural in wanted:
                if plural not in {r.get("name") for r in self.resources(api_version, refresh=True)}:
                    return False
                self.get(resource_path(api_version, plural), limit=1)
            return True

        wait_for(all_served, timeout, f"resources {wanted} to be served", interval=0.2)

    # --- health ---------------------------------------------------------------------------

    def readyz(self, verbose: bool = False) -> str:
        return self.request("GET", "/readyz", params={"verbose": "true" if verbose else None})

    def is_ready(self) -> bool:
        try:
            return self.readyz() == "ok"
        except KubeError:
            return False


def server_from_state_dir(state_dir: Path | str) -> str:
    """The API server URL of scripts/kube-test-env.sh's environment (kubeconfig, else env file)."""
    state_dir = Path(state_dir)
    kubeconfig = state_dir / "kubeconfig"
    if kubeconfig.is_file():
        config = yaml.safe_load(kubeconfig.read_text())
        for cluster in config.get("clusters") or []:
            server = (cluster.get("cluster") or {}).get("server")
            if server:
                return server
    env = state_dir / "env"
    if env.is_file():
        for line in env.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "APISERVER_PORT":
                return f"https://127.0.0.1:{value.strip()}"
    raise FileNotFoundError(f"no kubeconfig or env file in {state_dir}: is the environment started?")


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decode(resp: httpx.Response, method: str, path: str) -> Any:
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    if resp.status_code >= 300:
        if isinstance(body, dict) and body.get("kind") == "Status":
            raise KubeError(resp.status_code, body.get("reason") or "", body.get("message") or "", method=method, path=path, body=body)
        raise KubeError(resp.status_code, resp.reason_phrase, str(body)[:1000], method=method, path=path, body=body)
    return body



# ---------------------------------------------------------------------------
# the environment (scripts/kube-test-env.sh)

SCRIPT = REPO / "scripts" / "kube-test-env.sh"


class KubeEnvError(Exception):
    """scripts/kube-test-env.sh failed; the message carries the tail of its stderr."""


class KubeEnv:
    """Drives scripts/kube-test-env.sh for one state dir ($VMCP_KUBE_ENV_DIR or .cache/kube-test-env)."""

    def __init__(self, state_dir: Path | str | None = None, *, node: bool = False) -> None:
        """`node`: the environment with a node (`start --node`: pods really run)."""
        self.state_dir = Path(state_dir or os.environ.get("VMCP_KUBE_ENV_DIR") or DEFAULT_STATE_DIR).resolve()
        self.node = node
        self.image_archives: list[Path] = []  # imported into the node's containerd (conftest.node_images)
        self.crds: list[tuple[str, str]] = []  # (group/version, plural) to wait for after a restart
        self._admin: Kube | None = None

    # --- script -----------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 300.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "VMCP_KUBE_ENV_DIR": str(self.state_dir)}
        try:
            proc = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise KubeEnvError(f"scripts/kube-test-env.sh {' '.join(args)} took more than {timeout}s; stderr tail:\n{_tail(err)}") from None
        if check and proc.returncode != 0:
            raise KubeEnvError(f"scripts/kube-test-env.sh {' '.join(args)} exited with {proc.returncode}; stderr tail:\n{_tail(proc.stderr)}")
        return proc

    def is_running(self) -> bool:
        return self.run("status", timeout=60, check=False).returncode == 0

    def _node_flag(self) -> list[str]:
        return ["--node"] if self.node else []

    def installed(self) -> bool:
        return self.run("installed", *self._node_flag(), timeout=30, check=False).returncode == 0

    def start(self, timeout: float = 300.0) -> Path:
        """Start (or reuse) the environment; the admin kubeconfig path."""
        return Path(self.run("start", *self._node_flag(), timeout=timeout).stdout.strip())

    def import_images(self, archives: Iterable[Path | str], timeout: float = 300.0) -> None:
        """Import OCI image archives (scripts/build-images.sh) into the node's containerd."""
        self.run("import-images", *[str(a) for a in archives], timeout=timeout)

    def stop(self) -> None:
        self.run("stop", timeout=120)
        self._admin = None

    def stop_apiserver(self) -> None:
        """Stop only kube-apiserver (etcd and every object stay)."""
        self.run("stop-apiserver", timeout=120)

    def start_apiserver(self, timeout: float = 180.0) -> None:
        """Start kube-apiserver again on the same port and wait until it is ready and serves
        the custom resources installed through this environment."""
        self.run("start-apiserver", timeout=timeout)
        self.wait_ready(timeout)

    def restart_apiserver(self, down_for: float = 0.0, timeout: float = 180.0) -> None:
        self.stop_apiserver()
        if down_for:
            time.sleep(down_for)
        self.start_apiserver(timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        admin = self.admin
        wait_for(admin.is_ready, timeout, "kube-apiserver /readyz", interval=0.2)
        if self.crds:
            admin.wait_served(self.crds, timeout)

    # --- clients and files --------------------------------------------------------------------

    @property
    def admin(self) -> Kube:
        if self._admin is None:
            self._admin = Kube.from_state_dir(self.state_dir, "admin")
        return self._admin

    def user(self) -> Kube:
        """The plain user vmcp-test-user (static token; only system:authenticated)."""
        return Kube.from_state_dir(self.state_dir, "user")

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def user_kubeconfig(self) -> Path:
        return self.state_dir / "user.kubeconfig"

    @property
    def apiserver_log(self) -> Path:
        return self.state_dir / "logs" / "kube-apiserver.log"

    @property
    def etcd_log(self) -> Path:
        return self.state_dir / "logs" / "etcd.log"

    def install_crds(self, directory: Path | str = CRD_DIR, timeout: float = 60.0) -> list[str]:
        """Kube.install_crds, remembering the resources so that start_apiserver waits for them."""
        names = self.admin.install_crds(directory, timeout)
        for name in names:
            crd = self.admin.get(crd_definition_path(name))
            spec = crd["spec"]
            for version in spec.get("versions") or []:
                entry = (f"{spec['group']}/{version['name']}", spec["names"]["plural"])
                if version.get("served") and entry not in self.crds:
                    self.crds.append(entry)
        return names


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"
