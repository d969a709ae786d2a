#!/usr/bin/env python3
"""Broken-backend benchmarks (issue 9, items 4 and 10), against the release binaries.

  .cache/venv/bin/python bench/broken_backends_bench.py storm [--seconds 60] [--vmcp PATH]
      Requests that three permanently broken backends (tests/peers/broken_backend.py:
      HTTP invalid tools/list, stdio crash on tools/list, HTTP endless nextCursor)
      receive per minute, with the default failureHandling (healthCheckInterval 30s);
      plus the gateway's CPU time and WARN lines over the same window.
  .cache/venv/bin/python bench/broken_backends_bench.py recovery [--runs 5] [--vmcp PATH]
      A backend killed and restarted (probe interval 1 s, threshold 2, circuit
      timeout 60 s): time from answering again to `ready` in /status.

Prints markdown for BENCHMARKS.md. Everything listens on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "target" / "release"
BROKEN = REPO / "tests" / "peers" / "broken_backend.py"
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_vmcp(vmcp: Path, config: str, workdir: Path) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    (workdir / "config.yaml").write_text(config)
    log = workdir / "vmcp.log"
    proc = subprocess.Popen(
        [str(vmcp), "serve", "--config", str(workdir / "config.yaml"), "--host", LOOPBACK, "--port", str(port)],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"},
        cwd=workdir,
    )
    wait(lambda: port_open(port), 60, "vmcp to listen")
    return proc, port, log


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def schedule_bound(seconds: float, interval: float) -> int:
    """Most connect attempts the backoff allows in `seconds`: 250 ms doubling,
    jitter only lengthening, capped at half the interval before jitter."""
    delay, t, attempts = 0.25, 0.0, 1
    cap = max(interval / 2, 0.25)
    while True:
        t += min(delay, cap)
        if t > seconds:
            return attempts
        attempts += 1
        delay *= 2


def storm(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        procs = []
        backends = []
        counts = {}
        for mode in ("bad-tools", "endless-cursor"):
            port = free_port()
            counts[mode] = work / f"{mode}.count"
            procs.append(subprocess.Popen(
                [PYTHON, str(BROKEN), mode, "--port", str(port), "--count-file", str(counts[mode])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            wait(lambda: port_open(port), 30, mode)
            backends.append(f"  - {{name: {mode}, transport: streamable-http, url: 'http://{LOOPBACK}:{port}/mcp'}}")
        counts["crash-on-list"] = work / "crash.count"
        backends.append(
            f"  - {{name: crash-on-list, transport: stdio, command: '{PYTHON}', "
            f"args: ['{BROKEN}', crash-on-list, --count-file, '{counts['crash-on-list']}']}}"
        )
        config = "name: storm\nbackends:\n" + "\n".join(backends) + "\n"
        gw, _, log = start_vmcp(Path(args.vmcp), config, work)
        try:
            cpu0 = cpu_seconds(gw.pid)
            started = time.monotonic()
            time.sleep(args.seconds)  # the measurement window
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(gw.pid) - cpu0
            warns = sum(1 for line in log.read_text(errors="replace").splitlines() if " WARN " in line)
            got = {name: lines(path) for name, path in counts.items()}
        finally:
            gw.send_signal(signal.SIGTERM)
            gw.wait(timeout=20)
            for p in procs:
                p.terminate()
                p.wait(timeout=10)
        per_min = 60.0 / elapsed
        bound = schedule_bound(elapsed, 30.0)
        print(f"binary: `{args.vmcp}`, window {elapsed:.1f} s, default failureHandling (healthCheckInterval 30s)\n")
        print("| backend | received in window | per minute | unit | backoff schedule allows (attempts) |")
        print("|---|---|---|---|---|")
        units = {"bad-tools": "HTTP requests", "endless-cursor": "HTTP requests", "crash-on-list": "process starts"}
        for name, n in got.items():
            print(f"| {name} | {n} | {n * per_min:.0f} | {units[name]} | {bound} |")
        print(f"\ngateway CPU {cpu:.2f} s, WARN lines {warns} over the window")


def recovery(args: argparse.Namespace) -> None:
    example = BIN / "vmcp-example-server"
    times = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            port = free_port()
            argv = [str(example), "--name", "a", "http", "--host", LOOPBACK, "--port", str(port)]
            a = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait(lambda: port_open(port), 30, "example server")
            config = f"""name: recovery
backends:
  - {{name: a, transport: streamable-http, url: 'http://{LOOPBACK}:{port}/mcp'}}
operational:
  failureHandling:
    healthCheckInterval: 1s
    healthCheckTimeout: 500ms
    unhealthyThreshold: 2
    circuitBreaker: {{enabled: true, failureThreshold: 3, timeout: 60s}}
"""
            gw, gw_port, _ = start_vmcp(Path(args.vmcp), config, work)

            def entry() -> dict:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{gw_port}/status", timeout=2) as r:
                    status = json.load(r)
                return next(b for b in status["discoveredBackends"] if b["name"] == "a")

            try:
                wait(lambda: entry()["status"] == "ready", 30, "a ready")
                a.kill()
                a.wait()
                wait(lambda: entry().get("circuitBreakerState") == "open", 30, "circuit open")
                a = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wait(lambda: port_open(port), 30, "example server again")
                answering = time.monotonic()
                wait(lambda: entry()["status"] == "ready", 120, "a ready again")
                times.append(time.monotonic() - answering)
            finally:
                gw.send_signal(signal.SIGTERM)
                gw.wait(timeout=20)
                a.kill()
                a.wait()
    print(f"binary: `{args.vmcp}`; recovery after answering again, {args.runs} runs: "
          f"median {statistics.median(times):.2f} s, max {max(times):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in times)}); goal <= 2 x 1 s + 1 s = 3 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("storm")
    s.add_argument("--seconds", type=float, default=60.0)
    s.add_argument("--vmcp", default=str(BIN / "vmcp"))
    r = sub.add_parser("recovery")
    r.add_argument("--runs", type=int, default=5)
    r.add_argument("--vmcp", default=str(BIN / "vmcp"))
    args = parser.parse_args()
    {"storm": storm, "recovery": recovery}[args.command](args)


if __name__ == "__main__":
    main()
