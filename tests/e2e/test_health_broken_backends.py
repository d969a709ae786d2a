"""Permanently broken backends do not cause reconnect storms (issue 9, item 4).

Each backend of tests/peers/broken_backend.py answers `initialize` and then
fails the same way forever: an invalid tools/list (HTTP), a crash on
tools/list (stdio), a tools/list that always has another page (HTTP). The
gateway must back off (never resetting the schedule, since none of these
connections became healthy), cap paging, say why in the backend's status
message, and rate-limit its warnings per backend.

Before the fix: tens of thousands of requests and WARN lines in seconds.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from harness import (
    LOOPBACK,
    PEERS,
    PYTHON,
    Launcher,
    assert_sanitized,
    await_until,
    backend_entry,
    base_gateway_config,
    free_port,
    get_status,
    port_open,
    wait_until,
)

BROKEN = PEERS / "broken_backend.py"
INTERVAL = 2.0  # healthCheckInterval: the backoff cap
WATCH = 8.0  # seconds of watching the broken backends

# Upper bounds over WATCH seconds. The schedule: 250 ms doubling with up to
# 100% jitter, capped at INTERVAL; at least 0.25+0.5+1+1+1+... s between
# attempts, so at most 10 attempts in 8 s (the first is at once).
MAX_ATTEMPTS = 10
MAX_HTTP_REQUESTS_PER_ATTEMPT = 6  # initialize, initialized, tools/list, GET, DELETE, slack
MAX_PAGES = 100


def count(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def http_broken(launcher: Launcher, mode: str, tmp: Path) -> tuple[dict, Path]:
    port = free_port()
    counter = tmp / f"{mode}.count"
    launcher.proc(mode, [PYTHON, str(BROKEN), mode, "--port", str(port), "--count-file", str(counter)])
    wait_until(lambda: port_open(port), 30, what=f"{mode} to listen")
    return {"name": mode, "transport": "streamable-http", "url": f"http://{LOOPBACK}:{port}/mcp"}, counter


@pytest.mark.anyio
async def test_broken_backends_back_off_and_say_why(launcher: Launcher, tmp_path: Path) -> None:
    bad_tools, bad_tools_count = http_broken(launcher, "bad-tools", tmp_path)
    endless, endless_count = http_broken(launcher, "endless-cursor", tmp_path)
    crash_count = tmp_path / "crash.count"
    crash = {
        "name": "crash-on-list",
        "transport": "stdio",
        "command": PYTHON,
        "args": [str(BROKEN), "crash-on-list", "--count-file", str(crash_count)],
    }
    config = base_gateway_config([bad_tools, endless, crash])
    config["operational"]["failureHandling"]["healthCheckInterval"] = f"{INTERVAL:g}s"
    gateway = launcher.gateway(config, ready=False)

    await await_until(
        lambda: count(bad_tools_count) > 0 and count(crash_count) > 0 and count(endless_count) > 0,
        30,
        what="every broken backend to be tried",
    )
    started = time.monotonic()
    before = {name: count(path) for name, path in
              (("bad-tools", bad_tools_count), ("endless", endless_count), ("crash", crash_count))}
    # Watching a rate over a fixed window: the sleep is the measurement, not a synchronisation.
    while time.monotonic() - started < WATCH:
        gateway.check_alive()
        await asyncio.sleep(0.5)
    after = {"bad-tools": count(bad_tools_count), "endless": count(endless_count), "crash": count(crash_count)}
    sent = {name: after[name] - before[name] for name in after}

    assert sent["crash"] <= MAX_ATTEMPTS, f"stdio backend respawned {sent['crash']} times in {WATCH}s"
    assert sent["bad-tools"] <= MAX_ATTEMPTS * MAX_HTTP_REQUESTS_PER_ATTEMPT, sent
    assert sent["endless"] <= MAX_ATTEMPTS * (MAX_PAGES + MAX_HTTP_REQUESTS_PER_ATTEMPT), sent

    status = await get_status(gateway)
    for name in ("bad-tools", "endless-cursor", "crash-on-list"):
        assert backend_entry(status, name)["status"] == "unavailable", backend_entry(status, name)
    assert backend_entry(status, "endless-cursor")["message"] == "the tools list has more than 100 pages", status
    assert backend_entry(status, "bad-tools")["message"] == "listing capabilities failed", status
    for name in ("bad-tools", "endless-cursor", "crash-on-list"):
        assert_sanitized(backend_entry(status, name)["message"])

    # Warnings are rate-limited per backend: 5 a minute at most.
    log = re.sub(r"\x1b\[[0-9;]*m", "", gateway.log_path.read_text())
    for name in ("bad-tools", "endless-cursor", "crash-on-list"):
        warnings = [
            line for line in log.splitlines()
            if " WARN " in line and "vmcp_gateway" in line and f"backend={name}" in line.replace('"', "")
        ]
        assert len(warnings) <= 5, f"{len(warnings)} warnings for {name}:\n" + "\n".join(warnings[-10:])
