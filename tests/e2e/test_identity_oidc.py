"""Incoming OIDC authentication (issue 14, item 1) and Cedar authorization (item 2) against a real identity provider: Keycloak on
loopback issues real tokens; the gateway verifies them against the issuer's discovery document and
JWKS. No token, expired, wrong audience, wrong issuer, `alg: none`, a tampered signature, key
rotation, missing scopes and another caller's session are each refused the way RFC 6750 / RFC 9728
and the MCP authorization spec say; a good token works end to end with the official client; no
token or secret reaches the gateway's log, status or metrics."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from mcp.client.streamable_http import streamable_http_client

from harness import (
    MCP_HEADERS,
    Launcher,
    Stack,
    await_until,
    call_error,
    call_text,
    connect,
    expected_py_tools,
    free_port,
    jsonrpc_messages,
    prompt_names,
    resource_uris,
    template_uris,
    tool_names,
    wait_until,
)
from keycloak import GATEWAY_CLIENT, GATEWAY_SECRET, PASSWORDS, SHORT_LIVED_CLIENT, Keycloak, claims_of

pytestmark = pytest.mark.anyio

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "oidc-test", "version": "0"}},
}
UNAUTHORIZED = -32001


def oidc(kc: Keycloak, **extra: Any) -> dict[str, Any]:
    settings = {
        "issuer": kc.issuer,
        "audience": GATEWAY_CLIENT,
        # Keycloak runs on loopback and plain HTTP here; both need saying.
        "jwksAllowPrivateIp": True,
        "insecureAllowHttp": True,
    }
    settings.update(extra)
    return {"incomingAuth": {"type": "oidc", "oidc": settings}}


def token(kc: Keycloak, user: str = "alice", **kwargs: Any) -> str:
    return kc.password_token(user, PASSWORDS[user], **kwargs)["access_token"]


def initialize(stack: Stack, bearer: str | None, session: str | None = None) -> httpx.Response:
    headers = dict(MCP_HEADERS)
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    if session is not None:
        headers["mcp-session-id"] = session
    return httpx.post(stack.url, json=INIT, headers=headers, timeout=15)


def challenge(resp: httpx.Response) -> dict[str, str]:
    """The parameters of a `WWW-Authenticate: Bearer k="v", ...` challenge."""
    value = resp.headers.get("www-authenticate", "")
    assert value.startswith("Bearer "), f"{resp.status_code} challenge: {value!r}"
    params = {}
    for part in value[len("Bearer ") :].split('", '):
        key, _, val = part.partition('="')
        params[key.strip()] = val.rstrip('"')
    return params


def assert_refused(resp: httpx.Response, status: int, error: str | None) -> dict[str, str]:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:300]}"
    assert resp.headers.get("mcp-session-id") is None, "a session was opened for a refused request"
    (message,) = jsonrpc_messages(resp)
    assert message["error"]["code"] == UNAUTHORIZED, message
    params = challenge(resp)
    assert params.get("error") == error, params
    return params


def b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def with_bearer(bearer: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=30)


@pytest.fixture
def stack(launcher: Launcher, keycloak: Keycloak) -> Stack:
    return launcher.stack(names=("pysse",), overrides=oidc(keycloak))


async def test_no_token_gets_a_challenge_naming_the_metadata_and_the_metadata_names_the_issuer(
    stack: Stack, keycloak: Keycloak
) -> None:
    params = assert_refused(initialize(stack, None), 401, None)
    expected = f"{stack.gateway.base}/.well-known/oauth-protected-resource/mcp"
    assert params["resource_metadata"] == expected, params
    for url in (expected, f"{stack.gateway.base}/.well-known/oauth-protected-resource"):
        metadata = httpx.get(url, timeout=10)
        assert metadata.status_code == 200, metadata.text[:300]
        document = metadata.json()
        assert document["authorization_servers"] == [keycloak.issuer], document
        assert document["resource"] == stack.url, document
        assert document["bearer_methods_supported"] == ["header"], document
    # Probes stay open; status and metrics answer loopback without a token.
    assert stack.gateway.get("/health").status_code == 200
    assert stack.gateway.get("/readyz").status_code == 200
    assert stack.gateway.get("/status").status_code == 200
    # Not a bearer credential at all.
    resp = httpx.post(stack.url, json=INIT, headers={**MCP_HEADERS, "Authorization": "Basic YWxpY2U6YWxpY2UtcHc="}, timeout=10)
    assert_refused(resp, 401, "invalid_token")


async def test_a_real_token_works_end_to_end_with_the_official_client(stack: Stack, keycloak: Keycloak) -> None:
    bearer = token(keycloak)
    async with connect(streamable_http_client(stack.url, http_client=with_bearer(bearer))) as client:
        assert await call_text(client, "pysse_echo", {"text": "who am i"}) == "who am i"
    log = stack.gateway.log_path.read_text()
    status = json.dumps(stack.gateway.status())
    metrics = stack.gateway.get("/metrics").text
    signature = bearer.rsplit(".", 1)[1]
    for text, where in ((log, "log"), (status, "status"), (metrics, "metrics")):
        assert signature not in text and GATEWAY_SECRET not in text, f"a token or secret in the {where}"


async def test_forged_and_misdirected_tokens_are_refused(stack: Stack, keycloak: Keycloak) -> None:
    good = token(keycloak)
    header, payload, signature = good.split(".")
    claims = claims_of(good)

    # alg none: the payload of a real token, unsigned.
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    assert_refused(initialize(stack, unsigned), 401, "invalid_token")
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}"
    assert_refused(initialize(stack, unsigned), 401, "invalid_token")

    # A tampered payload under the real signature; a tampered signature.
    forged = f"{header}.{b64({**claims, 'sub': 'someone-else'})}.{signature}"
    assert_refused(initialize(stack, forged), 401, "invalid_token")
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    assert_refused(initialize(stack, f"{header}.{payload}.{flipped}"), 401, "invalid_token")

    # HMAC signed with the issuer's public key as the secret (key confusion).
    kid = claims_of_header(good)["kid"]
    (public,) = [key for key in keycloak.jwks()["keys"] if key.get("kid") == kid]
    hs_header = b64({"alg": "HS256", "typ": "JWT", "kid": kid})
    mac = hmac.new(json.dumps(public).encode(), f"{hs_header}.{payload}".encode(), hashlib.sha256).digest()
    hs_signature = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert_refused(initialize(stack, f"{hs_header}.{payload}.{hs_signature}"), 401, "invalid_token")

    # A real token for another audience (exchanged by Keycloak for backend-alpha).
    exchanged = keycloak.exchange(good, "backend-alpha")["access_token"]
    assert "vmcp-gateway" not in json.dumps(claims_of(exchanged).get("aud"))
    params = assert_refused(initialize(stack, exchanged), 401, "invalid_token")
    assert "audience" in params.get("error_description", ""), params

    # Garbage.
    assert_refused(initialize(stack, "not-a-token"), 401, "invalid_token")

    # The good one still works (nothing above poisoned the key cache).
    resp = initialize(stack, good)
    assert resp.status_code == 200, resp.text[:300]


def claims_of_header(token_: str) -> dict[str, Any]:
    part = token_.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


async def test_a_token_from_another_issuer_is_refused(launcher: Launcher, keycloak: Keycloak) -> None:
    # Same keys (jwksUrl skips discovery), another issuer: a real token's `iss` does not match.
    other = f"{keycloak.base_url}/realms/other"
    stack = launcher.stack(names=("pysse",), overrides=oidc(keycloak, issuer=other, jwksUrl=keycloak.jwks_url))
    params = assert_refused(initialize(stack, token(keycloak)), 401, "invalid_token")
    assert "issuer" in params.get("error_description", ""), params


async def test_an_expired_token_is_refused_once_past_the_clock_skew_allowance(stack: Stack, keycloak: Keycloak) -> None:
    short = keycloak.password_token("alice", PASSWORDS["alice"], client_id=SHORT_LIVED_CLIENT)["access_token"]
    claims = claims_of(short)
    assert claims["exp"] - claims["iat"] <= 5, claims
    assert initialize(stack, short).status_code == 200, "accepted while valid"
    # 30 s of clock skew are allowed past exp; poll until refused, well within a deadline.
    refused = wait_until(lambda: initialize(stack, short).status_code == 401, timeout=60, interval=1, what="expiry")
    assert refused
    assert time.time() >= claims["exp"] + 29, "refused before the skew allowance ran out"
    params = assert_refused(initialize(stack, short), 401, "invalid_token")
    assert "expired" in params["error_description"], params


async def test_a_rotated_signing_key_is_picked_up_from_the_jwks(stack: Stack, keycloak: Keycloak) -> None:
    before = token(keycloak)
    assert initialize(stack, before).status_code == 200
    new_kid = keycloak.rotate_signing_key()
    after = token(keycloak)
    assert claims_of_header(after)["kid"] == new_kid != claims_of_header(before)["kid"]
    # An unknown kid refreshes the keys (at most once per 5 s, so poll briefly).
    wait_until(lambda: initialize(stack, after).status_code == 200, timeout=15, interval=0.5, what="the new key accepted")


async def test_required_scopes_are_enforced_with_insufficient_scope(launcher: Launcher, keycloak: Keycloak) -> None:
    stack = launcher.stack(names=("pysse",), overrides=oidc(keycloak, scopes=["mcp:tools"]))
    params = assert_refused(initialize(stack, token(keycloak)), 403, "insufficient_scope")
    assert params["scope"] == "mcp:tools", params
    metadata = httpx.get(params["resource_metadata"], timeout=10).json()
    assert metadata["scopes_supported"] == ["mcp:tools"], metadata
    assert initialize(stack, token(keycloak, scope="mcp:tools")).status_code == 200


async def test_a_session_serves_only_the_caller_who_opened_it(stack: Stack, keycloak: Keycloak) -> None:
    alice, bob = token(keycloak, "alice"), token(keycloak, "bob")
    opened = initialize(stack, alice)
    assert opened.status_code == 200, opened.text[:300]
    session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}

    def list_tools(bearer: str | None) -> httpx.Response:
        headers = {**MCP_HEADERS, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return httpx.post(stack.url, json=listing, headers=headers, timeout=10)

    httpx.post(
        stack.url,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers={**MCP_HEADERS, "mcp-session-id": session, "Authorization": f"Bearer {alice}"},
        timeout=10,
    )
    stolen = list_tools(bob)
    assert stolen.status_code == 403, stolen.text[:300]
    assert "another caller" in jsonrpc_messages(stolen)[0]["error"]["message"]
    assert list_tools(None).status_code == 401
    own = list_tools(alice)
    assert own.status_code == 200, own.text[:300]
    assert any(t["name"] == "pysse_echo" for t in jsonrpc_messages(own)[0]["result"]["tools"])


# --- authorization: Cedar policies (issue 14, item 2) ------------------------------------------

POLICIES = [
    # Engineering may do everything on pyhttp.
    'permit(principal in THVGroup::"engineering", action, resource in MCP::"pyhttp");',
    # Everyone may call the echo of pysse and read its own info resource.
    'permit(principal, action == Action::"call_tool", resource == Tool::"pysse_echo");',
    'permit(principal, action == Action::"read_resource", resource == Resource::"py://pysse/info");',
    # A claim decides too: bob's email may get prompts of pysse.
    'permit(principal, action == Action::"get_prompt", resource in MCP::"pysse") when { principal.claim_email like "bob@*" };',
    # Forbid wins over the engineering permit.
    'forbid(principal, action == Action::"call_tool", resource == Tool::"pyhttp_fail");',
]


async def test_cedar_policies_decide_what_each_caller_sees_and_calls(launcher: Launcher, keycloak: Keycloak) -> None:
    overrides = oidc(keycloak)
    overrides["incomingAuth"]["authz"] = {"type": "cedar", "policies": POLICIES}
    stack = launcher.stack(names=("pysse", "pyhttp"), overrides=overrides)
    seen: dict[str, dict[str, Any]] = {}
    for user in ("alice", "bob"):
        async with connect(streamable_http_client(stack.url, http_client=with_bearer(token(keycloak, user)))) as client:
            tools = await tool_names(client)
            seen[user] = {
                "tools": tools,
                "prompts": await prompt_names(client),
                "resources": set(await resource_uris(client)),
                "templates": set(await template_uris(client)),
                "echo": await call_text(client, "pysse_echo", {"text": user}),
                "denied": await call_error(client, "pyhttp_echo", {"text": user}) if user == "bob" else None,
                "forbidden": await call_error(client, "pyhttp_fail") if user == "alice" else None,
                "own": await call_text(client, "pyhttp_whoami") if user == "alice" else None,
            }
            if user == "bob":
                # What bob may not read or get, he may not subscribe to or complete either.
                for attempt in (
                    client.subscribe_resource("py://pyhttp/info"),
                    client.complete(types.PromptReference(type="ref/prompt", name="pyhttp_greet"), {"name": "b", "value": "b"}),
                ):
                    with pytest.raises(MCPError) as denied:
                        await attempt
                    assert denied.value.code == UNAUTHORIZED, denied.value
    alice, bob = seen["alice"], seen["bob"]
    assert alice["tools"] == {"pysse_echo"} | (expected_py_tools("pyhttp") - {"pyhttp_fail"}), alice["tools"]
    assert bob["tools"] == {"pysse_echo"}, bob["tools"]
    assert alice["prompts"] == {"pyhttp_greet"} and bob["prompts"] == {"pysse_greet"}, (alice["prompts"], bob["prompts"])
    assert "py://pysse/info" in bob["resources"] and "py://pyhttp/info" not in bob["resources"], bob["resources"]
    assert "py://pyhttp/info" in alice["resources"], alice["resources"]
    assert bob["templates"] == set(), bob["templates"]
    assert alice["echo"] == "alice" and bob["echo"] == "bob"
    assert alice["own"] == "pyhttp"
    for denied in (bob["denied"], alice["forbidden"]):
        assert "-32001" in denied and "not allowed" in denied, denied
        assert "permit" not in denied and "THVGroup" not in denied, f"the policy leaked: {denied}"


class MemoryTokenStorage:
    """The official client's token storage, in memory, holding a client registered beforehand."""

    def __init__(self, client_info: Any) -> None:
        self.tokens: Any = None
        self.client_info = client_info

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


