"""The file reporter and `vmcp status`, end to end: the real gateway writes
its state file, `vmcp status` reads it, and its exit code follows the phase
(0 Ready, 1 Degraded, 2 anything else, including a stopped writer)."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import Launcher, fast_health_config, py_stdio_config, wait_until


def vmcp_status(vmcp_bin: Path, state_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(vmcp_bin), "status", "--state-dir", str(state_dir), *extra],
        capture_output=True, text=True, timeout=30,
    )


def state(state_dir: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def test_state_file_and_status_command_follow_the_gateway(launcher: Launcher, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    # A generous connect/call timeout for the stdio backends: a Python interpreter
    # with the MCP SDK takes over 2 s to start on a loaded 2-core machine. Probes
    # keep their 500 ms timeout, which is what the SIGSTOP step below relies on.
    config = fast_health_config(
        [py_stdio_config("one"), py_stdio_config("two")], per_workload={"one": "15s", "two": "15s"}
    )
    config["name"] = "statefile"
    gateway = launcher.gateway(config, args=["--state-dir", str(state_dir), "--reporter", "file"])

    def phase() -> str | None:
        data = state(state_dir, "statefile")
        return data["status"]["phase"] if data else None

    wait_until(lambda: phase() == "Ready", 30, what="state file phase Ready")
    data = state(state_dir, "statefile")
    assert data is not None
    assert data["writer"]["pid"] == gateway.pid
    assert data["writer"]["stopped"] is False
    assert {b["name"] for b in data["status"]["discoveredBackends"]} == {"one", "two"}
    # The file is private to its owner.
    assert (state_dir / "statefile.json").stat().st_mode & 0o077 == 0

    ready = vmcp_status(launcher.vmcp_bin, state_dir)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "Ready" in ready.stdout and "one" in ready.stdout and "two" in ready.stdout

    # Hang one stdio backend's process: its probes time out, it is reported
    # unavailable and the gateway Degraded (exit code 1).
    pids = subprocess.run(["pgrep", "-f", "--", "--transport stdio --name one"], capture_output=True, text=True).stdout.split()
    assert pids, "backend 'one' process not found"
    for pid in pids:
        subprocess.run(["kill", "-STOP", pid])
    try:
        wait_until(lambda: phase() == "Degraded", 30, what="state file phase Degraded")
        degraded = vmcp_status(launcher.vmcp_bin, state_dir, "--json")
        assert degraded.returncode == 1, degraded.stdout + degraded.stderr
        entries = json.loads(degraded.stdout)
        one = next(b for b in entries[0]["status"]["discoveredBackends"] if b["name"] == "one")
        assert one["status"] == "unavailable", one
    finally:
        for pid in pids:
            subprocess.run(["kill", "-CONT", pid])

    # A clean stop leaves a final report marked stopped: stale, exit code 2.
    gateway.signal(signal.SIGTERM)
    assert gateway.proc is not None
    assert gateway.proc.wait(timeout=30) == 0
    final = state(state_dir, "statefile")
    assert final is not None and final["writer"]["stopped"] is True
    stopped = vmcp_status(launcher.vmcp_bin, state_dir)
    assert stopped.returncode == 2, stopped.stdout + stopped.stderr
    assert "STALE" in stopped.stdout


def test_two_gateways_of_one_name_never_share_a_state_file(launcher: Launcher, tmp_path: Path) -> None:
    """A second gateway with the same name and state dir (another port) reports
    to `<name>@2.json` and says so; `vmcp status` lists both writers and never
    flips between them; a writer killed with SIGKILL does not block the next."""
    state_dir = tmp_path / "state"
    config = fast_health_config([py_stdio_config("one")])
    config["name"] = "twins"
    args = ["--state-dir", str(state_dir), "--reporter", "file"]
    first = launcher.gateway(config, args=args, label="twin-first")
    second = launcher.gateway(config, args=args, label="twin-second")

    def writer(stem: str) -> dict[str, Any] | None:
        data = state(state_dir, stem)
        return data["writer"] if data else None

    wait_until(
        lambda: (writer("twins") or {}).get("pid") == first.pid and (writer("twins@2") or {}).get("pid") == second.pid,
        30, what="each gateway in its own state file",
    )
    assert "another running gateway" in second.log_path.read_text(), second.log_tail()
    assert "another running gateway" not in first.log_path.read_text(), first.log_tail()

    # Both writers, each with pid, address and start time; the same answer
    # on every read over several heartbeats (1 s) and status refreshes.
    expected = [
        (1, first.pid, f"{first.base}/mcp"),
        (2, second.pid, f"{second.base}/mcp"),
    ]
    deadline = time.monotonic() + 6
    reads = 0
    while time.monotonic() < deadline:
        listed = vmcp_status(launcher.vmcp_bin, state_dir, "--json")
        entries = json.loads(listed.stdout)
        got = sorted((e["instance"], e["writer"]["pid"], e["writer"].get("address")) for e in entries)
        assert got == expected, listed.stdout
        assert all(e["name"] == "twins" and e["writer"]["startedAt"] for e in entries), listed.stdout
        reads += 1
        time.sleep(0.3)
    assert reads >= 5
    text = vmcp_status(launcher.vmcp_bin, state_dir, "--name", "twins").stdout
    assert f"Writer:     pid {first.pid} on " in text and f"{first.base}/mcp, since " in text, text
    assert "Gateway:    twins (instance 2)" in text and f"pid {second.pid} on " in text, text

    # SIGKILL leaves the lock to the OS, which drops it with the process:
    # the next gateway of that name takes twins.json again, without a warning.
    first.kill_hard()
    third = launcher.gateway(config, args=args, label="twin-third")
    wait_until(lambda: (writer("twins") or {}).get("pid") == third.pid, 30, what="twins.json taken over")
    assert "another running gateway" not in third.log_path.read_text(), third.log_tail()
    assert (writer("twins@2") or {}).get("pid") == second.pid
