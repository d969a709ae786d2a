"""The identity provider fixture itself (tests/e2e/keycloak.py): real Keycloak, real tokens.

No gateway here; these pin down what the OIDC / token-exchange tests of the gateway rely on.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import jwt
import pytest

from harness import descendants, wait_until
from keycloak import (
    ACCESS_TOKEN_TYPE,
    BACKEND_ALPHA,
    GATEWAY_CLIENT,
    MCP_CLIENT,
    PASSWORDS,
    SHORT_LIVED_CLIENT,
    TOKEN_EXCHANGE_GRANT,
    Keycloak,
    audiences,
    jwt_parts,
    keycloak,  # noqa: F401 - the fixture
)


def verify(kc: Keycloak, token: str, audience: str) -> dict[str, Any]:
    """Claims of `token` after checking its RS256 signature against the published JWKS,
    and its iss, aud and exp."""
    header, _ = jwt_parts(token)
    keys = {k["kid"]: k for k in kc.jwks()["keys"]}
    assert header["kid"] in keys, f"kid {header['kid']} not in the JWKS ({sorted(keys)})"
    key = jwt.PyJWK(keys[header["kid"]]).key
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=kc.issuer, options={"require": ["exp", "iat", "sub"]})


def alice_token(kc: Keycloak, **kwargs: Any) -> str:
    return kc.password_token("alice", PASSWORDS["alice"], **kwargs)["access_token"]


def test_alice_token_is_rs256_jwt_of_the_issuer(keycloak: Keycloak) -> None:
    token = alice_token(keycloak)
    header, _ = jwt_parts(token)
    assert header["alg"] == "RS256"
    assert header["kid"]
    claims = verify(keycloak, token, GATEWAY_CLIENT)
    assert claims["iss"] == keycloak.issuer == f"http://127.0.0.1:{keycloak.port}/realms/vmcp"
    assert GATEWAY_CLIENT in audiences(claims)
    assert claims["azp"] == MCP_CLIENT
    assert claims["groups"] == ["engineering"]
    assert claims["preferred_username"] == "alice"
    assert claims["email"] == "alice@example.test" and claims["email_verified"] is True
    assert "mcp:tools" not in claims["scope"].split()
    assert 0 < claims["exp"] - claims["iat"] <= 300


def test_bob_is_in_sales(keycloak: Keycloak) -> None:
    claims = verify(keycloak, keycloak.password_token("bob", PASSWORDS["bob"])["access_token"], GATEWAY_CLIENT)
    assert claims["groups"] == ["sales"]
    assert claims["preferred_username"] == "bob"
    assert claims["sub"] != verify(keycloak, alice_token(keycloak), GATEWAY_CLIENT)["sub"]


def test_optional_scope_only_when_asked_for(keycloak: Keycloak) -> None:
    claims = verify(keycloak, alice_token(keycloak, scope="mcp:tools"), GATEWAY_CLIENT)
    assert "mcp:tools" in claims["scope"].split()


def test_wrong_password_is_refused(keycloak: Keycloak) -> None:
    response = keycloak.post_token({"grant_type": "password", "client_id": MCP_CLIENT, "username": "alice", "password": "bob-pw"})
    assert response.status_code == 400, response.text  # RFC 6749 5.2: invalid_grant is a 400
    assert response.json()["error"] == "invalid_grant"


def test_discovery_and_jwks(keycloak: Keycloak) -> None:
    discovery = keycloak.http.get(keycloak.discovery_url).json()
    assert discovery["issuer"] == keycloak.issuer
    assert discovery["jwks_uri"] == keycloak.jwks_url
    assert discovery["token_endpoint"] == keycloak.token_url
    assert discovery["introspection_endpoint"] == keycloak.introspection_url
    assert TOKEN_EXCHANGE_GRANT in discovery["grant_types_supported"]
    kid = jwt_parts(alice_token(keycloak))[0]["kid"]
    published = [k for k in keycloak.jwks()["keys"] if k["kid"] == kid]
    assert len(published) == 1
    assert published[0]["kty"] == "RSA" and published[0]["alg"] == "RS256" and published[0]["use"] == "sig"


def test_exchange_for_backend_alpha(keycloak: Keycloak) -> None:
    subject = alice_token(keycloak)
    answer = keycloak.exchange(subject, BACKEND_ALPHA)
    assert answer["issued_token_type"] == ACCESS_TOKEN_TYPE
    exchanged = answer["access_token"]
    assert exchanged != subject
    assert subject not in exchanged
    claims = verify(keycloak, exchanged, BACKEND_ALPHA)
    assert audiences(claims) == [BACKEND_ALPHA]
    assert claims["sub"] == verify(keycloak, subject, GATEWAY_CLIENT)["sub"]
    assert claims["azp"] == GATEWAY_CLIENT
    assert claims["groups"] == ["engineering"]
    # A token for the backend is not one for the gateway.
    with pytest.raises(jwt.InvalidAudienceError):
        verify(keycloak, exchanged, GATEWAY_CLIENT)


def test_exchange_refusals(keycloak: Keycloak) -> None:
    subject = alice_token(keycloak)
    base = {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": subject, "subject_token_type": ACCESS_TOKEN_TYPE, "audience": BACKEND_ALPHA}
    wrong_secret = keycloak.post_token(base, auth=(GATEWAY_CLIENT, "not-the-secret"))
    assert wrong_secret.status_code == 401, wrong_secret.text
    unknown_audience = keycloak.post_token({**base, "audience": "no-such-client"}, auth=(GATEWAY_CLIENT, "gateway-secret"))
    assert unknown_audience.status_code == 400, unknown_audience.text
    garbage = keycloak.post_token({**base, "subject_token": "not.a.token"}, auth=(GATEWAY_CLIENT, "gateway-secret"))
    assert garbage.status_code in (400, 401), garbage.text


def test_introspection(keycloak: Keycloak) -> None:
    info = keycloak.introspect(alice_token(keycloak))
    assert info["active"] is True
    assert info["username"] == "alice"
    assert info["groups"] == ["engineering"]
    assert keycloak.introspect("not-a-token") == {"active": False}


def test_short_lived_token_expires(keycloak: Keycloak) -> None:
    token = keycloak.password_token("alice", PASSWORDS["alice"], client_id=SHORT_LIVED_CLIENT)["access_token"]
    claims = verify(keycloak, token, GATEWAY_CLIENT)
    assert claims["exp"] - claims["iat"] <= 5
    assert claims["groups"] == ["engineering"]
    wait_until(lambda: keycloak.introspect(token)["active"] is False, 15, interval=0.5, what="the short-lived token to expire")
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(keycloak, token, GATEWAY_CLIENT)


def test_auth_code_redirect_uris(keycloak: Keycloak) -> None:
    """mcp-client's redirect URIs accept any loopback port (RFC 8252) and nothing else."""
    params = {"client_id": MCP_CLIENT, "response_type": "code", "scope": "openid", "state": "s", "code_challenge_method": "S256",
              "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}  # fmt: skip
    for redirect in ("http://127.0.0.1:53682/callback", "http://localhost:40001/cb"):
        page = keycloak.http.get(keycloak.authorization_url, params={**params, "redirect_uri": redirect})
        assert page.status_code == 200 and 'id="kc-form-login"' in page.text, (redirect, page.status_code, page.text[:300])
    refused = keycloak.http.get(keycloak.authorization_url, params={**params, "redirect_uri": "http://attacker.example/cb"})
    assert refused.status_code == 400 and "redirect_uri" in refused.text


def _listening_addresses(pids: list[int]) -> set[str]:
    """Local addresses of the TCP sockets in LISTEN state held by `pids`."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.is_dir() else ():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: set[str] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in inodes:
                continue
            addr_hex, port_hex = cols[1].split(":")
            raw = bytes.fromhex(addr_hex)
            if family == socket.AF_INET:
                addr = socket.inet_ntop(family, raw[::-1])
            else:
                addr = socket.inet_ntop(family, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
            found.add(f"{addr}:{int(port_hex, 16)}")
    return found


def test_listens_on_loopback_only(keycloak: Keycloak) -> None:
    assert keycloak.proc is not None
    addresses = _listening_addresses([keycloak.proc.pid, *descendants(keycloak.proc.pid)])
    assert f"127.0.0.1:{keycloak.port}" in {a.removeprefix("::ffff:") for a in addresses}
    outside = {a for a in addresses if not a.rsplit(":", 1)[0].removeprefix("::ffff:").startswith("127.")}
    assert not outside, f"Keycloak listens beyond loopback: {sorted(outside)}"


def test_rotate_signing_key(keycloak: Keycloak) -> None:
    before = alice_token(keycloak)
    old_kid = jwt_parts(before)[0]["kid"]
    new_kid = keycloak.rotate_signing_key()
    assert new_kid != old_kid
    after = alice_token(keycloak)
    assert jwt_parts(after)[0]["kid"] == new_kid
    published = {k["kid"] for k in keycloak.jwks()["keys"]}
    assert {new_kid, old_kid} <= published  # the old key stays active (lower priority)
    verify(keycloak, after, GATEWAY_CLIENT)
    verify(keycloak, before, GATEWAY_CLIENT)
    exchanged = keycloak.exchange(after, BACKEND_ALPHA)["access_token"]
    assert jwt_parts(exchanged)[0]["kid"] == new_kid
