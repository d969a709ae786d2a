#!/usr/bin/env python3
"""vmcp-operator benchmarks (issue 11), against a real kube-apiserver + etcd
(scripts/kube-test-env.sh start; no node) and the release binary.

  .cache/venv/bin/python bench/operator_bench.py apply --rounds 20       # apply -> all six children, median
  .cache/venv/bin/python bench/operator_bench.py writes --gateways 100 --minutes 5
  .cache/venv/bin/python bench/operator_bench.py memory --gateways 1000

Each scenario gets a namespace `obench-<scenario>-<random>` with one MCPGroup and runs the
operator (admin kubeconfig, --namespace, no leader election) as a local process. `writes`
stands in for the runtimes with a thread that applies each gateway's runtime status (field
manager vmcp-runtime, a new `timestamp` each time) every `--heartbeat` seconds, as 100 real
runtimes would; the operator's own writes come from its metric
vmcp_operator_api_writes_total. `memory` reads the operator's VmRSS and VmHWM from /proc once
every gateway has its six children and its status. Prints Markdown for BENCHMARKS.md; exits 1
when a goal is missed, 2 when it cannot run. The namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from kube import Kube, KubeEnv, KubeError, mcpgroup_manifest, mcpgroup_path, namespace_path, virtualmcpserver_manifest, vmcp_path  # noqa: E402
from operator_proc import GROUP, OperatorProc, children_paths  # noqa: E402

GOAL_WRITES_PER_HOUR = 0
GOAL_RSS_MIB = 64


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def all_children(kube: Kube, namespace: str, name: str) -> bool:
    return all(kube.exists(path) for path in children_paths(namespace, name).values())


def wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])  # kB
    return out


def runtime_status(generation: int) -> dict:
    return {
        "phase": "Ready",
        "message": "all backends ready",
        "observedGeneration": generation,
        "timestamp": now(),
        "backendCount": 0,
        "conditions": [{"type": "Ready", "status": "True", "reason": "AllBackendsReady", "message": "ok", "lastTransitionTime": "2026-12-02T00:00:00Z", "observedGeneration": generation}],
    }


def scenario_apply(kube: Kube, env: KubeEnv, namespace: str, args: argparse.Namespace, log_dir: Path) -> bool:
    op = OperatorProc.start_new(log_dir, env.kubeconfig, namespace=namespace)
    try:
        op.wait_ready()
        times = []
        for i in range(args.rounds):
            name = f"gw-{i}"
            started = time.monotonic()
            kube.create(vmcp_path(namespace), virtualmcpserver_manifest(namespace, name, GROUP))
            wait(lambda: all_children(kube, namespace, name), 60, f"children of {name}", interval=0.01)
            times.append(time.monotonic() - started)
        times.sort()
        print(f"| apply → all six children (median of {args.rounds}) | {statistics.median(times) * 1000:.0f} ms |")
        print(f"| fastest / slowest | {times[0] * 1000:.0f} ms / {times[-1] * 1000:.0f} ms |")
        return True
    finally:
        op.stop()


def create_gateways(kube: Kube, namespace: str, count: int) -> list[str]:
    names = [f"gw-{i}" for i in range(count)]
    for name in names:
        kube.create(vmcp_path(namespace), virtualmcpserver_manifest(namespace, name, GROUP))
    return names


def wait_provisioned(kube: Kube, namespace: str, names: list[str], timeout: float) -> float:
    started = time.monotonic()

    def done() -> bool:
        items = kube.items(vmcp_path(namespace))
        with_url = sum(1 for o in items if (o.get("status") or {}).get("url"))
        deployments = len(kube.items(f"/apis/apps/v1/namespaces/{namespace}/deployments"))
        return with_url == len(names) and deployments == len(names)

    wait(done, timeout, f"{len(names)} gateways provisioned", interval=1.0)
    return time.monotonic() - started


def scenario_writes(kube: Kube, env: KubeEnv, namespace: str, args: argparse.Namespace, log_dir: Path) -> bool:
    names = create_gateways(kube, namespace, args.gateways)
    op = OperatorProc.start_new(log_dir, env.kubeconfig, namespace=namespace)
    stop = threading.Event()
    heartbeats = [0]

    def runtimes() -> None:
        while not stop.is_set():
            round_started = time.monotonic()
            for name in names:
                if stop.is_set():
                    return
                generation = kube.get(vmcp_path(namespace, name))["metadata"]["generation"]
                body = {"apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "VirtualMCPServer", "metadata": {"name": name, "namespace": namespace}, "status": runtime_status(generation)}
                kube.apply_status(vmcp_path(namespace, name) + "/status", body, field_manager="vmcp-runtime")
                heartbeats[0] += 1
            stop.wait(max(0.0, args.heartbeat - (time.monotonic() - round_started)))

    try:
        op.wait_ready()
        took = wait_provisioned(kube, namespace, names, 600)
        thread = threading.Thread(target=runtimes, daemon=True)
        thread.start()
        # Let the first heartbeats land (RuntimeReporting flips once to True: real writes).
        wait(lambda: heartbeats[0] >= len(names), 600, "one heartbeat per gateway", interval=0.5)
        time.sleep(args.heartbeat * 2)
        writes_before, reconciles_before = op.writes(), op.reconciles()
        started = time.monotonic()
        time.sleep(args.minutes * 60)
        elapsed = time.monotonic() - started
        writes, reconciles = op.writes() - writes_before, op.reconciles() - reconciles_before
        beats = heartbeats[0]
        stop.set()
        thread.join(timeout=30)
        per_hour = writes * 3600 / elapsed
        print(f"| gateways | {len(names)} (provisioned in {took:.0f} s) |")
        print(f"| window | {elapsed / 60:.1f} min, runtime heartbeats every {args.heartbeat:.0f} s ({beats} in all) |")
        print(f"| operator reconciles in the window | {reconciles:.0f} |")
        print(f"| operator API writes in the window | {writes:.0f} → **{per_hour:.0f} per hour** (goal {GOAL_WRITES_PER_HOUR}) |")
        return per_hour <= GOAL_WRITES_PER_HOUR
    finally:
        stop.set()
        op.stop()


def scenario_memory(kube: Kube, env: KubeEnv, namespace: str, args: argparse.Namespace, log_dir: Path) -> bool:
    names = create_gateways(kube, namespace, args.gateways)
    op = OperatorProc.start_new(log_dir, env.kubeconfig, namespace=namespace)
    try:
        op.wait_ready()
        took = wait_provisioned(kube, namespace, names, 1800)
        time.sleep(10)
        mem = proc_status(op.pid)
        rss, hwm = mem["VmRSS"] / 1024, mem["VmHWM"] / 1024
        print(f"| gateways | {len(names)} (provisioned in {took:.0f} s, {op.writes():.0f} API writes) |")
        print(f"| operator RSS when settled | **{rss:.1f} MiB** (goal < {GOAL_RSS_MIB} MiB) |")
        print(f"| operator peak RSS (VmHWM) | {hwm:.1f} MiB |")
        return rss < GOAL_RSS_MIB
    finally:
        op.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("apply")
    p.add_argument("--rounds", type=int, default=20)
    p = sub.add_parser("writes")
    p.add_argument("--gateways", type=int, default=100)
    p.add_argument("--minutes", type=float, default=5)
    p.add_argument("--heartbeat", type=float, default=30)
    p = sub.add_parser("memory")
    p.add_argument("--gateways", type=int, default=1000)
    args = parser.parse_args()

    env = KubeEnv()
    if not env.is_running():
        print("the Kubernetes test environment is not running: scripts/kube-test-env.sh start", file=sys.stderr)
        return 2
    kube = env.admin
    env.install_crds()
    namespace = f"obench-{args.scenario}-{secrets.token_hex(3)}"
    kube.create(namespace_path(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    kube.create(mcpgroup_path(namespace), mcpgroup_manifest(namespace, GROUP))
    scenarios = {"apply": scenario_apply, "writes": scenario_writes, "memory": scenario_memory}
    try:
        with tempfile.TemporaryDirectory(prefix="operator-bench-") as tmp:
            print(f"| {args.scenario} | |\n|---|---|")
            ok = scenarios[args.scenario](kube, env, namespace, args, Path(tmp))
    finally:
        try:
            kube.delete(namespace_path(namespace), missing_ok=True)
        except KubeError as exc:
            print(f"could not delete {namespace}: {exc}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
