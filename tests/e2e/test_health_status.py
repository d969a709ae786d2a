"""The /status model is honest: the generation it was started with (or none
in CLI mode), every configured backend counted, Kubernetes-style conditions
with CamelCase reasons, no credentials or command lines, `Pending` before
the first health results and `Failed` only when nothing is routable."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from harness import (
    phase_is,
    PY_BACKEND,
    Gateway,
    Launcher,
    backend_entry,
    backend_is,
    condition,
    fast_health_config,
    get_status,
    next_probe,
    parse_time,
    port_open,
    py_stdio_config,
    wait_status,
    await_until,
)

pytestmark = pytest.mark.anyio

CAMEL_CASE = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)*")
CONDITION_TYPES = ("Ready", "BackendsDiscovered", "Degraded")
SECRETS = ("e2e-user", "s3cret-pass", "t0ken-in-query")


def assert_well_formed(status: dict[str, Any], generation: int | None) -> None:
    """Rules every status must follow, whatever its phase."""
    now = time.time()
    assert abs(parse_time(status["timestamp"]) - now) < 5, status["timestamp"]
    if generation is None:
        assert "observedGeneration" not in status, status
    else:
        assert status["observedGeneration"] == generation, status
    types = [c["type"] for c in status["conditions"]]
    assert sorted(types) == sorted(CONDITION_TYPES), f"conditions are keyed by type, each once: {types}"
    for cond in status["conditions"]:
        assert cond["status"] in ("True", "False", "Unknown"), cond
        assert CAMEL_CASE.fullmatch(cond["reason"]), f"reason must be CamelCase: {cond}"
        assert isinstance(cond["message"], str) and cond["message"], cond
        assert parse_time(cond["lastTransitionTime"]) <= now + 1, cond
        if generation is None:
            assert "observedGeneration" not in cond, cond
        else:
            assert cond["observedGeneration"] == generation, cond
    assert status["backendCount"] >= len(status["discoveredBackends"])


async def readyz(gateway: Gateway) -> int:
    async with httpx.AsyncClient(timeout=5.0) as http:
        return (await http.get(f"{gateway.base}/readyz")).status_code


@pytest.mark.parametrize("generation", [None, 7], ids=["cli-no-generation", "generation-7"])
async def test_status_is_honest(launcher: Launcher, generation: int | None) -> None:
    pysse = launcher.py("pysse", "sse", wait=False)
    pyless = launcher.py("pyless", "streamable-http", stateless=True, wait=False)
    pysse.wait_listening()
    pyless.wait_listening()
    # Credentials in the URL (user info and a query token) must not reach the status.
    pyless_entry = {
        "name": "pyless",
        "transport": "streamable-http",
        "url": f"http://{SECRETS[0]}:{SECRETS[1]}@127.0.0.1:{pyless.port}/mcp?token={SECRETS[2]}",
    }
    backends = [pysse.config(), pyless_entry, py_stdio_config("pystdio")]
    args = None if generation is None else ["--generation", str(generation)]
    gateway = launcher.gateway(fast_health_config(backends), args=args)

    status = await wait_status(gateway, phase_is("Ready"), 20, "phase Ready")
    assert_well_formed(status, generation)
    assert status["backendCount"] == len(backends)
    assert sorted(b["name"] for b in status["discoveredBackends"]) == ["pyless", "pysse", "pystdio"]
    expected = {
        "Ready": ("True", "AllBackendsReady"),
        "BackendsDiscovered": ("True", "BackendDiscoverySucceeded"),
        "Degraded": ("False", "AllBackendsHealthy"),
    }
    for type_, (want_status, want_reason) in expected.items():
        cond = condition(status, type_)
        assert (cond["status"], cond["reason"]) == (want_status, want_reason), cond
    assert status["message"] == "all 3 backends ready"
    for entry in status["discoveredBackends"]:
        assert entry["status"] == "ready", entry
        assert entry["circuitBreakerState"] == "closed", entry
        assert entry["consecutiveFailures"] == 0, entry
        assert abs(parse_time(entry["lastHealthCheck"]) - time.time()) < 10, entry
        assert "message" not in entry, entry

    # No secrets, no command lines.
    text = json.dumps(status)
    for secret in SECRETS:
        assert secret not in text, f"/status leaks {secret!r}"
    assert backend_entry(status, "pyless")["url"] == f"http://127.0.0.1:{pyless.port}/mcp"
    assert backend_entry(status, "pysse")["url"] == pysse.url
    stdio_url = backend_entry(status, "pystdio")["url"]
    assert stdio_url.startswith("stdio:") and "/" not in stdio_url, stdio_url
    assert str(PY_BACKEND) not in text and "--transport" not in text

    # A re-report (newer health checks) keeps every lastTransitionTime.
    later = await next_probe(gateway, "pyless", after=await next_probe(gateway, "pyless", after=status))
    assert_well_formed(later, generation)
    assert parse_time(later["timestamp"]) > parse_time(status["timestamp"])
    for type_ in CONDITION_TYPES:
        assert condition(later, type_)["lastTransitionTime"] == condition(status, type_)["lastTransitionTime"]


async def test_status_is_pending_until_the_first_health_results(launcher: Launcher) -> None:
    # The only backend takes 4 s to answer initialize (connecting is bounded by its call timeout).
    gateway = launcher.gateway(
        fast_health_config([py_stdio_config("pyslow", startup_delay=4)], per_workload={"pyslow": "15s"}), ready=False
    )
    early = await get_status(gateway)
    assert_well_formed(early, None)
    assert early["phase"] == "Pending", early
    ready = condition(early, "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] in ("DiscoveryInProgress", "AwaitingHealthChecks"), ready
    assert condition(early, "Degraded")["status"] == "Unknown"
    assert early["backendCount"] == 1
    assert backend_entry(early, "pyslow")["status"] == "unknown"
    assert await readyz(gateway) == 503

    done = await wait_status(gateway, phase_is("Ready"), 30, "phase Ready once pyslow answers")
    assert_well_formed(done, None)
    ready = condition(done, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "AllBackendsReady"), ready
    assert parse_time(ready["lastTransitionTime"]) > parse_time(early["timestamp"])
    assert await readyz(gateway) == 200


async def test_failed_only_when_nothing_is_routable(launcher: Launcher) -> None:
    pyhttp = launcher.py("pyhttp", "streamable-http")
    gateway = launcher.gateway(fast_health_config([pyhttp.config()], per_workload={"pyhttp": "1s"}))
    await wait_status(gateway, phase_is("Ready"), 15, "phase Ready")

    pyhttp.kill_hard()
    failed = await wait_status(gateway, phase_is("Failed"), 5, "phase Failed with the only backend down")
    assert_well_formed(failed, None)
    assert backend_entry(failed, "pyhttp")["status"] == "unavailable"
    ready, degraded = condition(failed, "Ready"), condition(failed, "Degraded")
    assert (ready["status"], ready["reason"]) == ("False", "NoBackendsRoutable"), ready
    assert (degraded["status"], degraded["reason"]) == ("True", "NoBackendsRoutable"), degraded
    assert "pyhttp" in failed["message"] and "127.0.0.1" not in failed["message"], failed["message"]

    pyhttp.start()
    await await_until(lambda: pyhttp.check_alive() or port_open(pyhttp.port), 30, what="pyhttp to listen again")
    back = await wait_status(gateway, phase_is("Ready", backend_is("pyhttp", "ready")), 30, "phase Ready again")
    assert_well_formed(back, None)
    assert condition(back, "Ready")["status"] == "True"
