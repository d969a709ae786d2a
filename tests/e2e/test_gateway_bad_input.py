"""Hostile and broken input on the MCP endpoint: clear 4xx answers, never a 5xx, never a crash.

Uses raw HTTP (httpx, or a socket for the oversized body) on its own shared
stack, and checks after every test that the gateway still serves.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from harness import (
    DEFAULT_MAX_REQUEST_BYTES,
    MAX_REQUEST_BYTES,
    MCP_HEADERS,
    Stack,
    assert_no_internals,
    assert_still_serving,
    call_error,
    connect,
    jsonrpc_error_code,
    post_oversized,
    raw_session,
)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602


@pytest.fixture
def stack(shared_stack: Stack) -> Iterator[Stack]:
    yield shared_stack
    assert_still_serving(shared_stack)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15.0) as client:
        yield client


@pytest.mark.parametrize("with_session", [False, True], ids=["no-session", "in-session"])
@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"', b"\xff\xfe\x00garbage"],
    ids=["bare-brace", "truncated", "binary"],
)
def test_malformed_json_is_a_400_parse_error(stack: Stack, http: httpx.Client, body: bytes, with_session: bool) -> None:
    headers = raw_session(http, stack.url) if with_session else dict(MCP_HEADERS)
    resp = http.post(stack.url, content=body, headers=headers)
    assert resp.status_code == 400, f"{resp.status_code}: {resp.text[:300]}"
    assert jsonrpc_error_code(resp) == PARSE_ERROR, resp.text[:300]


@pytest.mark.parametrize(
    "body",
    [
        b'{"hello": "world"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": 42}',
        b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}',
        b'"just a string"',
    ],
    ids=["no-jsonrpc-fields", "method-not-a-string", "wrong-version", "scalar"],
)
def test_invalid_jsonrpc_is_an_invalid_request(stack: Stack, http: httpx.Client, body: bytes) -> None:
    headers = raw_session(http, stack.url)
    resp = http.post(stack.url, content=body, headers=headers)
    assert 400 <= resp.status_code < 500, f"{resp.status_code}: {resp.text[:300]}"
    assert jsonrpc_error_code(resp) == INVALID_REQUEST, resp.text[:300]


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["no_such_tool", "pyhttp_no_such_tool", "nobody_echo", ""])
async def test_unknown_tool_is_an_error(stack: Stack, name: str) -> None:
    async with connect(stack.url) as client:
        text = await call_error(client, name, {"text": "x"})
        assert_no_internals(text, stack)


def test_oversized_body_is_413(stack: Stack, http: httpx.Client) -> None:
    limit = MAX_REQUEST_BYTES or DEFAULT_MAX_REQUEST_BYTES
    size = limit + 1024 * 1024  # 5 MiB when the limit is left at its default
    headers = raw_session(http, stack.url)
    status = post_oversized(stack.gateway.port, "/mcp", headers, size)
    assert status == 413


def test_wrong_host_header_is_refused(stack: Stack, http: httpx.Client) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "rebind", "version": "0"}},
    }
    for host in ("evil.example.com", f"attacker.test:{stack.gateway.port}"):
        resp = http.post(stack.url, json=init, headers={**MCP_HEADERS, "Host": host})
        assert resp.status_code in (400, 403, 421), f"Host {host!r} got {resp.status_code}: {resp.text[:200]}"
    # The loopback names it is reached by are fine.
    for host in (f"127.0.0.1:{stack.gateway.port}", f"localhost:{stack.gateway.port}"):
        resp = http.post(stack.url, json=init, headers={**MCP_HEADERS, "Host": host})
        assert resp.status_code == 200, f"Host {host!r} got {resp.status_code}: {resp.text[:200]}"


def test_odd_requests_get_4xx_not_5xx(stack: Stack, http: httpx.Client) -> None:
    url = stack.url
    session = raw_session(http, url)
    bogus = {**MCP_HEADERS, "Mcp-Session-Id": "00000000-not-a-session", "MCP-Protocol-Version": session["MCP-Protocol-Version"]}
    tools_list = {"jsonrpc": "2.0", "id": 5, "method": "tools/list"}
    cases = {
        "request before initialize": http.post(url, json=tools_list, headers=MCP_HEADERS),
        "unknown session id": http.post(url, json=tools_list, headers=bogus),
        "text/plain body": http.post(url, content=b"{}", headers={**session, "Content-Type": "text/plain"}),
        "unacceptable Accept": http.post(
            url, json=tools_list, headers={k: v for k, v in session.items() if k != "Accept"} | {"Accept": "image/png"}
        ),
        "PUT": http.put(url, json=tools_list, headers=session),
        "DELETE unknown session": http.delete(url, headers=bogus),
    }
    for label, resp in cases.items():
        # A stateless gateway may legitimately answer some of these with 200.
        assert resp.status_code < 500, f"{label}: {resp.status_code} {resp.text[:200]}"
        if label in ("unknown session id", "PUT", "text/plain body"):
            assert 400 <= resp.status_code < 500, f"{label}: {resp.status_code} {resp.text[:200]}"


def test_unknown_method_is_method_not_found(stack: Stack, http: httpx.Client) -> None:
    headers = raw_session(http, stack.url)
    resp = http.post(stack.url, json={"jsonrpc": "2.0", "id": 9, "method": "no/such/method"}, headers=headers)
    assert resp.status_code < 500
    assert jsonrpc_error_code(resp) == -32601, resp.text[:300]


@pytest.mark.parametrize("with_session", [False, True], ids=["no-session", "in-session"])
@pytest.mark.parametrize(
    "body",
    [
        b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]',
        b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "method": "notifications/initialized"}]',
        b"[]",
        b'{"jsonrpc": "2.0", "id": null, "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": {}, "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": [1], "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": true, "method": "tools/list"}',
        b'{"jsonrpc": "2.0", "id": 1.5, "method": "tools/list"}',
        b'{"jsonrpc": "2.0", "id": null, "result": {}}',
    ],
    ids=["batch-of-one", "batch", "empty-batch", "id-null", "id-object", "id-array", "id-bool", "id-fraction", "response-id-null"],
)
def test_batches_and_bad_ids_are_a_json_invalid_request(stack: Stack, http: httpx.Client, body: bytes, with_session: bool) -> None:
    """rmcp answers these with a plain-text 415; the README promises JSON-RPC -32600."""
    headers = raw_session(http, stack.url) if with_session else dict(MCP_HEADERS)
    resp = http.post(stack.url, content=body, headers=headers)
    assert resp.status_code == 400, f"{resp.status_code}: {resp.text[:300]}"
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    assert resp.json()["jsonrpc"] == "2.0"
    assert jsonrpc_error_code(resp) == INVALID_REQUEST, resp.text[:300]


@pytest.mark.parametrize(
    ("body", "request_id"),
    [
        (b'{"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {"arguments": {}}}', 41),
        (b'{"jsonrpc": "2.0", "id": "r-1", "method": "resources/read", "params": {"uri": 5}}', "r-1"),
        (b'{"jsonrpc": "2.0", "id": 43, "method": "prompts/get", "params": "greet"}', 43),
    ],
    ids=["call-without-name", "uri-not-a-string", "params-not-an-object"],
)
def test_params_that_do_not_fit_the_method_are_invalid_params_with_the_id(
    stack: Stack, http: httpx.Client, body: bytes, request_id: object
) -> None:
    headers = raw_session(http, stack.url)
    resp = http.post(stack.url, content=body, headers=headers)
    assert resp.status_code == 400, f"{resp.status_code}: {resp.text[:300]}"
    assert jsonrpc_error_code(resp) == INVALID_PARAMS, resp.text[:300]
    assert resp.json()["id"] == request_id, resp.text[:300]
