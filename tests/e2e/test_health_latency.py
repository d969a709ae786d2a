"""Slow backends and the circuit breaker, with the project's example server
as the backend: `vmcp-example-server --latency-tools` lets a test delay
everything it answers (`set_latency`, `ping` included) or only its tool
calls (`set_call_latency`). The test drives those tools over its own
connection to the example server, not through the gateway, so the gateway's
view of the backend does not get in the way.

Fast health settings (harness.FAST_FAILURE_HANDLING): probes every 1 s with
a 500 ms timeout, probes over 200 ms are slow, two slow probes in a row make
a backend `degraded`; three failed calls in a row open its circuit for 2 s.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from harness import (
    phase_is,
    ListChanges,
    CIRCUIT_FAILURE_THRESHOLD,
    CIRCUIT_OPEN_TIMEOUT,
    DEGRADED_LATENCY,
    HEALTH_INTERVAL,
    HEALTH_TIMEOUT,
    ExampleHttp,
    Gateway,
    Launcher,
    await_until,
    backend_entry,
    backend_is,
    call_text,
    condition,
    connect,
    fast_health_config,
    get_status,
    metric_value,
    next_probe,
    parse_time,
    tool_names,
    wait_status,
    watch_status,
)

pytestmark = pytest.mark.anyio

# Above degradedLatencyThreshold (200 ms), well below healthCheckTimeout (500 ms):
# slow probes still succeed.
SLOW_MS = 300
assert DEGRADED_LATENCY < SLOW_MS / 1000 < HEALTH_TIMEOUT
# The probe histogram bucket between the threshold and SLOW_MS: probes above it were slow.
SLOW_BUCKET = "0.25"
assert DEGRADED_LATENCY < float(SLOW_BUCKET) < SLOW_MS / 1000
EX_CALL_TIMEOUT = 0.5  # operational.timeouts.perWorkload.ex in the circuit test


async def probe_counts(gateway: Gateway, backend: str) -> tuple[int, int]:
    """(probes so far, probes slower than SLOW_BUCKET) of `backend`, from /metrics."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(f"{gateway.base}/metrics")).text
    total = metric_value(text, "vmcp_probe_duration_seconds_count", backend=backend)
    fast = metric_value(text, "vmcp_probe_duration_seconds_bucket", backend=backend, le=SLOW_BUCKET)
    return int(total), int(total - fast)


async def set_latency(control: Client, millis: int) -> None:
    assert await call_text(control, "set_latency", {"millis": millis}) == f"latency set to {millis} ms"


async def set_call_latency(control: Client, millis: int) -> None:
    assert await call_text(control, "set_call_latency", {"millis": millis}) == f"tool call latency set to {millis} ms"


async def ex_tools(client: Client) -> set[str]:
    return {name for name in await tool_names(client) if name.startswith("ex_")}


def start_example_stack(launcher: Launcher, **config: Any) -> tuple[ExampleHttp, Gateway]:
    ex = launcher.example_http("ex", wait=False)
    pyless = launcher.py("pyless", "streamable-http", stateless=True, wait=False)
    ex.wait_listening()
    pyless.wait_listening()
    return ex, launcher.gateway(fast_health_config([ex.config(), pyless.config()], **config))


