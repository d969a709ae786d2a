"""Outgoing RFC 8693 token exchange (issue 14, item 3) against a real identity provider and a real
resource server: Keycloak issues the callers' tokens and exchanges them; the backend is the official
SDK's MCPServer with its own bearer auth, checking every token's signature (JWKS), issuer, expiry and
audience, and binding each MCP session to the principal that opened it.

The gateway lists and health-checks the backend with its own client-credentials token, and each
caller's calls go on the caller's own backend session with the caller's token exchanged for the
backend's audience: the backend sees the caller (`sub`), never the caller's original token. A refused
exchange is the caller's error and neither trips the circuit breaker nor marks the backend unhealthy.
No token or secret reaches the gateway's log, status or metrics."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from harness import (
    LOOPBACK,
    PEERS,
    PYTHON,
    Launcher,
    Proc,
    base_gateway_config,
    call_error,
    call_text,
    connect,
    deep_merge,
    free_port,
    port_open,
    wait_until,
)
from keycloak import BACKEND_ALPHA, GATEWAY_CLIENT, GATEWAY_SECRET, PASSWORDS, Keycloak, audiences, claims_of

pytestmark = pytest.mark.anyio

TOKEN_BACKEND = PEERS / "token_backend.py"
SECRET_ENV = "VMCP_E2E_EXCHANGE_SECRET"


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user_token(kc: Keycloak, user: str) -> str:
    return kc.password_token(user, PASSWORDS[user])["access_token"]


def with_bearer(bearer: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=30)


class Deployment:
    """The token-checking backend `alpha` and a gateway exchanging tokens for it."""

    def __init__(self, launcher: Launcher, kc: Keycloak, tmp_path: Path) -> None:
        self.kc = kc
        self.record = tmp_path / "alpha-requests.jsonl"
        self.record.touch()
        port = free_port()
        self.backend: Proc = launcher.proc(
            "alpha",
            [PYTHON, str(TOKEN_BACKEND), "--port", str(port), "--name", "alpha", "--issuer", kc.issuer,
             "--audience", BACKEND_ALPHA, "--record", str(self.record)],
        )
        wait_until(lambda: self.backend.check_alive() or port_open(port), 30, what="the token backend to listen")
        backend = {"name": "alpha", "transport": "streamable-http", "url": f"http://{LOOPBACK}:{port}/mcp"}
        config = deep_merge(base_gateway_config([backend]), {
            # Fewer failures than the test makes would open the circuit, were they counted.
            "operational": {"failureHandling": {"circuitBreaker": {"failureThreshold": 3, "timeout": "30s"}}},
            "incomingAuth": {
                "type": "oidc",
                "oidc": {"issuer": kc.issuer, "audience": GATEWAY_CLIENT, "jwksAllowPrivateIp": True, "insecureAllowHttp": True},
            },
            "outgoingAuth": {
                "backends": {
                    "alpha": {
                        "type": "token_exchange",
                        "tokenExchange": {
                            "tokenUrl": kc.token_url,
                            "clientId": GATEWAY_CLIENT,
                            "clientSecretEnv": SECRET_ENV,
                            "audience": BACKEND_ALPHA,
                        },
                    }
                }
            },
        })
        self.gateway = launcher.gateway(config, env={SECRET_ENV: GATEWAY_SECRET})

    def requests_seen(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def status(self) -> dict[str, Any]:
        entry = self.gateway.backend_status("alpha")
        assert entry is not None, self.gateway.status()
        return entry


@pytest.fixture
def deployment(launcher: Launcher, keycloak: Keycloak, tmp_path: Path) -> Deployment:
    return Deployment(launcher, keycloak, tmp_path)


@pytest.fixture
def exchange_disabled(keycloak: Keycloak) -> Iterator[None]:
    """Keycloak refuses token exchange by the gateway's client for the test's duration (client
    credentials still work)."""
    (client,) = keycloak.admin("GET", f"/clients?clientId={GATEWAY_CLIENT}").json()
    original = dict(client["attributes"])
    client["attributes"]["standard.token.exchange.enabled"] = "false"
    keycloak.admin("PUT", f"/clients/{client['id']}", json=client)
    try:
        yield
    finally:
        client["attributes"] = original
        keycloak.admin("PUT", f"/clients/{client['id']}", json=client)


async def whoami(gateway_url: str, bearer: str) -> list[dict[str, Any]]:
    """Two calls of alpha's whoami in one session: what the backend saw each time."""
    async with connect(streamable_http_client(gateway_url, http_client=with_bearer(bearer))) as client:
        return [json.loads(await call_text(client, "alpha_whoami")) for _ in range(2)]


