#!/usr/bin/env python3
"""Health-monitoring benchmarks (issue 3), against the release binaries.

  .cache/venv/bin/python bench/health_bench.py detect     # death -> state file, with and without traffic
  .cache/venv/bin/python bench/health_bench.py cost       # CPU of probing 1000 backends every 10 s
  .cache/venv/bin/python bench/health_bench.py writes --minutes 10   # status writes of a stable gateway

Prints markdown for BENCHMARKS.md. Everything listens on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "target" / "release"


def start_example(name: str, port: int = 0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [str(BIN / "vmcp-example-server"), "--name", name, "http", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"listening on (\S+)", line)
    if not match:
        raise SystemExit(f"example server did not start: {line!r}")
    return proc, match.group(1)


def start_vmcp(config: str, state_dir: str) -> tuple[subprocess.Popen, str]:
    path = Path(state_dir) / "config.yaml"
    path.write_text(config)
    proc = subprocess.Popen(
        [str(BIN / "vmcp"), "serve", "--config", str(path), "--port", "0", "--state-dir", state_dir, "--reporter", "file"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "info"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"vmcp listening on (\S+)", line)
        if match:
            url = match.group(1)
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            base = url.removesuffix("/mcp")
            while time.monotonic() < deadline:
                try:
                    if urllib.request.urlopen(base + "/readyz", timeout=2).status == 200:
                        return proc, url
                except Exception:
                    time.sleep(0.05)
    raise SystemExit("vmcp did not become ready")


def backend_status(state_file: Path, name: str) -> str | None:
    try:
        data = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    for backend in data["status"]["discoveredBackends"]:
        if backend["name"] == name:
            return backend["status"]
    return None


def call_loop(url: str, stop: threading.Event) -> None:
    """Steady traffic to backend `a` with the official Python MCP client."""
    import anyio
    from mcp.client.client import Client  # type: ignore

    async def run() -> None:
        async with Client(url, mode="legacy") as client:  # type: ignore[call-arg]
            i = 0
            while not stop.is_set():
                try:
                    await client.call_tool("a_echo", {"text": f"t{i}"})
                except Exception:
                    pass
                i += 1
                await anyio.sleep(0.02)

    try:
        anyio.run(run)
    except Exception:
        pass


def detect(traffic: bool, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as state:
            a, a_url = start_example("a")
            b, b_url = start_example("b")
            config = f"""name: detect
backends:
  - {{name: a, transport: streamable-http, url: '{a_url}'}}
  - {{name: b, transport: streamable-http, url: '{b_url}'}}
operational:
  timeouts: {{default: 2s}}
  failureHandling: {{healthCheckInterval: 5s, healthCheckTimeout: 1s, unhealthyThreshold: 3}}
"""
            gw, url = start_vmcp(config, state)
            state_file = Path(state) / "detect.json"
            stop = threading.Event()
            if traffic:
                threading.Thread(target=call_loop, args=(url, stop), daemon=True).start()
                time.sleep(1.0)  # let traffic flow before the kill (measurement setup, not synchronisation)
            deadline = time.monotonic() + 10
            while backend_status(state_file, "a") != "ready" and time.monotonic() < deadline:
                time.sleep(0.01)
            killed = time.monotonic()
            a.send_signal(signal.SIGKILL)
            while backend_status(state_file, "a") != "unavailable":
                if time.monotonic() - killed > 60:
                    raise SystemExit("death not reported within 60 s")
                time.sleep(0.005)
            times.append(time.monotonic() - killed)
            stop.set()
            for proc in (gw, b):
                proc.terminate()
                proc.wait(10)
    return times


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cost(backends: int, seconds: int) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as state:
        example, url = start_example("shared")
        entries = "\n".join(f"  - {{name: b{i:04d}, transport: streamable-http, url: '{url}'}}" for i in range(backends))
        config = f"""name: cost
backends:
{entries}
operational:
  logLevel: warn
  failureHandling: {{healthCheckInterval: 10s, healthCheckTimeout: 5s}}
"""
        gw, _ = start_vmcp(config, state)
        time.sleep(15)  # settle after connecting 1000 sessions (setup, outside the measured window)
        before = cpu_seconds(gw.pid)
        time.sleep(seconds)
        used = cpu_seconds(gw.pid) - before
        rss = next(l for l in Path(f"/proc/{gw.pid}/status").read_text().splitlines() if l.startswith("VmRSS"))
        gw.terminate()
        gw.wait(30)
        example.terminate()
        return used / seconds, rss.split(":", 1)[1].strip()


def writes(minutes: float) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as state:
        a, a_url = start_example("a")
        config = f"""name: writes
backends:
  - {{name: a, transport: streamable-http, url: '{a_url}'}}
operational:
  failureHandling: {{healthCheckInterval: 10s, healthCheckTimeout: 5s, statusReportingInterval: 30s}}
"""
        gw, url = start_vmcp(config, state)
        metrics = url.removesuffix("/mcp") + "/metrics"

        def count() -> dict[str, int]:
            text = urllib.request.urlopen(metrics, timeout=5).read().decode()
            out: dict[str, int] = {}
            for line in text.splitlines():
                m = re.match(r'vmcp_status_writes_total\{(.*)\} (\d+)', line)
                if m and 'reporter="file"' in m.group(1) and 'outcome="ok"' in m.group(1):
                    reason = re.search(r'reason="(\w+)"', m.group(1)).group(1)
                    out[reason] = out.get(reason, 0) + int(m.group(2))
            return out

        time.sleep(5)
        start = count()
        time.sleep(minutes * 60)
        end = count()
        gw.terminate()
        gw.wait(30)
        a.terminate()
        delta = {k: end.get(k, 0) - start.get(k, 0) for k in set(end) | set(start)}
        return delta.get("changed", 0), delta.get("heartbeat", 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["detect", "cost", "writes"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    print(f"- machine: {os.cpu_count()} cores; date: {time.strftime('%Y-%m-%d')}; command: `{' '.join(sys.argv)}`")
    if args.what == "detect":
        for traffic in (True, False):
            t = detect(traffic, args.runs)
            label = "with traffic (passive)" if traffic else "idle (active probes: 5 s × 3)"
            print(f"- backend death → state file, {label}: median {statistics.median(t):.2f} s, max {max(t):.2f} s over {len(t)} runs")
    elif args.what == "cost":
        share, rss = cost(args.backends, args.seconds)
        print(f"- {args.backends} backends probed every 10 s: {share * 100:.2f}% of one core over {args.seconds} s; vmcp RSS {rss}")
    else:
        changed, heartbeat = writes(args.minutes)
        print(f"- stable gateway over {args.minutes:g} min: {changed} change writes, {heartbeat} heartbeat writes (heartbeat 30 s → at most {int(args.minutes * 2)})")


if __name__ == "__main__":
    main()
