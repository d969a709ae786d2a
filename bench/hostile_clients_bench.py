#!/usr/bin/env python3
"""Hostile-client benchmarks (issue 9, items 1 and 3), against the release binary.

  .cache/venv/bin/python bench/hostile_clients_bench.py sessions [--count 5000] [--rounds 1] [--settle 5]
      RSS of the gateway: at start, with COUNT idle sessions, after they expired (per round)
  .cache/venv/bin/python bench/hostile_clients_bench.py uri [--mib 4] [--runs 5]
      gateway CPU for one resources/read of a MiB-sized URI matching a template:
      with the default server.maxUriBytes (refused) and with the limit lifted (matched)

The matcher alone: cargo run --release -p vmcp-gateway --example uri_template_bench.
Prints markdown for BENCHMARKS.md. Everything listens on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import httpx  # noqa: E402

from harness import (  # noqa: E402
    MCP_HEADERS,
    Launcher,
    base_gateway_config,
    deep_merge,
    default_vmcp_bin,
    jsonrpc_messages,
    raw_session,
)

TICKS = os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def settled_rss(pid: int, seconds: float = 3.0) -> float:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(rss_mib(pid))
        time.sleep(0.5)
    return statistics.median(samples)


def gateway(launcher: Launcher, server: dict[str, Any]) -> Any:
    backend = launcher.example_http("ex")
    config = deep_merge(base_gateway_config([backend.config()]), {"server": server})
    return launcher.gateway(config)


def bench_sessions(args: argparse.Namespace) -> None:
    idle = 10
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        launcher = Launcher(Path(tmp), default_vmcp_bin())
        try:
            gw = gateway(
                launcher,
                {"maxSessions": args.count + 100, "maxSessionsPerClient": args.count + 100, "sessionIdleTimeout": f"{idle}s"},
            )
            with httpx.Client(timeout=30.0) as http:
                # Warm up: one session, expired, so lazily built state is in the baseline.
                raw_session(http, gw.url)
                time.sleep(idle + 3)
                baseline = settled_rss(gw.pid)
                ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
                # Several rounds: a leak grows round after round, retention does not.
                for _ in range(args.rounds):
                    start = time.monotonic()
                    last: dict[str, str] = {}
                    for _ in range(args.count):
                        last = raw_session(http, gw.url)
                    created_in = time.monotonic() - start
                    loaded = settled_rss(gw.pid)
                    # Wait until the youngest session expired (then all did).
                    deadline = time.monotonic() + idle + 60
                    time.sleep(idle)
                    while http.post(gw.url, json=ping, headers=last).status_code != 404:
                        if time.monotonic() > deadline:
                            raise SystemExit("sessions did not expire")
                        time.sleep(1)
                    after = settled_rss(gw.pid, args.settle)
                    rounds.append((created_in, loaded, after))
                # And the slots are free again.
                assert http.post(gw.url, json={**ping, "method": "initialize"}, headers=MCP_HEADERS).status_code in (200, 400)
        finally:
            launcher.stop_all()
    print(f"| sessions per round | {args.count} (idle expiry {idle} s; RSS settled over {args.settle:.0f} s after expiry) |")
    print(f"| RSS at start (after one warm-up session expired) | {baseline:.1f} MiB |")
    for number, (created_in, loaded, after) in enumerate(rounds, 1):
        per_session_kib = (loaded - baseline) * 1024 / args.count
        print(
            f"| round {number}: RSS with {args.count} idle sessions (created in {created_in:.1f} s) / after they expired | "
            f"{loaded:.1f} MiB (+{per_session_kib:.0f} KiB per session) / {after:.1f} MiB ({100 * (after - baseline) / baseline:+.0f} % of the start) |"
        )


def bench_uri(args: argparse.Namespace) -> None:
    size = args.mib * 1024 * 1024
    uri = "example://items/" + "x" * size  # example://items/{id}
    rows = []
    for label, server in (
        # (The body limit lifted in both: a 4 MiB URI is above the default server.maxRequestBytes.)
        ("default server.maxUriBytes (refused)", {"maxRequestBytes": 4 * size}),
        ("server.maxUriBytes lifted (matched)", {"maxUriBytes": 2 * size, "maxRequestBytes": 4 * size}),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            launcher = Launcher(Path(tmp), default_vmcp_bin())
            try:
                gw = gateway(launcher, server)
                with httpx.Client(timeout=600.0) as http:
                    headers = raw_session(http, gw.url)
                    # A URI that almost matches the template (a `/` at the end): matched, routed nowhere.
                    body = {"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": {"uri": uri + "/"}}
                    costs, codes = [], set()
                    for _ in range(args.runs):
                        before = cpu_seconds(gw.pid)
                        resp = http.post(gw.url, json=body, headers=headers)
                        costs.append(cpu_seconds(gw.pid) - before)
                        reply = next(m for m in jsonrpc_messages(resp) if m.get("id") == 5)
                        codes.add((reply.get("error") or {}).get("code"))
            finally:
                launcher.stop_all()
        rows.append((label, statistics.median(costs) * 1000, max(costs) * 1000, sorted(map(str, codes))))
    print(f"| {args.mib} MiB template URI, {args.runs} reads | median CPU | max CPU | JSON-RPC error |")
    print("|---|---|---|---|")
    for label, median, worst, codes in rows:
        print(f"| {label} | {median:.0f} ms | {worst:.0f} ms | {', '.join(codes)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sessions = sub.add_parser("sessions")
    sessions.add_argument("--count", type=int, default=5000)
    sessions.add_argument("--rounds", type=int, default=1)
    sessions.add_argument("--settle", type=float, default=5.0, help="seconds of RSS samples after expiry")
    uri = sub.add_parser("uri")
    uri.add_argument("--mib", type=int, default=4)
    uri.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    {"sessions": bench_sessions, "uri": bench_uri}[args.what](args)


if __name__ == "__main__":
    main()
