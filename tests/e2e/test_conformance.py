"""The official MCP conformance suite (`@modelcontextprotocol/conformance`,
pinned in tests/peers/package.json, server scenarios) through vmcp.

The suite runs once directly against the conformance backend
(tests/peers/conformance_backend.py, the scenarios' server side on the
official Python SDK) and once through vmcp in front of it, with the
`priority` strategy so names stay as the scenarios expect; through vmcp must
pass every check that passes directly. A second run puts two such backends
behind vmcp (the same names on both: the first in priority order answers).
Lost checks are printed by scenario."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import PEERS, PYTHON, Launcher, Proc, base_gateway_config, free_port, port_open, wait_until

CONFORMANCE = PEERS / "node_modules" / ".bin" / "conformance"
BACKEND = PEERS / "conformance_backend.py"
SUMMARY = re.compile(r"^[✓✗] (?P<scenario>[\w-]+): (?P<passed>\d+) passed, (?P<failed>\d+) failed$")


def run_suite(url: str, log: Path) -> dict[str, tuple[int, int]]:
    """Every server scenario against `url`: scenario -> (passed, failed)."""
    assert CONFORMANCE.is_file(), f"{CONFORMANCE} missing: run scripts/install-peers.sh"
    done = subprocess.run(
        [str(CONFORMANCE), "server", "--url", url],
        cwd=log.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log.write_text(done.stdout + done.stderr)
    results = {}
    for line in done.stdout.splitlines():
        if m := SUMMARY.match(line.strip()):
            results[m["scenario"]] = (int(m["passed"]), int(m["failed"]))
    assert results, f"no summary from the conformance suite (exit {done.returncode}); see {log}"
    return results


def conformance_backend(launcher: Launcher) -> tuple[Proc, str]:
    port = free_port()
    proc = launcher.proc(f"conformance-{port}", [PYTHON, str(BACKEND), "--port", str(port)])
    wait_until(lambda: proc.check_alive() or port_open(port), 30, what="conformance backend to listen")
    return proc, f"http://127.0.0.1:{port}/mcp"


def gateway_config(urls: dict[str, str]) -> dict[str, Any]:
    config = base_gateway_config(
        [{"name": name, "transport": "streamable-http", "url": url} for name, url in urls.items()]
    )
    config["aggregation"] = {
        "conflictResolution": "priority",
        "conflictResolutionConfig": {"priorityOrder": list(urls)},
    }
    # The elicitation and sampling scenarios answer at once; the defaults are for hung backends.
    config["operational"]["timeouts"] = {"default": "30s"}
    return config


def lost_checks(direct: dict[str, tuple[int, int]], through: dict[str, tuple[int, int]]) -> list[str]:
    lost = []
    for scenario, (passed, _) in sorted(direct.items()):
        got = through.get(scenario, (0, 0))[0]
        if got < passed:
            lost.append(f"{scenario}: {passed} passed directly, {got} through vmcp")
    return lost


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, int]]:
    logs = tmp_path_factory.mktemp("conformance-direct")
    launcher = Launcher(logs)
    try:
        _, url = conformance_backend(launcher)
        results = run_suite(url, logs / "direct.txt")
    finally:
        launcher.stop_all()
    total = sum(p for p, _ in results.values())
    print(f"conformance directly: {total} checks passed in {len(results)} scenarios")
    # The backend implements every scenario: a drop here is a broken peer, not vmcp.
    failed = {s: r for s, r in results.items() if r[1]}
    assert not failed, f"the conformance backend itself fails: {failed}"
    return results


def test_through_vmcp_passes_every_check_that_passes_directly(
    launcher: Launcher, direct: dict[str, tuple[int, int]], tmp_path: Path
) -> None:
    _, url = conformance_backend(launcher)
    gateway = launcher.gateway(gateway_config({"conf": url}))
    through = run_suite(gateway.url, tmp_path / "through.txt")
    lost = lost_checks(direct, through)
    print("conformance through vmcp:", sum(p for p, _ in through.values()), "checks passed; lost:", lost or "none")
    assert not lost, "checks lost through vmcp:\n" + "\n".join(lost)


def test_two_backends_behind_vmcp_still_pass_every_check(
    launcher: Launcher, direct: dict[str, tuple[int, int]], tmp_path: Path
) -> None:
    (_, first), (_, second) = conformance_backend(launcher), conformance_backend(launcher)
    gateway = launcher.gateway(gateway_config({"first": first, "second": second}))
    through = run_suite(gateway.url, tmp_path / "through-two.txt")
    lost = lost_checks(direct, through)
    print("conformance, two backends:", sum(p for p, _ in through.values()), "checks passed; lost:", lost or "none")
    assert not lost, "checks lost with two backends behind vmcp:\n" + "\n".join(lost)