async def test_slow_probes_degrade_a_backend_with_hysteresis(launcher: Launcher) -> None:
    ex, gateway = start_example_stack(launcher, per_workload={"ex": "2s"})
    await wait_status(gateway, phase_is("Ready"), 15, "phase Ready")

    async with connect(ex.url) as control, watch_status(gateway) as watch, connect(gateway.url) as client:
        # One slow probe is noise. Set the latency right after a probe, so
        # exactly one probe runs slow before it is reset.
        total, slow = await probe_counts(gateway, "ex")
        await await_until(lambda: _more_probes(gateway, total), 5, interval=0.02, what="a probe of ex")
        mark = watch.mark()
        await set_latency(control, SLOW_MS)
        await await_until(lambda: _slow_probes_reach(gateway, slow + 1), 5, interval=0.02, what="one slow probe")
        await set_latency(control, 0)
        total, _ = await probe_counts(gateway, "ex")
        await await_until(lambda: _more_probes(gateway, total + 1), 5, interval=0.05, what="two more probes")
        _, slow_after = await probe_counts(gateway, "ex")
        assert slow_after == slow + 1, f"expected exactly one slow probe, saw {slow_after - slow}"
        seen = [s.status for s in watch.since(mark)] + [await get_status(gateway)]
        assert {backend_entry(s, "ex")["status"] for s in seen} == {"ready"}
        assert {s["phase"] for s in seen} == {"Ready"}

        # Two slow probes in a row: degraded, but still served.
        _, slow = await probe_counts(gateway, "ex")
        mark = watch.mark()
        await set_latency(control, SLOW_MS)
        degraded = await watch.wait_for(
            backend_is("ex", "degraded"), 2 * HEALTH_INTERVAL + 3, "ex degraded after two slow probes", since=mark
        )
        _, slow_now = await probe_counts(gateway, "ex")
        assert slow_now >= slow + 2, f"degraded after {slow_now - slow} slow probes"
        status = degraded.status
        entry = backend_entry(status, "ex")
        assert entry["message"] == "health checks are slow", entry
        assert entry["circuitBreakerState"] == "closed"
        assert status["phase"] == "Degraded"
        ready, degraded_cond = condition(status, "Ready"), condition(status, "Degraded")
        assert (ready["status"], ready["reason"]) == ("True", "SomeBackendsUnhealthy"), ready
        assert (degraded_cond["status"], degraded_cond["reason"]) == ("True", "SomeBackendsUnhealthy"), degraded_cond
        assert "ex" in status["message"], status["message"]
        assert backend_entry(status, "pyless")["status"] == "ready"
        # Degraded is routable: the tools stay and calls work (slowly).
        assert "ex_echo" in await tool_names(client)
        began = time.monotonic()
        assert await call_text(client, "ex_echo", {"text": "slowly"}) == "slowly"
        assert time.monotonic() - began >= SLOW_MS / 1000
        # Still slow: it stays degraded over further probes.
        later = await next_probe(gateway, "ex", after=await next_probe(gateway, "ex", after=status))
        assert backend_entry(later, "ex")["status"] == "degraded"
        assert condition(later, "Degraded")["lastTransitionTime"] == degraded_cond["lastTransitionTime"]

        # Fast again: two fast probes make it ready.
        await set_latency(control, 0)
        back = await wait_status(
            gateway, phase_is("Ready", backend_is("ex", "ready")), 2 * HEALTH_INTERVAL + 3, "ex ready again"
        )
        assert "message" not in backend_entry(back, "ex")
        assert condition(back, "Degraded")["reason"] == "AllBackendsHealthy"
        assert condition(back, "Ready")["lastTransitionTime"] == ready["lastTransitionTime"]


async def _more_probes(gateway: Gateway, than: int) -> bool:
    return (await probe_counts(gateway, "ex"))[0] > than


async def _slow_probes_reach(gateway: Gateway, count: int) -> bool:
    return (await probe_counts(gateway, "ex"))[1] >= count


async def call_failure(client: Client, tool: str) -> tuple[float, MCPError]:
    """Call a tool that must fail with a JSON-RPC error: (elapsed seconds, the error)."""
    began = time.monotonic()
    try:
        result = await client.call_tool(tool, {"text": "x"})
    except MCPError as exc:
        return time.monotonic() - began, exc
    raise AssertionError(f"expected {tool} to fail with a JSON-RPC error, it returned {result!r}")


async def concurrent_failures(client: Client, tool: str, n: int) -> list[tuple[float, MCPError]]:
    results: list[tuple[float, MCPError]] = []

    async def one() -> None:
        results.append(await call_failure(client, tool))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return results


def assert_timed_out(results: list[tuple[float, MCPError]]) -> None:
    for elapsed, error in results:
        assert error.code == -32001, error
        assert error.data == {"backend": "ex", "reason": "timeout"}, error.data
        assert EX_CALL_TIMEOUT - 0.05 <= elapsed < EX_CALL_TIMEOUT + 1.5, (elapsed, error)