async def test_the_official_client_finds_the_issuer_in_the_metadata_and_completes_the_oauth_flow(
    launcher: Launcher, keycloak: Keycloak
) -> None:
    """The MCP authorization flow end to end with the Python SDK's own OAuth support: a 401 names
    the metadata, the metadata names Keycloak, the client runs the authorization code flow with PKCE
    (a scripted browser logs alice in) and retries with the token it got."""
    import anyio
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata

    stack = launcher.stack(names=("pysse",), overrides=oidc(keycloak, scopes=["mcp:tools"]))
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    # mcp-client is registered in the realm (public, PKCE, loopback redirects): no dynamic registration.
    storage = MemoryTokenStorage(
        OAuthClientInformationFull(
            client_id="mcp-client",
            redirect_uris=[redirect_uri],
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            issuer=keycloak.issuer,
        )
    )
    redirects: list[dict[str, str]] = []

    async def open_browser(url: str) -> None:
        assert url.startswith(keycloak.authorization_url), url
        redirects.append(await anyio.to_thread.run_sync(keycloak.browser_login, url, "alice", PASSWORDS["alice"]))

    async def wait_for_callback() -> AuthorizationCodeResult:
        (answer,) = redirects
        return AuthorizationCodeResult(code=answer["code"], state=answer.get("state"), iss=answer.get("iss"))

    provider = OAuthClientProvider(
        server_url=stack.url,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[redirect_uri],
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            client_name="vmcp e2e",
        ),
        storage=storage,
        redirect_handler=open_browser,
        callback_handler=wait_for_callback,
    )
    async with connect(streamable_http_client(stack.url, http_client=httpx2.AsyncClient(auth=provider, timeout=30))) as client:
        assert "pysse_echo" in await tool_names(client)
        assert await call_text(client, "pysse_echo", {"text": "signed in"}) == "signed in"
    assert len(redirects) == 1, "the client should have signed in exactly once"
    assert storage.tokens is not None
    claims = claims_of(storage.tokens.access_token)
    assert claims["preferred_username"] == "alice", claims
    assert "mcp:tools" in claims["scope"].split(), claims
    assert storage.tokens.access_token not in stack.gateway.log_path.read_text()


