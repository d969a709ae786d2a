#!/usr/bin/env python3
"""Real-pod benchmarks (issue 10): vmcp as a Deployment on the single-node cluster of
`scripts/kube-test-env.sh start --node`, from images of the release binaries.

  .cache/venv/bin/python bench/node_bench.py ready --rounds 5    # gateway Deployment created -> CR Ready
  .cache/venv/bin/python bench/node_bench.py idle --seconds 60    # gateway pod idle with 3 backends: RSS, CPU

Set up the way tests/e2e/test_kube_node.py does it (tests/e2e/kube_node.py): shipped RBAC,
MCPGroup, VirtualMCPServer, backend pods of vmcp-example-server behind Services as
MCPServerEntry objects, the gateway as a Deployment with in-cluster config. The node must be
running (VMCP_KUBE_ENV_DIR=.cache/kube-node-env scripts/kube-test-env.sh start --node); the
images are built and imported here. Numbers come from the API server (phase Ready observed by
polling every 0.1 s) and from the container's cgroup (memory.stat, cpuacct.usage). Prints
Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from harness import backend_is, default_vmcp_bin, phase_is  # noqa: E402
from kube import Kube, KubeEnv, namespace_path  # noqa: E402
from kube_node import NodeCluster, container_cgroup  # noqa: E402

NODE_STATE_DIR = Path(os.environ.get("VMCP_KUBE_NODE_ENV_DIR") or REPO / ".cache" / "kube-node-env")
IMAGES = ("vmcp", "vmcp-example-server")


def images(env: KubeEnv) -> dict[str, str]:
    out = Path(tempfile.mkdtemp(prefix="vmcp-bench-images-"))
    subprocess.run(
        [str(REPO / "scripts" / "build-images.sh"), "--out", str(out), "--bin-dir", str(default_vmcp_bin().parent), *IMAGES], check=True
    )
    env.import_images([out / f"{name}.tar" for name in IMAGES])
    return {name: f"localhost/vmcp/{name}:latest" for name in IMAGES}


def fresh(kube: Kube, imgs: dict[str, str], scenario: str) -> NodeCluster:
    name = f"nbench-{scenario}-{secrets.token_hex(3)}"
    kube.create(namespace_path(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return NodeCluster(kube=kube, namespace=name, images=imgs).setup()


def bench_ready(kube: Kube, imgs: dict[str, str], rounds: int) -> None:
    took = []
    for _ in range(rounds):
        cluster = fresh(kube, imgs, "ready")
        try:
            cluster.add_backend("alpha")
            cluster.kube.wait_for(lambda: cluster.ready_endpoints("alpha"), 90, "the backend pod Ready")
            start = time.monotonic()
            cluster.gateway()
            cluster.wait_status(phase_is("Ready", backend_is("alpha", "ready")), "CR Ready", timeout=120)
            took.append(time.monotonic() - start)
        finally:
            kube.delete(namespace_path(cluster.namespace), missing_ok=True)
    print("| metric | value |\n|---|---|")
    print(f"| Deployment created → CR `Ready` (median of {rounds}) | {statistics.median(took):.2f} s |")
    print(f"| min / max | {min(took):.2f} s / {max(took):.2f} s |")
    print(f"| all rounds | {', '.join(f'{t:.2f}' for t in took)} s |")


def bench_idle(kube: Kube, imgs: dict[str, str], seconds: float) -> None:
    cluster = fresh(kube, imgs, "idle")
    try:
        for name in ("alpha", "beta", "gamma"):
            cluster.add_backend(name)
        cluster.gateway()
        cluster.wait_status(
            phase_is("Ready", backend_is("alpha", "ready"), backend_is("beta", "ready"), backend_is("gamma", "ready")), "CR Ready", timeout=120
        )
        pod = cluster.ready_gateway_pod()
        time.sleep(10)  # settle after start (first discovery, first status write)
        mem = container_cgroup(pod, "memory")
        cpu = container_cgroup(pod, "cpuacct")
        usage0 = int((cpu / "cpuacct.usage").read_text())
        t0 = time.monotonic()
        time.sleep(seconds)
        usage1 = int((cpu / "cpuacct.usage").read_text())
        elapsed = time.monotonic() - t0
        stat = dict(line.split() for line in (mem / "memory.stat").read_text().splitlines())
        usage = int((mem / "memory.usage_in_bytes").read_text())
        # Cross-check from the process side: VmRSS of the container's processes.
        vmrss_kib = 0
        for pid in (mem / "cgroup.procs").read_text().split():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    vmrss_kib += int(line.split()[1])
    finally:
        kube.delete(namespace_path(cluster.namespace), missing_ok=True)
    cpu_pct = (usage1 - usage0) / 1e9 / elapsed * 100
    print("| metric (gateway pod, 3 backends, idle, health checks every 2 s) | value |\n|---|---|")
    print(f"| RSS (cgroup memory.stat total_rss) | {int(stat['total_rss']) / 2**20:.1f} MiB |")
    print(f"| cgroup memory.usage_in_bytes (RSS + page cache) | {usage / 2**20:.1f} MiB |")
    print(f"| VmRSS of the container's processes (/proc, includes the shared binary pages) | {vmrss_kib / 1024:.1f} MiB |")
    print(f"| CPU (cpuacct.usage over {elapsed:.0f} s) | {cpu_pct:.2f} % of one core |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="scenario", required=True)
    ready = sub.add_parser("ready")
    ready.add_argument("--rounds", type=int, default=5)
    idle = sub.add_parser("idle")
    idle.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    env = KubeEnv(NODE_STATE_DIR, node=True)
    if not env.is_running():
        print(f"the node is not running in {NODE_STATE_DIR} (scripts/kube-test-env.sh start --node)", file=sys.stderr)
        return 2
    env.install_crds()
    imgs = images(env)
    if args.scenario == "ready":
        bench_ready(env.admin, imgs, args.rounds)
    else:
        bench_idle(env.admin, imgs, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
