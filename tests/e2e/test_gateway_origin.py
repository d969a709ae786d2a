"""`Origin` validation against DNS rebinding (issue 9, item 6): unknown browser origins get 403
with a JSON-RPC error; requests without `Origin` and the origins of accepted hosts keep working;
`server.allowedOrigins` adds others."""

from __future__ import annotations

import httpx
import pytest

from harness import MCP_HEADERS, Launcher, call_text, connect, jsonrpc_messages

pytestmark = pytest.mark.anyio

INVALID_REQUEST = -32600
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "origin-test", "version": "0"}},
}


def initialize(url: str, origin: str | None) -> httpx.Response:
    headers = dict(MCP_HEADERS)
    if origin is not None:
        headers["Origin"] = origin
    return httpx.post(url, json=INIT, headers=headers, timeout=10)


def assert_refused(resp: httpx.Response) -> None:
    assert resp.status_code == 403, f"{resp.status_code}: {resp.text[:300]}"
    assert resp.headers.get("mcp-session-id") is None, "a session was created for a refused origin"
    (message,) = jsonrpc_messages(resp)
    assert message["error"]["code"] == INVALID_REQUEST, message
    assert "Origin not allowed" in message["error"]["message"], message


async def test_unknown_origins_are_refused_and_known_ones_served(launcher: Launcher) -> None:
    stack = launcher.stack(
        names=("pysse",),
        overrides={
            "server": {
                "allowedHosts": ["vmcp.tools.internal"],
                "allowedOrigins": ["https://console.example.com"],
            }
        },
    )
    for origin in ("http://evil.example", "https://console.example.com.evil.example", "null", "http://console.example.com"):
        assert_refused(initialize(stack.url, origin))
    # Not only /mcp: a rebound page must not read the status either.
    status = httpx.get(f"{stack.gateway.base}/status", headers={"Origin": "http://evil.example"}, timeout=10)
    assert status.status_code == 403, status.text[:300]

    for origin in (
        None,  # non-browser clients send none
        "http://localhost:6274",  # a page on loopback (e.g. the MCP inspector)
        "http://127.0.0.1:3000",
        "https://vmcp.tools.internal",  # the host of an accepted Host name
        "https://console.example.com",  # listed in allowedOrigins
    ):
        resp = initialize(stack.url, origin)
        assert resp.status_code == 200, f"{origin}: {resp.status_code} {resp.text[:300]}"
        assert "result" in jsonrpc_messages(resp)[0], origin

    # The official client (no Origin) works end to end.
    async with connect(stack.url) as client:
        assert await call_text(client, "pysse_echo", {"text": "hi"}) == "hi"


async def test_a_star_allows_every_origin(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pysse",), overrides={"server": {"allowedOrigins": ["*"]}})
    resp = initialize(stack.url, "http://evil.example")
    assert resp.status_code == 200, resp.text[:300]
