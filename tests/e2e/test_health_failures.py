"""Health monitoring end to end: a backend that dies, hangs or whose process
is killed is reported `unavailable` in /status, leaves the catalogue
(clients hear `tools/list_changed`), fails fast, and comes back.

The gateway runs with harness.FAST_FAILURE_HANDLING: a probe every second
(500 ms timeout), two failures in a row make a backend unavailable, a lost
connection makes it unavailable at once.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from mcp import Client

from harness import (
    phase_is,
    ListChanges,
    EVERYTHING_JS,
    HEALTH_INTERVAL,
    HEALTH_TIMEOUT,
    PY_BACKEND,
    UNHEALTHY_THRESHOLD,
    Gateway,
    Launcher,
    assert_sanitized,
    await_until,
    backend_entry,
    backend_is,
    call_error,
    call_text,
    condition,
    connect,
    everything_stdio_config,
    expected_py_tools,
    fast_health_config,
    get_status,
    next_probe,
    parse_time,
    port_open,
    py_stdio_config,
    tool_names,
    wait_status,
    watch_status,
)

pytestmark = pytest.mark.anyio

# Detection by probes: `unhealthyThreshold` failed probes, a second apart.
DETECT_BY_PROBES = HEALTH_INTERVAL * UNHEALTHY_THRESHOLD + 2.0
# Reconnecting backs off (up to seconds) while the backend is down.
RECOVER = 30.0
FAIL_FAST = 1.0


async def tools_of(client: Client, backend: str) -> set[str]:
    return {name for name in await tool_names(client) if name.startswith(f"{backend}_")}


async def assert_fails_fast(client: Client, tool: str, backend: str, *needles: str) -> str:
    began = time.monotonic()
    error = await call_error(client, tool, {"text": "nobody home"})
    elapsed = time.monotonic() - began
    assert elapsed < FAIL_FAST, f"{tool} took {elapsed:.2f}s to fail: {error}"
    assert f"backend {backend} " in error, error
    assert_sanitized(error, *needles)
    return error


async def readyz(gateway: Gateway) -> int:
    async with httpx.AsyncClient(timeout=5.0) as http:
        return (await http.get(f"{gateway.base}/readyz")).status_code


async def test_killed_http_backend_is_unavailable_then_ready_again(launcher: Launcher) -> None:
    pyhttp = launcher.py("pyhttp", "streamable-http", wait=False)
    pyless = launcher.py("pyless", "streamable-http", stateless=True, wait=False)
    pyhttp.wait_listening()
    pyless.wait_listening()
    gateway = launcher.gateway(
        fast_health_config([pyhttp.config(), pyless.config()], per_workload={"pyhttp": "1s", "pyless": "1s"})
    )
    start = await wait_status(gateway, phase_is("Ready"), 15, "phase Ready")
    assert condition(start, "Degraded")["status"] == "False"
    ready_since = condition(start, "Ready")["lastTransitionTime"]
    degraded_since = condition(start, "Degraded")["lastTransitionTime"]

    changes = ListChanges()
    async with connect(gateway.url, message_handler=changes) as client:
        assert expected_py_tools("pyhttp", "pyless") <= await tool_names(client)
        assert await call_text(client, "pyhttp_echo", {"text": "before"}) == "before"
        seen = changes.count

        killed_at = time.time()
        pyhttp.kill_hard()  # idle: no call in flight, only the probes notice

        down = await wait_status(
            gateway,
            phase_is("Degraded", backend_is("pyhttp", "unavailable")),
            DETECT_BY_PROBES,
            "pyhttp unavailable and phase Degraded",
        )
        entry = backend_entry(down, "pyhttp")
        assert entry["message"], entry
        for text in (entry["message"], down["message"], *(c["message"] for c in down["conditions"])):
            assert_sanitized(text, str(pyhttp.port))
        assert "pyhttp" in down["message"], down["message"]
        assert backend_entry(down, "pyless")["status"] == "ready"
        # Degraded is not down: readiness stays green, Ready stays True.
        ready, degraded = condition(down, "Ready"), condition(down, "Degraded")
        assert (ready["status"], ready["reason"]) == ("True", "SomeBackendsUnhealthy"), ready
        assert (degraded["status"], degraded["reason"]) == ("True", "SomeBackendsUnhealthy"), degraded
        assert await readyz(gateway) == 200
        # lastTransitionTime: Degraded flipped now, Ready did not flip at all.
        assert ready["lastTransitionTime"] == ready_since
        flipped_down = parse_time(degraded["lastTransitionTime"])
        assert killed_at - 0.5 <= flipped_down <= time.time() + 0.5, (degraded, killed_at)
        assert degraded["lastTransitionTime"] != degraded_since

        # The client hears about it and the tools are gone.
        await await_until(lambda: changes.count > seen, 5, what="tools/list_changed after the kill")
        await await_until(
            lambda: _no_tools(client, "pyhttp"), 5, what="pyhttp tools to leave tools/list"
        )
        assert expected_py_tools("pyless") <= await tool_names(client)
        await assert_fails_fast(client, "pyhttp_echo", "pyhttp", str(pyhttp.port))
        assert await call_text(client, "pyless_echo", {"text": "still here"}) == "still here"

        # A re-report (later probes) does not move lastTransitionTime.
        later = await next_probe(gateway, "pyless", after=down)
        assert condition(later, "Degraded")["lastTransitionTime"] == degraded["lastTransitionTime"]
        assert condition(later, "Ready")["lastTransitionTime"] == ready_since

        seen = changes.count
        restarted_at = time.time()
        pyhttp.start()  # same port
        await await_until(lambda: pyhttp.check_alive() or port_open(pyhttp.port), 30, what="pyhttp to listen again")

        back = await wait_status(
            gateway, phase_is("Ready", backend_is("pyhttp", "ready")), RECOVER, "pyhttp ready and phase Ready"
        )
        degraded = condition(back, "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("False", "AllBackendsHealthy"), degraded
        assert parse_time(degraded["lastTransitionTime"]) >= max(restarted_at - 0.5, flipped_down), degraded
        assert condition(back, "Ready")["lastTransitionTime"] == ready_since
        assert "message" not in backend_entry(back, "pyhttp"), backend_entry(back, "pyhttp")

        await await_until(lambda: changes.count > seen, 10, what="tools/list_changed after the restart")

        async def pyhttp_listed() -> bool:
            return expected_py_tools("pyhttp") <= await tools_of(client, "pyhttp")

        await await_until(pyhttp_listed, 10, what="pyhttp tools back in tools/list")
        assert await call_text(client, "pyhttp_echo", {"text": "back"}) == "back"
        assert await call_text(client, "pyhttp_whoami") == "pyhttp"


async def _no_tools(client: Client, backend: str) -> bool:
    return not await tools_of(client, backend)


async def test_hung_backend_times_out_and_recovers_on_sigcont(launcher: Launcher) -> None:
    pyhttp = launcher.py("pyhttp", "streamable-http", wait=False)
    pyless = launcher.py("pyless", "streamable-http", stateless=True, wait=False)
    pyhttp.wait_listening()
    pyless.wait_listening()
    gateway = launcher.gateway(
        fast_health_config([pyhttp.config(), pyless.config()], per_workload={"pyhttp": "1s", "pyless": "1s"})
    )
    await wait_status(gateway, phase_is("Ready"), 15, "phase Ready")

    async with watch_status(gateway) as watch, connect(gateway.url) as client:
        assert await call_text(client, "pyhttp_echo", {"text": "before"}) == "before"
        mark = watch.mark()
        pyhttp.signal(signal.SIGSTOP)
        try:
            # The same session keeps working with the other backend meanwhile.
            for n in range(3):
                began = time.monotonic()
                assert await call_text(client, "pyless_echo", {"text": f"during-{n}"}) == f"during-{n}"
                assert time.monotonic() - began < FAIL_FAST

            # Probes time out: unavailable after `unhealthyThreshold` of them.
            first = await watch.wait_for(
                backend_is("pyhttp", "unavailable"),
                DETECT_BY_PROBES + HEALTH_TIMEOUT,
                "pyhttp unavailable while stopped",
                since=mark,
            )
            entry = backend_entry(first.status, "pyhttp")
            # The probe timeouts say "health check timed out"; the supervisor
            # then drops the connection, which with these thresholds (2 probe
            # failures + the disconnect = 3) also opens the circuit.
            assert entry["message"] in ("health check timed out", "circuit breaker open"), entry
            assert first.status["phase"] == "Degraded"
            assert condition(first.status, "Ready")["status"] == "True"
            assert backend_entry(first.status, "pyless")["status"] == "ready"

            await await_until(lambda: _no_tools(client, "pyhttp"), 5, what="pyhttp tools to leave tools/list")
            await assert_fails_fast(client, "pyhttp_echo", "pyhttp", str(pyhttp.port))
            assert await call_text(client, "pyless_echo", {"text": "after"}) == "after"
            # No flapping back while it is still stopped; messages stay categories.
            seen = [sample.status for sample in watch.since(first.index)] + [await get_status(gateway)]
            for status in seen:
                hung = backend_entry(status, "pyhttp")
                assert hung["status"] == "unavailable", hung
                assert_sanitized(hung["message"], str(pyhttp.port))
        finally:
            pyhttp.signal(signal.SIGCONT)

        back = await watch.wait_for(
            phase_is("Ready", backend_is("pyhttp", "ready")), RECOVER, "pyhttp ready after SIGCONT", since=watch.mark()
        )
        assert "message" not in backend_entry(back.status, "pyhttp")

        async def pyhttp_answers() -> bool:
            try:
                return await call_text(client, "pyhttp_echo", {"text": "resumed"}) == "resumed"
            except AssertionError:
                return False

        await await_until(pyhttp_answers, 10, interval=0.25, what="pyhttp_echo to work after SIGCONT")


async def test_killed_stdio_backend_is_unavailable_at_once_and_restarted(launcher: Launcher) -> None:
    pyless = launcher.py("pyless", "streamable-http", stateless=True)
    gateway = launcher.gateway(fast_health_config([everything_stdio_config(), pyless.config()]))
    await wait_status(gateway, phase_is("Ready"), 30, "phase Ready")
    marker = str(EVERYTHING_JS)
    old = await await_until(lambda: gateway.stdio_children(marker), 15, what="the gateway's server-everything child")

    changes = ListChanges()
    async with watch_status(gateway) as watch, connect(gateway.url, message_handler=changes) as client:
        assert await call_text(client, "everything_echo", {"message": "first"}) == "Echo: first"
        seen = changes.count
        mark = watch.mark()
        killed = time.monotonic()
        for pid in old:
            os.kill(pid, signal.SIGKILL)

        # A lost connection is definitive: no waiting for failed probes.
        down = await watch.wait_for(backend_is("everything", "unavailable"), 5, "everything unavailable", since=mark)
        assert down.at - killed < HEALTH_INTERVAL, f"took {down.at - killed:.2f}s"
        assert down.status["phase"] == "Degraded"
        assert condition(down.status, "Ready")["status"] == "True"
        message = backend_entry(down.status, "everything")["message"]
        assert message, down.status
        assert_sanitized(message, "node", "index.js", *(str(pid) for pid in old))

        back = await watch.wait_for(
            phase_is("Ready", backend_is("everything", "ready")), RECOVER, "everything ready again", since=down.index
        )
        assert back.at > down.at
        new = gateway.stdio_children(marker)
        assert new and not set(new) & set(old), f"expected a new server-everything process: old {old}, now {new}"
        # Its tools left and came back: two announcements at least.
        await await_until(lambda: changes.count >= seen + 2, 10, what="tools/list_changed for leaving and returning")

        async def everything_answers() -> bool:
            try:
                return await call_text(client, "everything_echo", {"message": "again"}) == "Echo: again"
            except AssertionError:
                return False

        await await_until(everything_answers, 10, interval=0.25, what="everything_echo after the restart")
        assert "everything_get-sum" in await tool_names(client)


async def test_consecutive_failures_reset_once_probes_succeed(launcher: Launcher) -> None:
    pyless = launcher.py("pyless", "streamable-http", stateless=True)
    gateway = launcher.gateway(fast_health_config([py_stdio_config("pystdio"), pyless.config()]))
    await wait_status(gateway, phase_is("Ready"), 30, "phase Ready")
    marker = f"{PY_BACKEND} --transport stdio --name pystdio"
    old = await await_until(lambda: gateway.stdio_children(marker), 15, what="the gateway's pystdio child")
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    await wait_status(gateway, backend_is("pystdio", "unavailable"), 5, "pystdio unavailable")
    back = await wait_status(gateway, backend_is("pystdio", "ready"), RECOVER, "pystdio ready again")
    # Two more successful probes; no call goes to pystdio.
    later = await next_probe(gateway, "pystdio", after=await next_probe(gateway, "pystdio", after=back))
    entry = backend_entry(later, "pystdio")
    assert entry["status"] == "ready"
    assert entry["consecutiveFailures"] == 0, entry
