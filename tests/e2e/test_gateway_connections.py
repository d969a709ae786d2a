"""Client connections against the real binary: header/body/idle deadlines, the declared-length
413, the connection cap with its probe reserve, and many half-open connections under a low
open-files limit (issue 9, item 2). Raw sockets on loopback; every wait has a deadline."""

from __future__ import annotations

import contextlib
import json
import resource
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import (
    LOOPBACK,
    MCP_HEADERS,
    Gateway,
    Launcher,
    Stack,
    call_text,
    connect,
    jsonrpc_messages,
    metric_value,
    base_gateway_config,
    deep_merge,
    raw_session,
    wait_until,
)

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "conn-test", "version": "0"}},
}


def connections(overrides: dict[str, Any]) -> dict[str, Any]:
    return {"server": {"connections": overrides}}


def open_socket(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def half_open(port: int) -> socket.socket:
    """A connection that sent the start of a request and then nothing."""
    sock = open_socket(port)
    sock.sendall(f"GET /health HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nX-Slow: ".encode())
    return sock


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until EOF or `seconds`; return (closed by the peer, bytes read)."""
    data = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def read_response(sock: socket.socket, seconds: float) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response (status, lowercased headers, body as far as Content-Length) or fail."""
    data = b""
    deadline = time.monotonic() + seconds
    while b"\r\n\r\n" not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"no response within {seconds}s (got {data[:200]!r})"
        readable, _, _ = select.select([sock], [], [], left)
        if readable:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without a response (got {data[:200]!r})"
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length and time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def get_over(sock: socket.socket, port: int, path: str) -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n\r\n".encode())


@contextlib.contextmanager
def held(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


def initialize_status(url: str, timeout: float = 5.0) -> int:
    return httpx.post(url, json=INIT, headers=MCP_HEADERS, timeout=timeout).status_code


def small_stack(launcher: Launcher, overrides: dict[str, Any] | None = None) -> Stack:
    return launcher.stack(names=("pysse",), overrides=overrides)


# ---------------------------------------------------------------------------
# deadlines


def test_a_client_that_never_finishes_its_headers_is_closed_after_the_header_timeout(launcher: Launcher) -> None:
    stack = small_stack(launcher, connections({"headerReadTimeout": "1s"}))
    port = stack.gateway.port
    with held([half_open(port)]) as (sock,):
        started = time.monotonic()
        closed, data = closed_within(sock, 15)
        elapsed = time.monotonic() - started
    assert closed, "a connection with unfinished headers was kept open for 15 s"
    assert data == b"", f"unexpected answer {data[:200]!r}"
    assert elapsed >= 0.8, f"closed after {elapsed:.2f}s, before the 1 s header timeout"
    # A client that trickles header bytes is cut too: the deadline is for the whole head.
    with held([open_socket(port)]) as (sock,):
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 15 and not closed:
            with contextlib.suppress(OSError):
                sock.sendall(b"X-Drip: 1\r\n")
            closed, _ = closed_within(sock, 0.3)
    assert closed, "a client trickling header lines kept its connection for 15 s"
    assert stack.gateway.get("/health").status_code == 200
    metrics = stack.gateway.get("/metrics").text
    assert metric_value(metrics, "vmcp_connection_timeouts_total", deadline="header_read") >= 2, metrics


def test_a_client_that_never_finishes_its_body_gets_408(launcher: Launcher) -> None:
    stack = small_stack(launcher, connections({"bodyReadTimeout": "1s"}))
    port = stack.gateway.port
    with held([open_socket(port)]) as (sock,):
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: 500\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"jsonrpc": "2.0", ')
        started = time.monotonic()
        status, headers, body = read_response(sock, 15)
        elapsed = time.monotonic() - started
        assert status == 408, (status, body[:300])
        assert headers.get("connection") == "close"
        error = json.loads(body)["error"]
        assert "not received within" in error["message"], error
        assert elapsed >= 0.8, f"answered after {elapsed:.2f}s, before the 1 s body timeout"
        closed, _ = closed_within(sock, 10)
        assert closed, "the connection stayed open after the 408"
    assert stack.gateway.get("/health").status_code == 200


def test_a_declared_length_above_the_limit_is_refused_at_once(launcher: Launcher) -> None:
    stack = small_stack(launcher)
    port = stack.gateway.port
    for path in ("/mcp", "/health"):
        with held([open_socket(port)]) as (sock,):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
                f"Accept: application/json, text/event-stream\r\nContent-Length: 10000000000\r\n\r\n"
            )
            sock.sendall(head.encode())
            started = time.monotonic()
            status, headers, body = read_response(sock, 10)
            elapsed = time.monotonic() - started
            assert status == 413, (path, status, body[:300])
            assert "larger than" in json.loads(body)["error"]["message"]
            # No waiting for the body: well below any read timeout.
            assert elapsed < 5, f"{path}: 413 took {elapsed:.1f}s"
            closed, _ = closed_within(sock, 10)
            assert closed, f"{path}: connection left open after refusing the body"


def test_idle_keep_alive_is_closed_but_streams_and_slow_calls_are_not(launcher: Launcher) -> None:
    idle = 3.0
    stack = small_stack(launcher, connections({"headerReadTimeout": "1s", "idleTimeout": f"{idle:g}s"}))
    port = stack.gateway.port
    # Idle keep-alive: open past the header timeout, closed after the idle timeout.
    with held([open_socket(port)]) as (sock,):
        get_over(sock, port, "/health")
        status, _, _ = read_response(sock, 10)
        assert status == 200
        answered = time.monotonic()
        closed, _ = closed_within(sock, 2.0)
        assert not closed, "an idle keep-alive connection was closed at the header timeout"
        get_over(sock, port, "/health")  # a second request on the same connection works
        assert read_response(sock, 10)[0] == 200
        answered = time.monotonic()
        closed, _ = closed_within(sock, idle + 10)
        waited = time.monotonic() - answered
        assert closed, f"an idle connection stayed open {waited:.1f}s, idleTimeout {idle}s"
        assert waited >= idle - 0.3, f"closed after {waited:.1f}s, before idleTimeout {idle}s"

    # The MCP event stream (GET) lasts longer than idle and header timeouts.
    with httpx.Client(timeout=15.0) as http:
        session = raw_session(http, stack.url)
    with held([open_socket(port)]) as (sock,):
        lines = [f"GET /mcp HTTP/1.1", f"Host: {LOOPBACK}:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in session.items() if k.lower() in ("mcp-session-id", "mcp-protocol-version")]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, headers, _ = read_response(sock, 10)
        assert status == 200 and headers.get("content-type", "").startswith("text/event-stream"), (status, headers)
        closed, _ = closed_within(sock, 2 * idle + 1)
        assert not closed, "the MCP event stream was cut by the idle/header timeout"



@pytest.mark.anyio
async def test_a_tool_call_slower_than_the_idle_timeout_completes(launcher: Launcher) -> None:
    stack = small_stack(launcher, connections({"headerReadTimeout": "1s", "idleTimeout": "2s"}))
    async with connect(stack.url) as client:
        assert await call_text(client, "pysse_slow", {"seconds": 4.0}) == "slept 4.0 on pysse"


# ---------------------------------------------------------------------------
# the connection cap


def test_excess_connections_are_refused_while_probes_still_get_through(launcher: Launcher) -> None:
    cap, reserve = 20, 4
    stack = small_stack(launcher, connections({"max": cap, "probeReserve": reserve, "headerReadTimeout": "60s"}))
    gateway = stack.gateway
    port = gateway.port
    with held([half_open(port) for _ in range(cap)]):
        # Probes are answered from the reserve; MCP gets a clear, immediate 503.
        wait_until(lambda: initialize_status(stack.url) == 503, 15, what="initialize refused at the cap")
        resp = httpx.post(stack.url, json=INIT, headers=MCP_HEADERS, timeout=5)
        assert resp.status_code == 503
        assert resp.headers.get("retry-after") == "1"
        assert "too many connections" in jsonrpc_messages(resp)[0]["error"]["message"]
        for path in ("/health", "/readyz"):
            assert gateway.get(path).status_code == 200, path

        # With the reserve full too, a new connection is closed before anything is read.
        with held([half_open(port) for _ in range(reserve)]):
            with held([open_socket(port)]) as (extra,):
                get_over(extra, port, "/health")
                closed, data = closed_within(extra, 5)
                assert closed and data == b"", f"a connection beyond cap and reserve got {data[:200]!r}"
        # Reserve slots are given back quickly (short header deadline).
        wait_until(lambda: gateway.get("/health", timeout=2).status_code == 200, 15, what="/health after the reserve fill")
        assert "connection limit reached" in gateway.log_tail(400)
        # Both kinds of refusal are counted (the scrape itself comes through the reserve).
        metrics = gateway.get("/metrics").text
        assert metric_value(metrics, "vmcp_client_refusals_total", reason="connection_limit") >= 1, metrics
        assert metric_value(metrics, "vmcp_client_refusals_total", reason="probe_reserve") >= 2, metrics
        assert metric_value(metrics, "vmcp_connections_open") >= cap, metrics
    # Released: full service again.
    wait_until(lambda: initialize_status(stack.url) == 200, 15, what="initialize after the cap cleared")
    wait_until(
        lambda: metric_value(gateway.get("/metrics").text, "vmcp_connections_open") < cap, 15, what="vmcp_connections_open to fall"
    )


def test_many_half_open_connections_under_a_low_open_files_limit(launcher: Launcher, tmp_path: Path) -> None:
    held_count, open_files = 1100, 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < held_count + 200:  # the test itself holds the sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, held_count + 400), hard))
    backend = launcher.py("pysse", "sse")
    state_dir = tmp_path / "state"
    config = deep_merge(base_gateway_config([backend.config()]), connections({"headerReadTimeout": "5s"}))
    config["name"] = "fdtest"
    gateway = Gateway(
        launcher.vmcp_bin, config, launcher.log_dir, args=["--state-dir", str(state_dir), "--reporter", "file"]
    )
    # The open-files limit as many hosts have it, hard limit included (nothing to raise to).
    gateway.argv = ["prlimit", f"--nofile={open_files}:{open_files}", "--", *gateway.argv]
    launcher._register(gateway)
    gateway.start()
    gateway.wait_ready()

    def backend_state() -> str | None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads((state_dir / "fdtest.json").read_text())
            return next(b["status"] for b in data["status"]["discoveredBackends"] if b["name"] == "pysse")
        return None

    wait_until(lambda: backend_state() == "ready", 30, what="state file shows pysse ready")
    sockets: list[socket.socket] = []
    with held(sockets):
        for _ in range(held_count):
            with contextlib.suppress(OSError):  # refused ones may be reset while we open more
                sockets.append(half_open(gateway.port))
        assert len(sockets) >= held_count - 50, f"only {len(sockets)} connections opened"
        # /health answers (from the probe reserve), and /mcp answers: at once with 503
        # while the cap is reached, fully once the half-open ones hit their header deadline.
        wait_until(lambda: gateway.get("/health", timeout=2).status_code == 200, 20, what="/health while held")
        wait_until(lambda: initialize_status(gateway.url, timeout=2) == 200, 30, what="initialize while held")
        # The state file is still written: kill the backend, the file must say so.
        backend.kill_hard()
        wait_until(lambda: backend_state() not in (None, "ready"), 30, what="state file shows pysse down")
        gateway.check_alive()
    log = gateway.log_tail(2000)
    assert "Too many open files" not in log, log[-3000:]
    assert "server.connections lowered" in log, "the lowered connection cap was not logged"
    assert "open-files limit" in log