async def test_policies_from_a_file_are_reloaded_when_it_changes_without_dropping_sessions(
    launcher: Launcher, keycloak: Keycloak, tmp_path: Any
) -> None:
    policies = tmp_path / "policies.cedar"
    policies.write_text('permit(principal, action == Action::"call_tool", resource == Tool::"pysse_echo");\n')
    overrides = oidc(keycloak)
    overrides["incomingAuth"]["authz"] = {"type": "cedar", "policiesFile": str(policies)}
    stack = launcher.stack(names=("pysse",), overrides=overrides)
    async with connect(streamable_http_client(stack.url, http_client=with_bearer(token(keycloak)))) as client:
        assert await tool_names(client) == {"pysse_echo"}
        assert await call_text(client, "pysse_echo", {"text": "before"}) == "before"

        # A new version is in force within a few seconds, in the same session.
        policies.write_text(
            'permit(principal, action == Action::"call_tool", resource == Tool::"pysse_add");\n'
            '// echo is no longer permitted\n'
        )
        await await_until(lambda: _names_are(client, {"pysse_add"}), 20, what="the reloaded policies")
        assert "not allowed" in await call_error(client, "pysse_echo", {"text": "after"})
        assert await call_text(client, "pysse_add", {"a": 2, "b": 3}) == "5"

        # A broken version is refused as a whole: the policies in force stay.
        policies.write_text("permit(principal, action, resource) when { principal.")
        wait_until(
            lambda: "authorization policies not reloaded" in stack.gateway.log_path.read_text(),
            20,
            what="the gateway to refuse the broken policies",
        )
        assert await tool_names(client) == {"pysse_add"}
        assert await call_text(client, "pysse_add", {"a": 1, "b": 1}) == "2"
    assert "when { principal." not in stack.gateway.log_path.read_text(), "the log repeats the policy text"


async def _names_are(client: Any, expected: set[str]) -> bool:
    return await tool_names(client) == expected
