"""The audit log (issue 14, item 4): one JSON line per MCP operation, written off the request path.

Real peers throughout: Keycloak issues the tokens, the gateway verifies them and applies Cedar
policies, the official Python client makes the calls, FastMCP backends answer. The tests read the
audit file the gateway wrote and check who (the token's `sub`), what (tool, backend), the outcome
(success, denied by policy, the tool's own error, an unknown tool) and that no token or secret is
in it; and, without a token, that events go to stdout as anonymous with the client's address."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from harness import Launcher, call_error, call_text, connect, tool_names, wait_until
from keycloak import GATEWAY_CLIENT, GATEWAY_SECRET, PASSWORDS, Keycloak, claims_of

pytestmark = pytest.mark.anyio

POLICIES = [
    'permit(principal in THVGroup::"engineering", action, resource in MCP::"pyhttp");',
    'permit(principal, action == Action::"call_tool", resource == Tool::"pysse_echo");',
]


def oidc_with_policies(kc: Keycloak) -> dict[str, Any]:
    return {
        "incomingAuth": {
            "type": "oidc",
            "oidc": {
                "issuer": kc.issuer,
                "audience": GATEWAY_CLIENT,
                "jwksAllowPrivateIp": True,
                "insecureAllowHttp": True,
            },
            "authz": {"type": "cedar", "policies": POLICIES},
        }
    }


def audit_events(text: str) -> list[dict[str, Any]]:
    """The audit events among `text`'s lines (other lines, e.g. the gateway's log, are skipped)."""
    events = []
    for line in text.splitlines():
        if '"auditId"' not in line:
            continue
        events.append(json.loads(line))  # an audit line is always one whole JSON object
    return events


def read_events(path: Path) -> list[dict[str, Any]]:
    return audit_events(path.read_text()) if path.exists() else []


def tool_calls(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "mcp_tool_call" and e["target"].get("name") == name]


async def test_calls_are_audited_with_the_callers_sub_outcome_and_backend_and_no_secret(
    launcher: Launcher, keycloak: Keycloak, tmp_path: Path
) -> None:
    audit_file = tmp_path / "audit" / "vmcp-audit.log"
    audit_file.parent.mkdir()
    overrides = oidc_with_policies(keycloak)
    overrides["audit"] = {"logFile": str(audit_file), "includeRequestData": True, "maxDataSize": 2048}
    stack = launcher.stack(names=("pysse", "pyhttp"), overrides=overrides)

    bearers = {user: keycloak.password_token(user, PASSWORDS[user])["access_token"] for user in ("alice", "bob")}
    subs = {user: claims_of(bearer)["sub"] for user, bearer in bearers.items()}
    assert subs["alice"] != subs["bob"]
    client_of = lambda user: httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearers[user]}"}, timeout=30)  # noqa: E731

    async with connect(streamable_http_client(stack.url, http_client=client_of("alice"))) as alice:
        assert "pyhttp_fail" in await tool_names(alice)
        assert await call_text(alice, "pysse_echo", {"text": "hello"}) == "hello"
        # A client that pastes a credential into an argument: the value is redacted.
        pasted = f"Bearer {bearers['alice']}"
        assert await call_text(alice, "pysse_echo", {"text": pasted}) == pasted
        assert "always fails" in await call_error(alice, "pyhttp_fail")
        assert "unknown tool" in await call_error(alice, "no_such_tool")
    async with connect(streamable_http_client(stack.url, http_client=client_of("bob"))) as bob:
        assert "not allowed" in await call_error(bob, "pyhttp_echo", {"text": "bob"})

    # Written off the request path: poll until the last call's event is there.
    events = wait_until(
        lambda: (found := read_events(audit_file)) and tool_calls(found, "pyhttp_echo") and found,
        timeout=10,
        what="the audit event of bob's denied call",
    )
    by_user = lambda user: [e for e in events if e["subjects"].get("user_id") == subs[user]]  # noqa: E731

    for event in events:
        assert event["component"] == "vmcp-server", event
        assert event["source"] == {"type": "network", "value": "127.0.0.1"}, event
        assert isinstance(event["metadata"]["extra"]["duration_ms"], int), event
        assert event["metadata"]["auditId"], event

    initialized = [e for e in events if e["type"] == "mcp_initialize"]
    assert {e["subjects"]["user_id"] for e in initialized} == {subs["alice"], subs["bob"]}, initialized
    lists = [e for e in by_user("alice") if e["type"] == "mcp_tools_list"]
    assert lists and lists[0]["outcome"] == "success" and lists[0]["target"]["type"] == "server", lists

    plain, redacted = tool_calls(by_user("alice"), "pysse_echo")
    assert plain["outcome"] == "success" and "reason" not in plain, plain
    assert plain["subjects"]["user"] == "alice", plain
    assert plain["target"] == {"type": "tool", "method": "tools/call", "name": "pysse_echo", "backend": "pysse"}, plain
    assert plain["data"] == {"request": {"text": "hello"}}, plain
    assert redacted["data"] == {"request": {"text": "[REDACTED]"}}, redacted

    (failed,) = tool_calls(by_user("alice"), "pyhttp_fail")
    assert (failed["outcome"], failed["reason"], failed["target"]["backend"]) == ("application_error", "tool_error", "pyhttp"), failed
    (unknown,) = tool_calls(by_user("alice"), "no_such_tool")
    assert (unknown["outcome"], unknown["reason"]) == ("failure", "invalid_params"), unknown
    assert "backend" not in unknown["target"], unknown

    (denied,) = tool_calls(events, "pyhttp_echo")
    assert denied["subjects"]["user_id"] == subs["bob"], denied
    assert (denied["outcome"], denied["reason"], denied["target"]["backend"]) == ("denied", "policy", "pyhttp"), denied

    text = audit_file.read_text()
    for user, bearer in bearers.items():
        header, payload, signature = bearer.split(".")
        assert signature not in text and payload not in text, f"{user}'s token is in the audit log"
    assert GATEWAY_SECRET not in text
    assert stat.S_IMODE(audit_file.stat().st_mode) == 0o600
    metrics = stack.gateway.get("/metrics").text
    assert "vmcp_audit_events_dropped_total 0" in metrics, metrics[-2000:]


async def test_without_a_token_events_go_to_stdout_as_anonymous_and_filters_apply(launcher: Launcher) -> None:
    overrides = {"audit": {"excludeEventTypes": ["mcp_tools_list"], "component": "edge-gateway"}}
    stack = launcher.stack(names=("pysse",), overrides=overrides)
    async with connect(streamable_http_client(stack.url)) as client:
        assert "pysse_echo" in await tool_names(client)
        assert await call_text(client, "pysse_add", {"a": 2, "b": 3}) == "5"

    # The gateway's stdout and stderr share its log file; audit lines are whole JSON lines in it.
    events = wait_until(
        lambda: (found := audit_events(stack.gateway.log_path.read_text())) and tool_calls(found, "pysse_add") and found,
        timeout=10,
        what="the audit event of the add call",
    )
    (call,) = tool_calls(events, "pysse_add")
    assert call["outcome"] == "success" and call["target"]["backend"] == "pysse", call
    assert call["subjects"]["user"] == "anonymous" and "user_id" not in call["subjects"], call
    assert call["source"] == {"type": "network", "value": "127.0.0.1"}, call
    assert call["component"] == "edge-gateway", call
    assert "data" not in call, "request data is off unless configured"
    assert not [e for e in events if e["type"] == "mcp_tools_list"], "an excluded type was written"
    assert [e for e in events if e["type"] == "mcp_initialize"], events
