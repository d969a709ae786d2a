"""Hostile clients against the real binary: long resource URIs and session floods.

- A long URI that matches a resource template must neither freeze the
  gateway (matching is linear) nor be worked on at all beyond
  `server.maxUriBytes` (a JSON-RPC invalid-params error instead).
- Sessions are capped in total (`server.maxSessions`) and per client address
  (`server.maxSessionsPerClient`); beyond the caps `initialize` gets 503 with
  a JSON-RPC error, and slots come back on DELETE and on idle expiry
  (`server.sessionIdleTimeout`).

Every server here is on loopback; the extra client addresses are 127.0.0.2
and 127.0.0.3 (the loopback range). Request counts and times are bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness import (
    MCP_HEADERS,
    Launcher,
    Stack,
    base_gateway_config,
    deep_merge,
    jsonrpc_messages,
    metric_value,
    raw_session,
    wait_until,
)

INVALID_PARAMS = -32602
RESOURCE_NOT_FOUND = -32002
SERVER_BUSY = -32000
# Far above what a linear matcher needs for these sizes (milliseconds), far
# below what the old quadratic one took (minutes to hours).
ANSWER_TIMEOUT = 60.0


def gateway_with_pyhttp(launcher: Launcher, server: dict[str, Any]) -> Stack:
    backend = launcher.py("pyhttp", "streamable-http")
    config = deep_merge(base_gateway_config([backend.config()]), {"server": server})
    return Stack(gateway=launcher.gateway(config), backends={"pyhttp": backend})


def read_resource(http: httpx.Client, url: str, headers: dict[str, str], uri: str, request_id: int) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "resources/read", "params": {"uri": uri}}
    resp = http.post(url, json=body, headers=headers, timeout=ANSWER_TIMEOUT)
    assert resp.status_code == 200, f"{resp.status_code}: {resp.text[:300]}"
    return next(m for m in jsonrpc_messages(resp) if m.get("id") == request_id)


def test_a_long_template_uri_is_refused_before_matching_and_health_stays_green(launcher: Launcher) -> None:
    stack = gateway_with_pyhttp(launcher, {})  # default maxUriBytes (64 KiB)
    uri = "py://items/" + "x" * (2 * 1024 * 1024)  # matches py://items/{item_id}
    with httpx.Client() as http:
        headers = raw_session(http, stack.url)
        replies: list[dict[str, Any]] = []
        failures: list[BaseException] = []

        def read(n: int) -> None:
            try:
                with httpx.Client() as own:
                    replies.append(read_resource(own, stack.url, headers, uri, 100 + n))
            except BaseException as exc:  # reported below
                failures.append(exc)

        readers = [threading.Thread(target=read, args=(n,)) for n in range(2)]
        for reader in readers:
            reader.start()
        # /health keeps answering while both reads are in flight.
        while any(reader.is_alive() for reader in readers):
            assert http.get(f"{stack.gateway.base}/health", timeout=5.0).status_code == 200
        for reader in readers:
            reader.join()
    assert not failures, failures
    assert len(replies) == 2
    for reply in replies:
        error = reply.get("error") or {}
        assert error.get("code") == INVALID_PARAMS, reply
        assert "server.maxUriBytes" in error.get("message", ""), reply
        assert len(error["message"]) < 300, "the URI is not echoed back"


def test_template_matching_is_linear_in_the_uri(launcher: Launcher) -> None:
    # The limit lifted: 4 MiB URIs are matched against the template.
    stack = gateway_with_pyhttp(launcher, {"maxUriBytes": 8 * 1024 * 1024, "maxRequestBytes": 16 * 1024 * 1024})
    with httpx.Client() as http:
        headers = raw_session(http, stack.url)
        # Almost matches py://items/{item_id}: a `/` at the very end.
        miss = read_resource(http, stack.url, headers, "py://items/" + "x" * (4 * 1024 * 1024) + "/", 1)
        assert (miss.get("error") or {}).get("code") == RESOURCE_NOT_FOUND, str(miss)[:300]
        # The error quotes the start of the URI, not all 4 MiB of it.
        message = miss["error"]["message"]
        assert len(message) < 400 and message.endswith(f"({4 * 1024 * 1024 + len('py://items/') + 1} bytes)"), message[:300]
        # And a real match is routed to the backend.
        hit = read_resource(http, stack.url, headers, "py://items/" + "y" * 1_000, 2)
        assert "result" in hit, str(hit)[:300]
        assert "from pyhttp" in str(hit["result"]["contents"][0]["text"])[-100:]


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "flood", "version": "0"}},
}


@pytest.fixture
def clients() -> Iterator[dict[str, httpx.Client]]:
    """HTTP clients from three loopback addresses."""
    made = {
        address: httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=15.0)
        for address in ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    }
    yield made
    for client in made.values():
        client.close()


def initialize(http: httpx.Client, url: str, request_id: int = 1) -> httpx.Response:
    return http.post(url, json={**INIT, "id": request_id}, headers=MCP_HEADERS)


def assert_refused(resp: httpx.Response, request_id: int, setting: str) -> None:
    assert resp.status_code == 503, f"{resp.status_code}: {resp.text[:300]}"
    assert "mcp-session-id" not in resp.headers
    assert resp.headers.get("retry-after"), resp.headers
    body = resp.json()
    assert body["id"] == request_id, body
    assert body["error"]["code"] == SERVER_BUSY, body
    assert setting in body["error"]["message"], body


def test_sessions_are_capped_in_total_and_per_client_and_slots_come_back(
    launcher: Launcher, clients: dict[str, httpx.Client]
) -> None:
    stack = gateway_with_pyhttp(
        launcher, {"maxSessions": 5, "maxSessionsPerClient": 3, "sessionIdleTimeout": "3s"}
    )
    url = stack.url
    one, two, three = clients["127.0.0.1"], clients["127.0.0.2"], clients["127.0.0.3"]

    # A client's share: three sessions, the fourth is refused.
    first = [raw_session(one, url) for _ in range(3)]
    assert_refused(initialize(one, url, 7), 7, "server.maxSessionsPerClient")
    # Other clients fill the rest; then the total is reached for everyone.
    second = [raw_session(two, url) for _ in range(2)]
    assert_refused(initialize(three, url, 8), 8, "server.maxSessions")
    assert_refused(initialize(two, url, 9), 9, "server.maxSessions")
    # Existing sessions keep working meanwhile.
    ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
    assert one.post(url, json=ping, headers=first[0]).status_code == 200
    metrics = stack.gateway.get("/metrics").text
    assert metric_value(metrics, "vmcp_sessions_open") == 5, metrics
    assert metric_value(metrics, "vmcp_client_refusals_total", reason="client_session_limit") == 1, metrics
    assert metric_value(metrics, "vmcp_client_refusals_total", reason="session_limit") == 2, metrics

    # DELETE gives a slot back at once.
    assert two.delete(url, headers=second[0]).status_code < 300
    wait_until(lambda: initialize(three, url).status_code == 200, 15.0, what="a slot after DELETE")

    # Idle sessions expire and give their slots back: the first client can
    # open sessions again without closing any.
    wait_until(lambda: initialize(one, url).status_code == 200, 30.0, what="slots after idle expiry")
    expired = one.post(url, json=ping, headers=first[1])
    assert expired.status_code == 404, f"an expired session answered {expired.status_code}"
    assert stack.gateway.get("/health").status_code == 200
