#!/usr/bin/env python3
"""`/health` latency while many half-open connections are held (issue 9, item 2).

  .cache/venv/bin/python bench/conn_bench.py                      # 2,000 held, 500 probes
  .cache/venv/bin/python bench/conn_bench.py --held 2000 --probes 500 --bin OTHER/vmcp

Starts vmcp-example-server (http) and `vmcp serve` in front of it, opens --held connections
that send the start of a request and then nothing (headerReadTimeout is set to 10 min so they
stay held for the whole run), then times --probes `GET /health` requests, each on a fresh
connection (as a kubelet probe does) and on one keep-alive connection. Prints markdown for
BENCHMARKS.md. Everything listens on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import http.client
import re
import resource
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "target" / "release"
HOST = "127.0.0.1"


def start_example() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [str(BIN / "vmcp-example-server"), "--name", "ex", "http", "--host", HOST, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"listening on (\S+)", line)
    if not match:
        raise SystemExit(f"example server did not start: {line!r}")
    return proc, match.group(1)


def start_vmcp(binary: Path, config: str, workdir: str, new_config: bool) -> tuple[subprocess.Popen, int]:
    path = Path(workdir) / "config.yaml"
    path.write_text(config)
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(path), "--host", HOST, "--port", "0", "--reporter", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"vmcp exited with {proc.returncode}")
        match = re.search(r"vmcp listening on http://[^:]+:(\d+)/mcp", line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            port = int(match.group(1))
            while time.monotonic() < deadline:
                try:
                    if urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=2).status == 200:
                        return proc, port
                except OSError:
                    time.sleep(0.1)
    raise SystemExit("vmcp did not become ready")


def half_open(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(f"GET /health HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-Slow: ".encode())
    return sock


def time_probes(port: int, count: int, fresh: bool) -> list[float]:
    times: list[float] = []
    conn = None if fresh else http.client.HTTPConnection(HOST, port, timeout=10)
    for _ in range(count):
        started = time.perf_counter()
        if fresh:
            c = http.client.HTTPConnection(HOST, port, timeout=10)
            c.request("GET", "/health", headers={"Connection": "close"})
            resp = c.getresponse()
            resp.read()
            c.close()
        else:
            assert conn is not None
            conn.request("GET", "/health")
            resp = conn.getresponse()
            resp.read()
        if resp.status != 200:
            raise SystemExit(f"/health answered {resp.status}")
        times.append((time.perf_counter() - started) * 1000)
    if conn is not None:
        conn.close()
    return times


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--held", type=int, default=2000)
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--bin", type=Path, default=BIN / "vmcp", help="the vmcp binary to measure")
    parser.add_argument("--old-config", action="store_true", help="no server.connections (binaries before the fix)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.held + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.held + 512), hard))

    example, url = start_example()
    connections = "" if args.old_config else "  connections:\n    headerReadTimeout: 10m\n"
    config = f"name: bench\nbackends:\n  - {{name: ex, transport: streamable-http, url: '{url}'}}\nserver:\n{connections}"
    if args.old_config:
        config = config.removesuffix("server:\n")
    with tempfile.TemporaryDirectory() as workdir:
        vmcp, port = start_vmcp(args.bin, config, workdir, not args.old_config)
        try:
            baseline_fresh = time_probes(port, args.probes, fresh=True)
            baseline_kept = time_probes(port, args.probes, fresh=False)
            sockets = [half_open(port) for _ in range(args.held)]
            time.sleep(1)  # let the accept loop take them all
            held_fresh = time_probes(port, args.probes, fresh=True)
            held_kept = time_probes(port, args.probes, fresh=False)
            for sock in sockets:
                sock.close()
        finally:
            vmcp.terminate()
            vmcp.wait(timeout=30)
            example.terminate()

    print(f"`/health` latency, {args.probes} probes each, binary `{args.bin}`:\n")
    print("| connections held half-open | probe on | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for held, label, values in (
        (0, "fresh connection", baseline_fresh),
        (0, "keep-alive connection", baseline_kept),
        (args.held, "fresh connection", held_fresh),
        (args.held, "keep-alive connection", held_kept),
    ):
        print(
            f"| {held} | {label} | {statistics.median(values):.2f} | {percentile(values, 99):.2f} | {max(values):.2f} |"
        )


if __name__ == "__main__":
    main()