async def test_failing_calls_open_the_circuit_and_a_probe_closes_it(launcher: Launcher) -> None:
    # Failed calls also count against health (unhealthyThreshold). Raise that
    # threshold here so that the circuit breaker alone decides, and let a
    # successful probe reset the health count between the two batches below.
    ex, gateway = start_example_stack(
        launcher, per_workload={"ex": "500ms"}, failure_handling={"unhealthyThreshold": 2 * CIRCUIT_FAILURE_THRESHOLD}
    )
    start = await wait_status(gateway, phase_is("Ready"), 15, "phase Ready")
    changes = ListChanges()
    async with connect(ex.url) as control, connect(gateway.url, message_handler=changes) as client:
        assert await call_text(client, "ex_echo", {"text": "fine"}) == "fine"
        # Tool calls time out at the gateway; pings stay fast.
        await set_call_latency(control, 3000)

        # Fewer failures than the threshold: still closed, still listed.
        results = await concurrent_failures(client, "ex_echo", CIRCUIT_FAILURE_THRESHOLD - 1)
        assert_timed_out(results)
        status = await get_status(gateway)
        entry = backend_entry(status, "ex")
        assert (entry["status"], entry["circuitBreakerState"]) == ("ready", "closed"), entry
        assert "ex_echo" in await tool_names(client)
        await next_probe(gateway, "ex", after=status)

        # `failureThreshold` failures in a row (at once, so that no probe
        # comes between them): open.
        seen = changes.count
        results = await concurrent_failures(client, "ex_echo", CIRCUIT_FAILURE_THRESHOLD)
        assert_timed_out(results)
        opened = await wait_status(
            gateway, backend_is("ex", "unavailable", circuitBreakerState="open"), 2, "ex circuit open"
        )
        entry = backend_entry(opened, "ex")
        assert entry["message"] == "circuit breaker open", entry
        assert entry["consecutiveFailures"] >= CIRCUIT_FAILURE_THRESHOLD, entry
        opened_at = parse_time(entry["circuitLastChanged"])
        assert opened["phase"] == "Degraded"
        assert condition(opened, "Ready")["status"] == "True"
        assert backend_entry(opened, "pyless")["status"] == "ready"

        # Open: calls fail at once, naming the backend and the circuit.
        elapsed, error = await call_failure(client, "ex_echo")
        assert elapsed < 0.1, f"took {elapsed:.3f}s with the circuit open"
        assert error.data is not None and error.data.get("backend") == "ex", error
        assert error.message.startswith("backend ex is unavailable: circuit breaker open"), error.message
        # ... and its tools leave the catalogue.
        await await_until(lambda: changes.count > seen, 5, what="tools/list_changed when the circuit opened")
        await await_until(lambda: _no_ex_tools(client), 5, what="ex tools to leave tools/list")
        assert await call_text(client, "pyless_echo", {"text": "unaffected"}) == "unaffected"

        # After the open timeout, a successful probe closes it.
        await set_call_latency(control, 0)
        seen = changes.count
        closed = await wait_status(
            gateway,
            backend_is("ex", "ready", circuitBreakerState="closed"),
            CIRCUIT_OPEN_TIMEOUT + HEALTH_INTERVAL + 3,
            "ex circuit closed again",
        )
        entry = backend_entry(closed, "ex")
        waited = parse_time(entry["circuitLastChanged"]) - opened_at
        assert CIRCUIT_OPEN_TIMEOUT - 0.05 <= waited <= CIRCUIT_OPEN_TIMEOUT + HEALTH_INTERVAL + 1.0, waited
        assert closed["phase"] == "Ready"
        assert condition(closed, "Ready")["lastTransitionTime"] == condition(start, "Ready")["lastTransitionTime"]
        await await_until(lambda: changes.count > seen, 5, what="tools/list_changed when the circuit closed")

        async def ex_back() -> bool:
            return "ex_echo" in await tool_names(client)

        await await_until(ex_back, 5, what="ex tools back in tools/list")
        began = time.monotonic()
        assert await call_text(client, "ex_echo", {"text": "again"}) == "again"
        assert time.monotonic() - began < EX_CALL_TIMEOUT
        assert backend_entry(await get_status(gateway), "ex")["consecutiveFailures"] == 0


async def _no_ex_tools(client: Client) -> bool:
    return not await ex_tools(client)