async def test_each_caller_reaches_the_backend_with_a_token_issued_for_it_never_with_its_own(
    deployment: Deployment, keycloak: Keycloak
) -> None:
    # The gateway's own session (initialize, lists, health) is the gateway's service account.
    own = [r for r in deployment.requests_seen() if not r.get("refused")]
    assert own, "the backend saw no request from the gateway"
    assert {r["azp"] for r in own} == {GATEWAY_CLIENT}, own
    assert all(BACKEND_ALPHA in (r["aud"] if isinstance(r["aud"], list) else [r["aud"]]) for r in own), own
    assert deployment.status()["status"] == "ready", deployment.status()
    assert deployment.status()["authType"] == "token_exchange", deployment.status()

    originals = {}
    for user in ("alice", "bob"):
        original = user_token(keycloak, user)
        originals[user] = original
        first, second = await whoami(deployment.gateway.url, original)
        subject = claims_of(original)["sub"]
        assert first["sub"] == subject, (user, first)
        assert first["preferred_username"] == user, first
        assert BACKEND_ALPHA in (first["aud"] if isinstance(first["aud"], list) else [first["aud"]]), first
        assert first["azp"] == GATEWAY_CLIENT, first
        assert first["token_sha256"] != sha256(original), "the caller's own token reached the backend"
        assert second["token_sha256"] == first["token_sha256"], "the exchanged token was not reused"

    seen = deployment.requests_seen()
    originals_seen = {sha256(t) for t in originals.values()} & {r.get("token_sha256") for r in seen}
    assert not originals_seen, "a caller's original token reached the backend"
    assert not [r for r in seen if r.get("refused")], [r for r in seen if r.get("refused")]
    subjects = {r["sub"] for r in seen}
    assert {claims_of(t)["sub"] for t in originals.values()} <= subjects, subjects

    # The exchanged token is a real one of the realm, for the backend's audience.
    exchanged_hashes = {r["token_sha256"] for r in seen if r["sub"] == claims_of(originals["alice"])["sub"]}
    assert len(exchanged_hashes) == 1, exchanged_hashes
    fresh = keycloak.exchange(originals["alice"], BACKEND_ALPHA)["access_token"]
    assert audiences(claims_of(fresh)) == [BACKEND_ALPHA] or BACKEND_ALPHA in audiences(claims_of(fresh))

    log = deployment.gateway.log_path.read_text()
    status = json.dumps(deployment.gateway.status())
    metrics = deployment.gateway.get("/metrics").text
    for text, where in ((log, "log"), (status, "status"), (metrics, "metrics")):
        for original in originals.values():
            assert original not in text, f"a caller's token in the gateway's {where}"
        assert GATEWAY_SECRET not in text, f"the client secret in the gateway's {where}"
        assert "eyJ" not in text, f"something token-like in the gateway's {where}"


async def test_a_refused_exchange_is_the_callers_error_not_a_backend_failure(
    deployment: Deployment, keycloak: Keycloak, exchange_disabled: None
) -> None:
    bearer = user_token(keycloak, "bob")
    async with connect(streamable_http_client(deployment.gateway.url, http_client=with_bearer(bearer))) as client:
        # More refusals than the circuit breaker's failure threshold.
        for _ in range(6):
            message = await call_error(client, "alpha_whoami")
            assert "alpha" in message and "token exchange" in message, message
            assert "refused" in message, message
            assert bearer not in message and GATEWAY_SECRET not in message
    status = deployment.status()
    assert (status["status"], status["circuitBreakerState"]) == ("ready", "closed"), status
    subject = claims_of(bearer)["sub"]
    assert subject not in {r.get("sub") for r in deployment.requests_seen()}, "a call reached the backend"


async def test_a_caller_is_served_again_once_the_provider_exchanges_again(
    deployment: Deployment, keycloak: Keycloak
) -> None:
    bearer = user_token(keycloak, "alice")
    (client,) = keycloak.admin("GET", f"/clients?clientId={GATEWAY_CLIENT}").json()
    original = dict(client["attributes"])
    async with connect(streamable_http_client(deployment.gateway.url, http_client=with_bearer(bearer))) as mcp:
        try:
            client["attributes"]["standard.token.exchange.enabled"] = "false"
            keycloak.admin("PUT", f"/clients/{client['id']}", json=client)
            assert "refused" in await call_error(mcp, "alpha_whoami")
        finally:
            client["attributes"] = original
            keycloak.admin("PUT", f"/clients/{client['id']}", json=client)
        seen = json.loads(await call_text(mcp, "alpha_whoami"))
        assert seen["sub"] == claims_of(bearer)["sub"], seen
