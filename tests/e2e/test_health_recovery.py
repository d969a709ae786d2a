"""Recovery after an outage (issue 9, item 10), against the real binary.

- A backend killed and restarted is routable again within about two probe
  intervals of answering, not after `circuitBreaker.timeout` (60 s here):
  successful probes end an open circuit's wait.
- A backend that answers pings but fails calls still trips the circuit, and
  its failed trial call opens it again.
- `unhealthyGracePeriod` keeps a dead backend's tools listed for a while;
  calls to them fail fast meanwhile.

The gateway runs with harness.FAST_FAILURE_HANDLING (a probe every second).
"""

from __future__ import annotations

import time

import pytest

from harness import (
    HEALTH_INTERVAL,
    CIRCUIT_FAILURE_THRESHOLD,
    Launcher,
    await_until,
    backend_entry,
    backend_is,
    call_error,
    call_text,
    connect,
    expected_py_tools,
    fast_health_config,
    get_status,
    phase_is,
    port_open,
    tool_names,
    wait_status,
)

pytestmark = pytest.mark.anyio

LONG_CIRCUIT = {"circuitBreaker": {"timeout": "60s"}}
# The goal is 2 x healthCheckInterval + 1 s (3 s; BENCHMARKS.md has the
# measured times). The assertion leaves room for a loaded machine but stays
# far below the 60 s circuit timeout that governed recovery before.
RECOVERY_LIMIT = 2 * HEALTH_INTERVAL + 1.0 + 7.0


async def tools_of(client, backend: str) -> set[str]:
    return {name for name in await tool_names(client) if name.startswith(f"{backend}_")}


async def test_restarted_backend_is_routable_within_two_probe_intervals(launcher: Launcher) -> None:
    pyhttp = launcher.py("pyhttp", "streamable-http")
    pyless = launcher.py("pyless", "streamable-http", stateless=True)
    gateway = launcher.gateway(fast_health_config([pyhttp.config(), pyless.config()], failure_handling=LONG_CIRCUIT))
    await wait_status(gateway, phase_is("Ready"), 15, "phase Ready")
    async with connect(gateway.url) as client:
        pyhttp.kill_hard()
        await wait_status(
            gateway,
            backend_is("pyhttp", "unavailable", circuitBreakerState="open"),
            15,
            "pyhttp unavailable with an open circuit",
        )
        pyhttp.start()  # same port
        await await_until(lambda: pyhttp.check_alive() or port_open(pyhttp.port), 30, interval=0.02, what="pyhttp to listen")
        answering = time.monotonic()
        back = await wait_status(gateway, backend_is("pyhttp", "ready"), 30, "pyhttp ready again")
        recovered = time.monotonic() - answering
        print(f"recovery after answering again: {recovered:.2f}s")
        assert recovered <= RECOVERY_LIMIT, f"{recovered:.2f}s (circuit timeout is 60s): {backend_entry(back, 'pyhttp')}"
        assert backend_entry(back, "pyhttp")["circuitBreakerState"] in ("half-open", "closed")

        async def listed() -> bool:
            return expected_py_tools("pyhttp") <= await tools_of(client, "pyhttp")

        await await_until(listed, 5, what="pyhttp tools back in tools/list")
        assert await call_text(client, "pyhttp_echo", {"text": "back"}) == "back"


async def test_calls_failing_while_pings_answer_still_trip_the_circuit(launcher: Launcher) -> None:
    pyhttp = launcher.py("pyhttp", "streamable-http")
    gateway = launcher.gateway(
        fast_health_config([pyhttp.config()], per_workload={"pyhttp": "1s"}, failure_handling=LONG_CIRCUIT)
    )
    await wait_status(gateway, phase_is("Ready"), 15, "phase Ready")
    async with connect(gateway.url) as client:
        # Each call times out after 1 s while probes (a second apart) answer.
        for _ in range(CIRCUIT_FAILURE_THRESHOLD):
            await call_error(client, "pyhttp_slow", {"seconds": 3})
        tripped = await get_status(gateway)
        assert backend_entry(tripped, "pyhttp")["circuitBreakerState"] == "open", backend_entry(tripped, "pyhttp")
        # Answering pings makes it routable again (half-open)...
        await wait_status(gateway, backend_is("pyhttp", "ready", circuitBreakerState="half-open"), 15, "half-open")
        # ...and the failed trial call opens it again at once.
        await call_error(client, "pyhttp_slow", {"seconds": 3})
        again = await get_status(gateway)
        assert backend_entry(again, "pyhttp")["circuitBreakerState"] == "open", backend_entry(again, "pyhttp")


async def test_grace_period_keeps_tools_listed_and_calls_fail_fast(launcher: Launcher) -> None:
    pyhttp = launcher.py("pyhttp", "streamable-http")
    pyless = launcher.py("pyless", "streamable-http", stateless=True)
    grace = 8.0
    gateway = launcher.gateway(
        fast_health_config([pyhttp.config(), pyless.config()], failure_handling={"unhealthyGracePeriod": f"{grace:g}s"})
    )
    await wait_status(gateway, phase_is("Ready"), 15, "phase Ready")
    async with connect(gateway.url) as client:
        pyhttp.kill_hard()
        killed = time.monotonic()
        await wait_status(gateway, backend_is("pyhttp", "unavailable"), 15, "pyhttp unavailable")
        # A lost connection is noticed at once, well within the grace period.
        assert time.monotonic() - killed < grace - 2, "noticed too late to check the grace period"
        assert expected_py_tools("pyhttp") <= await tools_of(client, "pyhttp"), "withdrawn before the grace period"
        started = time.monotonic()
        error = await call_error(client, "pyhttp_echo", {"text": "x"})
        assert time.monotonic() - started < 1.0, "a call within the grace period must fail fast"
        assert "unavailable" in error, error
        await await_until(
            lambda: _gone(client, "pyhttp"), grace + 10, what="pyhttp tools to leave after the grace period"
        )
        assert time.monotonic() - killed >= grace - 0.5, "withdrawn before the grace period ended"
        assert await call_text(client, "pyless_echo", {"text": "still"}) == "still"


async def _gone(client, backend: str) -> bool:
    return not await tools_of(client, backend)
