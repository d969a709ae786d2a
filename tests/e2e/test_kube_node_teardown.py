"""`scripts/kube-test-env.sh stop` of the single-node cluster leaves the machine as it found it.

Stops the session's node (with a pod running on it), checks what the kubelet, containerd, CNI
and kube-proxy had changed on the host, and starts it again (re-importing the test images) so
that tests collected after this one find it running. Marked `runs_last` (tests/e2e/conftest.py
moves it after every other test): the session's clients of the node's API server point at the
ports of the environment it stopped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from kube import Kube, KubeEnv, condition, pod_path

pytestmark = pytest.mark.runs_last

# What the kubelet (and kube-proxy, and the CNI bridge plugin) change, per REAL-NODE facts.
SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops", "net/ipv4/ip_forward")


def host_state(state_dir: Path) -> dict[str, object]:
    real = os.path.realpath(state_dir)
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines() if line.split()[4].startswith(real + "/")]
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout.split("\n")
    return {
        "sysctls": {k: Path("/proc/sys", k).read_text().strip() for k in SYSCTLS},
        "kubepods cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")),
        "mounts under the state dir": mounts,
        "bridge": Path("/sys/class/net/vmcp0").exists(),
        "nft tables": sorted(t for t in nft if "kube-proxy" in t or "vmcp_test_env" in t),
        "service route": "10.214.0.0/24" in subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout,
        "pod processes": sorted(p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _exe(p) in ("pause", "vmcp", "vmcp-example-server")),
    }


def _exe(proc: Path) -> str:
    try:
        return os.path.basename(os.readlink(proc / "exe"))
    except OSError:
        return ""


def test_stop_restores_the_host_and_start_works_again(node_env: KubeEnv, node_kube: Kube, node_images: dict[str, str], node_namespace: str) -> None:
    node_kube.create(
        pod_path(node_namespace),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": node_namespace},
            "spec": {"containers": [{"name": "pause", "image": "localhost/vmcp/pause:latest", "imagePullPolicy": "Never"}]},
        },
    )

    def running(pod: dict[str, object]) -> bool:
        cond = condition(pod, "Ready")
        return bool(cond and cond.get("status") == "True")

    node_kube.wait_object(pod_path(node_namespace, "sleeper"), running, 90, "the pod to run")
    during = host_state(node_env.state_dir)
    assert during["bridge"] and during["kubepods cgroups"] and during["mounts under the state dir"] and during["pod processes"], during
    assert during["sysctls"]["vm/overcommit_memory"] == "1", "the kubelet sets vm.overcommit_memory=1 (else this test proves nothing)"

    saved = dict(line.split("=", 1) for line in (node_env.state_dir / "node" / "sysctl.saved").read_text().splitlines())
    node_env.stop()
    after = host_state(node_env.state_dir)
    assert after["sysctls"] == {k: saved[k] for k in SYSCTLS}, after
    assert not after["kubepods cgroups"], after
    assert not after["mounts under the state dir"], after
    assert not after["bridge"] and not after["service route"] and not after["nft tables"], after
    assert not after["pod processes"], after
    assert not node_env.state_dir.exists()

    # Back up for whatever runs next (the images live in containerd, which started empty).
    node_env.start(timeout=400)
    node_env.crds = []
    node_env.wait_ready(60)
    node_env.install_crds()
    node_env.import_images(node_env.image_archives)
