"""A real OpenID Connect identity provider for the end-to-end tests: Keycloak on loopback.

scripts/install-idp.sh installs the pinned Keycloak (outside the clone) and does its Quarkus
build once; this module starts it, fresh for each pytest session, on 127.0.0.1 and a free port,
with the realm of keycloak/vmcp-realm.json imported at start:

    kc = Keycloak(tmp_dir); kc.start()     # or the session fixture `keycloak` below
    kc.issuer                              # http://127.0.0.1:<port>/realms/vmcp
    tok = kc.password_token("alice", "alice-pw")["access_token"]   # aud vmcp-gateway, groups [engineering]
    kc.password_token("alice", "alice-pw", scope="mcp:tools")       # scope claim has mcp:tools
    kc.exchange(tok, "backend-alpha")      # RFC 8693 as vmcp-gateway: aud backend-alpha, same sub
    kc.rotate_signing_key()                # new RS256 key, highest priority; returns its kid
    kc.stop()

The realm (tests/e2e/keycloak/vmcp-realm.json; all secrets in it are fixed and test-only):
  clients   vmcp-gateway   confidential, secret gateway-secret, service account, standard token
                           exchange (V2); its default scope aud-backend-alpha is what makes
                           audience=backend-alpha available to the exchange. Can introspect.
            mcp-client     public; password grant; auth code with PKCE S256, redirect URIs
                           http://127.0.0.1/* and http://localhost/* (any port on loopback)
            short-lived    like mcp-client (password grant only), access tokens live 2 s
            backend-alpha  no flows; the exchange's target audience (secret backend-alpha-secret,
                           for introspection by a backend)
  tokens    of mcp-client/short-lived: aud "vmcp-gateway", groups (names, not paths), email,
            preferred_username, realm_access.roles; scope "profile email" (+ "mcp:tools" when
            asked for). Keycloak writes a single audience as a string: use `audiences()`.
            Realm access token lifespan 300 s.
  users     alice (group engineering, alice-pw), bob (group sales, bob-pw); emails verified.
  admin     master realm, admin/admin (the bootstrap admin; test-only).

Expired tokens: use the `short-lived` client (exp - iat == 2) and wait past exp, or change a
lifespan through the admin API, e.g. kc.admin("PUT", "/realms/vmcp", json={"accessTokenLifespan": 1}).
A token signed by a key the IdP no longer publishes: rotate_signing_key(old="disabled").

Environment:
  VMCP_KEYCLOAK_HOME           an installed Keycloak (default: the install dir of scripts/install-idp.sh)
  VMCP_KEYCLOAK_JAVA_HOME      Java >= 21 to run it with (default: <home>/java-home, written by the script)
  VMCP_KEYCLOAK_START_TIMEOUT  seconds to wait for readiness (default 180)

A missing install is a failure, never a skip.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import LOOPBACK, REPO, Proc, ProcessExited, free_port, wait_until

KEYCLOAK_VERSION = "26.7.3"  # keep in step with KC_VERSION in scripts/install-idp.sh
INSTALL_SCRIPT = REPO / "scripts" / "install-idp.sh"
REALM = "vmcp"
REALM_FILE = Path(__file__).resolve().parent / "keycloak" / "vmcp-realm.json"
ADMIN_USER = "admin"  # test-only bootstrap admin of the master realm
ADMIN_PASSWORD = "admin"
GATEWAY_CLIENT = "vmcp-gateway"
GATEWAY_SECRET = "gateway-secret"
BACKEND_ALPHA = "backend-alpha"
BACKEND_ALPHA_SECRET = "backend-alpha-secret"
MCP_CLIENT = "mcp-client"
SHORT_LIVED_CLIENT = "short-lived"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
GROUPS = {"alice": ["engineering"], "bob": ["sales"]}

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class KeycloakError(AssertionError):
    """Keycloak is missing, did not start, or answered an HTTP call with an error."""

    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        if response is not None:
            message = f"{message}: HTTP {response.status_code} {response.text[:500]}"
        super().__init__(message)
        self.response = response


def default_install_dir() -> Path:
    cache = (
        os.environ.get("VMCP_TEST_CACHE")
        or os.environ.get("VMCP_TEST_ENV_CACHE")
        or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vmcp-test-env")
    )
    return Path(cache) / f"keycloak-{KEYCLOAK_VERSION}"


def find_install() -> tuple[Path, Path]:
    """(KEYCLOAK_HOME, JAVA_HOME) of the installed Keycloak; KeycloakError saying what to run if missing."""
    home = Path(os.environ.get("VMCP_KEYCLOAK_HOME") or default_install_dir())
    hint = f"run {INSTALL_SCRIPT.relative_to(REPO)} (or point VMCP_KEYCLOAK_HOME at an installed Keycloak {KEYCLOAK_VERSION})"
    if not (home / "bin" / "kc.sh").is_file() or not (home / "lib" / "quarkus-run.jar").is_file():
        raise KeycloakError(f"Keycloak is not installed at {home}: {hint}")
    if not (home / "lib" / "quarkus" / "quarkus-application.dat").is_file():
        raise KeycloakError(f"Keycloak at {home} has not been built (`kc.sh build`): {hint}")
    java_home = os.environ.get("VMCP_KEYCLOAK_JAVA_HOME")
    if not java_home and (home / "java-home").is_file():
        java_home = (home / "java-home").read_text().strip()
    if not java_home or not os.access(Path(java_home) / "bin" / "java", os.X_OK):
        raise KeycloakError(f"no Java for Keycloak (VMCP_KEYCLOAK_JAVA_HOME, or {home}/java-home): {hint}")
    return home, Path(java_home)


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a JWT, not verified."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError(f"not a JWS compact serialization ({len(parts)} parts)")

    def decode(part: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    return decode(parts[0]), decode(parts[1])


def claims_of(token: str) -> dict[str, Any]:
    return jwt_parts(token)[1]


def audiences(claims: dict[str, Any]) -> list[str]:
    """The aud claim as a list (Keycloak writes a single audience as a plain string)."""
    aud = claims.get("aud", [])
    return [aud] if isinstance(aud, str) else list(aud)


class Keycloak:
    """One Keycloak server on 127.0.0.1, with its own home (data dir) under `work_dir`."""

    def __init__(self, work_dir: Path, realm_file: Path = REALM_FILE, java_opts: list[str] | None = None) -> None:
        self.install_home, self.java_home = find_install()
        self.java_opts = list(java_opts or [])
        self.work_dir = work_dir
        self.realm_file = realm_file
        self.port = free_port()
        self.management_port = free_port()
        self.home = work_dir / "home"
        self.proc: Proc | None = None
        self.start_seconds: float | None = None
        self.http = httpx.Client(timeout=30.0)
        self._admin_token: tuple[str, float] | None = None

    # --- addresses ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/realms/{REALM}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def introspection_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token/introspect"

    @property
    def authorization_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/auth"

    @property
    def admin_url(self) -> str:
        return f"{self.base_url}/admin/realms/{REALM}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "keycloak.log"

    # --- lifecycle ------------------------------------------------------------------

    def _make_home(self) -> None:
        """A home of our own: kc.sh derives the home (and so data/, the import dir, the H2
        files, tmp/) from its own location, so it is copied and the rest linked to the install."""
        if self.home.exists():
            shutil.rmtree(self.home)
        (self.home / "bin").mkdir(parents=True)
        shutil.copy2(self.install_home / "bin" / "kc.sh", self.home / "bin" / "kc.sh")
        for name in ("lib", "conf", "providers", "themes"):
            (self.home / name).symlink_to(self.install_home / name)
        (self.home / "data" / "import").mkdir(parents=True)
        shutil.copy2(self.realm_file, self.home / "data" / "import" / self.realm_file.name)
        # A database with the schema and the master realm already made (scripts/install-idp.sh
        # makes it once): skips ~10 s of Liquibase and master-realm setup at every start.
        template = self.install_home / "db-template" / "h2"
        if template.is_dir():
            shutil.copytree(template, self.home / "data" / "h2")

    def start(self, timeout: float | None = None) -> None:
        timeout = timeout or float(os.environ.get("VMCP_KEYCLOAK_START_TIMEOUT") or 180)
        self._make_home()
        argv = [
            str(self.home / "bin" / "kc.sh"),
            "start",
            "--optimized",
            "--import-realm",
            "--http-enabled=true",
            f"--http-host={LOOPBACK}",
            f"--http-port={self.port}",
            f"--http-management-port={self.management_port}",
            f"--hostname=http://{LOOPBACK}:{self.port}",
            "--hostname-strict=true",
            "--hostname-backchannel-dynamic=false",
            "--cache=local",  # no JGroups cluster: nothing listens beyond loopback
            "--log-level=INFO,io.smallrye.health:WARN",
        ]
        env = {
            "JAVA_HOME": str(self.java_home),
            "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        java_opts = list(self.java_opts)
        aot = self.install_home / "keycloak.aot"
        if aot.is_file():  # JDK >= 25 AOT cache made by scripts/install-idp.sh (class loading, linking)
            java_opts.insert(0, f"-XX:AOTCache={aot}")
        if java_opts:
            env["JAVA_OPTS_APPEND"] = " ".join(java_opts)
        self.proc = Proc("keycloak", argv, self.work_dir, env=env)
        started = time.monotonic()
        self.proc.start()
        try:
            self.wait_ready(timeout)
        except (AssertionError, ProcessExited) as exc:
            self.stop()
            raise KeycloakError(f"Keycloak did not become ready: {exc}\nlog tail ({self.log_path}):\n{self.log_tail(40)}") from None
        self.start_seconds = time.monotonic() - started

    def wait_ready(self, timeout: float) -> None:
        """Poll the readiness check (management port), then the realm's discovery document."""
        assert self.proc is not None

        def ready() -> bool:
            self.proc.check_alive()
            return self.http.get(f"http://{LOOPBACK}:{self.management_port}/health/ready", timeout=2).status_code == 200

        wait_until(ready, timeout, interval=0.25, what=f"Keycloak readiness on {self.management_port}")
        discovery = self.http.get(self.discovery_url)
        if discovery.status_code != 200:
            raise KeycloakError(f"realm {REALM} not served", discovery)
        if discovery.json().get("issuer") != self.issuer:
            raise KeycloakError(f"unexpected issuer {discovery.json().get('issuer')!r}, wanted {self.issuer!r}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def stop(self) -> None:
        """SIGTERM (kc.sh passes it to the JVM), then SIGKILL to the process group after 20 s."""
        if self.proc is not None:
            self.proc.stop(grace=20.0)
        self.http.close()

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Keycloak:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 60) -> str:
        return self.proc.log_tail(lines) if self.proc else "(not started)"

    # --- OAuth endpoints --------------------------------------------------------------

    def post_token(self, data: dict[str, str], auth: tuple[str, str] | None = None, url: str | None = None) -> httpx.Response:
        """A raw token-endpoint request (for tests of error answers)."""
        return self.http.post(url or self.token_url, data=data, auth=auth)

    def _token(self, data: dict[str, str], auth: tuple[str, str] | None, what: str, url: str | None = None) -> dict[str, Any]:
        response = self.post_token(data, auth, url)
        if response.status_code != 200:
            raise KeycloakError(what, response)
        return response.json()

    def password_token(self, user: str, password: str, client_id: str = MCP_CLIENT, scope: str | None = None) -> dict[str, Any]:
        """The token response of a resource-owner password grant (public client)."""
        data = {"grant_type": "password", "client_id": client_id, "username": user, "password": password}
        if scope is not None:
            data["scope"] = scope
        return self._token(data, None, f"password grant for {user} via {client_id}")

    def browser_login(self, authorization_url: str, user: str, password: str) -> dict[str, str]:
        """What a person does in a browser: open `authorization_url` (an authorization code request),
        fill in Keycloak's login form, and follow the redirects until the one to the client's
        redirect URI, which is not followed; returns that redirect's query (code, state, iss)."""
        import html
        import re
        from urllib.parse import parse_qs, urlsplit

        with httpx.Client(timeout=30.0, follow_redirects=False) as browser:
            # Keycloak's login cookies are `Secure`; browsers send those to http://127.0.0.1 (a
            # potentially trustworthy origin), httpx does not: send the jar by hand.
            def cookies() -> dict[str, str]:
                return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar)}

            page = browser.get(authorization_url)
            if page.status_code != 200:
                raise KeycloakError("the authorization request", page)
            action = re.search(r'<form[^>]+id="kc-form-login"[^>]+action="([^"]+)"', page.text)
            if action is None:
                raise KeycloakError("no login form in the authorization page", page)
            answer = browser.post(
                html.unescape(action.group(1)), data={"username": user, "password": password}, headers=cookies()
            )
            while answer.status_code in (302, 303) and answer.headers["location"].startswith(self.base_url):
                answer = browser.get(answer.headers["location"], headers=cookies())
            if answer.status_code not in (302, 303):
                shown = re.search(r'(?:kc-feedback-text|alert__title|instruction)[^>]*>\s*([^<]+)', answer.text)
                said = html.unescape(shown.group(1).strip()) if shown else "no message"
                raise KeycloakError(f"login of {user}: HTTP {answer.status_code}, Keycloak says {said!r}")
            query = parse_qs(urlsplit(answer.headers["location"]).query)
            return {key: values[0] for key, values in query.items()}

    def client_credentials_token(self, client_id: str = GATEWAY_CLIENT, secret: str = GATEWAY_SECRET) -> dict[str, Any]:
        return self._token({"grant_type": "client_credentials"}, (client_id, secret), f"client credentials of {client_id}")

    def exchange(
        self,
        subject_token: str,
        audience: str,
        client_id: str = GATEWAY_CLIENT,
        secret: str = GATEWAY_SECRET,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """RFC 8693 standard token exchange: an access token for `audience` in place of `subject_token`."""
        data = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": ACCESS_TOKEN_TYPE,
            "audience": audience,
        }
        if scope is not None:
            data["scope"] = scope
        return self._token(data, (client_id, secret), f"token exchange by {client_id} for audience {audience}")

    def introspect(self, token: str, client_id: str = GATEWAY_CLIENT, secret: str = GATEWAY_SECRET) -> dict[str, Any]:
        response = self.http.post(self.introspection_url, data={"token": token}, auth=(client_id, secret))
        if response.status_code != 200:
            raise KeycloakError(f"introspection by {client_id}", response)
        return response.json()

    def jwks(self) -> dict[str, Any]:
        response = self.http.get(self.jwks_url)
        if response.status_code != 200:
            raise KeycloakError("JWKS", response)
        return response.json()

    # --- admin REST API ---------------------------------------------------------------

    def admin_token(self) -> str:
        """An access token of the master realm's admin (cached until shortly before it expires)."""
        if self._admin_token and self._admin_token[1] > time.monotonic():
            return self._admin_token[0]
        body = self._token(
            {"grant_type": "password", "client_id": "admin-cli", "username": ADMIN_USER, "password": ADMIN_PASSWORD},
            None,
            "admin login",
            url=f"{self.base_url}/realms/master/protocol/openid-connect/token",
        )
        self._admin_token = (body["access_token"], time.monotonic() + max(5, body.get("expires_in", 60) - 15))
        return body["access_token"]

    def admin(self, method: str, path: str, json: Any = None, expect: tuple[int, ...] = (200, 201, 204)) -> httpx.Response:
        """A call to /admin/realms/vmcp<path> ("" for the realm itself); KeycloakError unless the status is in `expect`."""
        response = self.http.request(method, self.admin_url + path, json=json, headers={"Authorization": f"Bearer {self.admin_token()}"})
        if response.status_code not in expect:
            raise KeycloakError(f"admin {method} {path}", response)
        return response

    def signing_keys(self) -> list[dict[str, Any]]:
        """The realm's RS256 signing keys as the admin API lists them (kid, providerId, providerPriority, status)."""
        keys = self.admin("GET", "/keys").json()["keys"]
        return [k for k in keys if k.get("algorithm") == "RS256" and k.get("use", "SIG") == "SIG"]

    def active_kid(self) -> str:
        return self.admin("GET", "/keys").json()["active"]["RS256"]

    def rotate_signing_key(self, old: str = "active") -> str:
        """Add an `rsa-generated` key provider above every other one; new tokens carry its kid (returned).

        `old` says what becomes of the previous RS256 providers: "active" (default: kept as they are,
        lower priority; still in the JWKS, so earlier tokens still verify), "passive" (in the JWKS,
        never used to sign) or "disabled" (gone from the JWKS: earlier tokens no longer verify)."""
        if old not in ("active", "passive", "disabled"):
            raise ValueError(f"old must be active, passive or disabled, not {old!r}")
        previous = self.signing_keys()
        priority = max((int(k.get("providerPriority", 0)) for k in previous), default=0) + 100
        realm_id = self.admin("GET", "").json()["id"]
        created = self.admin(
            "POST",
            "/components",
            json={
                "name": f"rsa-rotated-{priority}",
                "providerId": "rsa-generated",
                "providerType": "org.keycloak.keys.KeyProvider",
                "parentId": realm_id,
                "config": {
                    "priority": [str(priority)],
                    "enabled": ["true"],
                    "active": ["true"],
                    "algorithm": ["RS256"],
                    "keySize": ["2048"],
                },
            },
            expect=(201,),
        )
        component_id = created.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
        if old != "active":
            for provider_id in {k["providerId"] for k in previous}:
                component = self.admin("GET", f"/components/{provider_id}").json()
                component["config"]["active" if old == "passive" else "enabled"] = ["false"]
                self.admin("PUT", f"/components/{provider_id}", json=component)
        new = [k for k in self.signing_keys() if k.get("providerId") == component_id]
        if len(new) != 1:
            raise KeycloakError(f"the new key provider {component_id} has {len(new)} RS256 keys")
        if self.active_kid() != new[0]["kid"]:
            raise KeycloakError(f"the new key {new[0]['kid']} is not the active signing key ({self.active_kid()})")
        return new[0]["kid"]


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keycloak]:
    """Keycloak with the vmcp realm on 127.0.0.1 (one per session). Fails, never skips, when it
    is not installed (scripts/install-idp.sh) or does not start."""
    problem = None
    kc = None
    try:
        kc = Keycloak(tmp_path_factory.mktemp("keycloak"))
        kc.start()
    except KeycloakError as exc:
        problem = str(exc)
    if problem:  # outside the except block: one error, not a chain
        pytest.fail(problem, pytrace=False)
    assert kc is not None
    print(f"keycloak {KEYCLOAK_VERSION} ready in {kc.start_seconds:.1f}s at {kc.base_url} (log {kc.log_path})")
    yield kc
    kc.stop()
