#!/usr/bin/env python3
"""Kubernetes status benchmarks (issue 4): `vmcp serve` reporting into a real
kube-apiserver + etcd (scripts/kube-test-env.sh), against the release binaries.

  .cache/venv/bin/python bench/kube_bench.py death --rounds 5      # SIGKILL a backend -> CR shows it unavailable
  .cache/venv/bin/python bench/kube_bench.py size --backends 500   # object size with 500 entries in the group
  .cache/venv/bin/python bench/kube_bench.py writes --minutes 10   # API writes of a stable runtime
  .cache/venv/bin/python bench/kube_bench.py writes --minutes 3 --lease-seconds 60

Each scenario gets its own namespace `kbench-<scenario>-<random>` set up the way
tests/e2e/test_kube_runtime.py does it: the shipped RBAC (deploy/rbac/vmcp-runtime.yaml),
the MCPGroup `example-group`, the VirtualMCPServer `example`, MCPServerEntry objects for the
backends, and the runtime as a process with VMCP_NAME/VMCP_NAMESPACE and a kubeconfig holding
a real token of the ServiceAccount `example-vmcp`. Everything it started is stopped and the
namespace (with its objects) deleted at the end, also on failure.

The Kubernetes environment must be running already (`scripts/kube-test-env.sh start`); the
bench fails if it is not. Prints Markdown for BENCHMARKS.md; exits 1 when a goal is missed
(after printing the numbers), 2 when it cannot run.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import anyio  # noqa: E402
from harness import (  # noqa: E402
    ExampleHttp,
    Gateway,
    Launcher,
    base_gateway_config,
    connect,
    default_example_server_bin,
    default_vmcp_bin,
    free_port,
)
from kube import (  # noqa: E402
    API_VERSION,
    Kube,
    KubeEnv,
    KubeError,
    events_path,
    events_v1_path,
    lease_path,
    mcpgroup_path,
    mcpserverentry_path,
    namespace_path,
    ns_path,
    role_path,
    rolebinding_path,
    vmcp_path,
)

NAME = "example"
GROUP = "example-group"
SERVICE_ACCOUNT = "example-vmcp"
LEASE = f"{NAME}-vmcp-status"
RBAC_YAML = REPO / "deploy" / "rbac" / "vmcp-runtime.yaml"
RUNTIME_MANAGER = "vmcp-runtime"
MAX_REPORTED_BACKENDS = 100  # crates/vmcp-domain/src/status.rs


START_LOAD = "?"  # set in main()
START_DATE = "?"


class BenchError(Exception):
    """The bench cannot run (environment missing, setup failed)."""


# ---------------------------------------------------------------------------
# machine and output


def machine_lines() -> list[str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    python = os.path.relpath(sys.executable, REPO) if sys.executable.startswith(str(REPO)) else sys.executable
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    command = " ".join([python, script, *sys.argv[1:]])
    return [
        f"- date: {START_DATE} (start)",
        f"- machine: {os.cpu_count()} cores ({model}), {mem} RAM; load average at start: {START_LOAD}",
        f"- command: `{command}`",
    ]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def table(rows: list[tuple[str, str, str, str]]) -> str:
    out = ["| measurement | goal | measured | verdict |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def rss_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            kb = int(line.split()[1])
            return f"{kb / 1024:.0f} MiB"
    return "?"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def apiserver_pid(env: KubeEnv) -> int | None:
    """The kube-apiserver of the environment (by its binary path from the env file), if found."""
    binary = None
    try:
        for line in (env.state_dir / "env").read_text().splitlines():
            if line.startswith("APISERVER_BIN="):
                binary = line.split("=", 1)[1].strip()
    except OSError:
        return None
    if not binary:
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
            except OSError:
                continue
            if argv0 == binary:
                return int(entry.name)
    return None


# ---------------------------------------------------------------------------
# status helpers


def backend_entry(status: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((b for b in status.get("discoveredBackends") or [] if b.get("name") == name), None)


def backend_is(status: dict[str, Any], name: str, state: str) -> bool:
    return (backend_entry(status, name) or {}).get("status") == state


def status_of(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("status") or {}


def stripped(status: dict[str, Any], *, failures: bool = False) -> dict[str, Any]:
    """The status without what changes on every heartbeat (timestamp, lastHealthCheck) and,
    with `failures`, without the growing consecutiveFailures counters."""
    copy_ = copy.deepcopy(status)
    copy_.pop("timestamp", None)
    for backend in copy_.get("discoveredBackends") or []:
        backend.pop("lastHealthCheck", None)
        if failures:
            backend.pop("consecutiveFailures", None)
    return copy_


def runtime_status_time(obj: dict[str, Any]) -> str | None:
    """managedFields time of the runtime's status entry (second resolution)."""
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == RUNTIME_MANAGER and entry.get("subresource") == "status":
            return entry.get("time")
    return None


def compact(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


# ---------------------------------------------------------------------------
# watching one object


@dataclass
class Seen:
    index: int  # position in ObjectWatch.events
    at: float  # time.monotonic() when the event arrived
    type: str
    obj: dict[str, Any]

    @property
    def rv(self) -> str:
        return self.obj["metadata"]["resourceVersion"]


class ObjectWatch:
    """Watches one object (collection path + metadata.name field selector) from a known
    resourceVersion in a background thread, keeping every event with its arrival time.
    Reconnects from the last resourceVersion, so nothing is missed across reconnects;
    a 410 Gone (history compacted) is counted as a gap."""

    def __init__(self, env: KubeEnv, collection: str, name: str, resource_version: str) -> None:
        self.kube = Kube.from_state_dir(env.state_dir)
        self.collection = collection
        self.name = name
        self.rv = resource_version
        self.events: list[Seen] = []
        self.gaps = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch-{name}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self.kube.watch(
                    self.collection,
                    resource_version=self.rv,
                    timeout=30,
                    fieldSelector=f"metadata.name={self.name}",
                    allowWatchBookmarks="true",
                ):
                    arrived = time.monotonic()
                    obj = event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.rv = rv
                    if event.get("type") == "BOOKMARK":
                        continue
                    with self._cond:
                        self.events.append(Seen(len(self.events), arrived, event.get("type", "?"), obj))
                        self._cond.notify_all()
                    if self._stop.is_set():
                        return
            except KubeError as exc:
                if self._stop.is_set():
                    return
                if exc.status == 410:
                    self.gaps += 1
                    try:
                        self.rv = self.kube.get(f"{self.collection}/{self.name}")["metadata"]["resourceVersion"]
                    except KubeError:
                        pass
                else:
                    self.errors.append(str(exc))
                time.sleep(0.2)

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def snapshot(self) -> list[Seen]:
        with self._cond:
            return list(self.events)

    def wait_for(self, predicate: Callable[[dict[str, Any]], Any], timeout: float, what: str, since: int = 0) -> Seen:
        """The first event at or after index `since` whose object satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        index = since
        with self._cond:
            while True:
                while index < len(self.events):
                    if self.events[index].type in ("ADDED", "MODIFIED") and predicate(self.events[index].obj):
                        return self.events[index]
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = self.events[-1].obj if self.events else None
                    raise BenchError(
                        f"timed out after {timeout:.0f}s waiting for {what}; last status seen: "
                        f"{json.dumps(status_of(last))[:1500]}; watch errors: {self.errors[-3:]}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def stop(self) -> None:
        self._stop.set()
        # A daemon thread blocked in a watch request ends with its request or the process.
        self._thread.join(timeout=1)
        if not self._thread.is_alive():
            self.kube.close()


# ---------------------------------------------------------------------------
# a namespace with the runtime's objects


def require_environment() -> KubeEnv:
    env = KubeEnv()
    if not env.is_running():
        raise BenchError(
            f"the Kubernetes test environment ({env.state_dir}) is not running: `scripts/kube-test-env.sh status` failed. "
            "Start it with `scripts/kube-test-env.sh start` (install it first with `scripts/kube-test-env.sh install`)."
        )
    try:
        admin = env.admin
    except (OSError, FileNotFoundError) as exc:
        raise BenchError(f"cannot read the environment's admin credentials: {exc}") from None
    if not admin.is_ready():
        raise BenchError(f"kube-apiserver at {admin.server} does not answer /readyz with ok; log: {env.apiserver_log}")
    try:
        env.install_crds()
    except Exception as exc:  # noqa: BLE001 - reported as a setup failure
        raise BenchError(f"installing the CRDs from deploy/crds failed: {exc}") from None
    for binary in (default_vmcp_bin(), default_example_server_bin()):
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise BenchError(f"{binary} is missing: cargo build --release -p vmcp -p vmcp-example-server")
    return env


class Scenario:
    """One namespace with RBAC, group and VirtualMCPServer; processes through a Launcher."""

    def __init__(self, env: KubeEnv, label: str) -> None:
        self.env = env
        self.kube = env.admin
        self.namespace = f"kbench-{label}-{secrets.token_hex(3)}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"kube-bench-{label}-"))
        self.launcher = Launcher(self.tmp, default_vmcp_bin())
        self.backends: dict[str, ExampleHttp] = {}
        self.kubeconfig: Path | None = None

    @property
    def vmcp(self) -> str:
        return vmcp_path(self.namespace, NAME)

    def __enter__(self) -> Scenario:
        try:
            self.kube.create(
                namespace_path(),
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace, "labels": {"vmcp-bench": "true"}}},
            )
            self.kube.apply_yaml_file(RBAC_YAML, {"example": self.namespace})
            self.kube.create(
                mcpgroup_path(self.namespace),
                {"apiVersion": API_VERSION, "kind": "MCPGroup", "metadata": {"name": GROUP, "namespace": self.namespace}, "spec": {"description": "bench"}},
            )
            self.kube.create(
                vmcp_path(self.namespace),
                {"apiVersion": API_VERSION, "kind": "VirtualMCPServer", "metadata": {"name": NAME, "namespace": self.namespace}, "spec": {"incomingAuth": {"type": "anonymous"}, "groupRef": {"name": GROUP}}},
            )
            token = self.kube.sa_token(self.namespace, SERVICE_ACCOUNT)
            self.kubeconfig = self.kube.write_kubeconfig(self.tmp / "runtime.kubeconfig", token=token, namespace=self.namespace)
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and exc_type is not KeyboardInterrupt:
            print(f"\n(scenario failed; process logs in {self.tmp})\n{self.launcher.logs(40)}", file=sys.stderr)
        self.cleanup()
        if exc_type is None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def cleanup(self) -> None:
        self.launcher.stop_all()
        # Without a controller-manager a deleted namespace is never emptied: delete the objects.
        for path in (mcpserverentry_path(self.namespace), vmcp_path(self.namespace), mcpgroup_path(self.namespace),
                     lease_path(self.namespace), events_path(self.namespace), events_v1_path(self.namespace),
                     rolebinding_path(self.namespace), role_path(self.namespace), ns_path(self.namespace, "serviceaccounts")):
            try:
                self.kube.delete(path, missing_ok=True)
            except KubeError as exc:
                print(f"cleanup: deleting {path} failed: {exc}", file=sys.stderr)
        try:
            self.kube.delete(namespace_path(self.namespace), missing_ok=True)
        except KubeError as exc:
            print(f"cleanup: deleting namespace {self.namespace} failed: {exc}", file=sys.stderr)

    def add_entry(self, name: str, url: str | None = None) -> ExampleHttp | None:
        """An MCPServerEntry; without `url` a live vmcp-example-server is started for it."""
        backend = None
        if url is None:
            backend = self.launcher.example_http(name)
            self.backends[name] = backend
            url = backend.url
        self.kube.create(
            mcpserverentry_path(self.namespace),
            {
                "apiVersion": API_VERSION,
                "kind": "MCPServerEntry",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"remoteUrl": url, "transport": "streamable-http", "groupRef": {"name": GROUP}},
            },
        )
        return backend

    def runtime(self, failure_handling: dict[str, Any], *, lease_seconds: int = 15, ready: bool = True, log_level: str = "info") -> Gateway:
        config = base_gateway_config([])
        config["name"] = NAME
        config["groupRef"] = GROUP
        config["operational"]["failureHandling"] = failure_handling
        assert self.kubeconfig is not None
        return self.launcher.gateway(
            config,
            ready=ready,
            env={
                "VMCP_NAME": NAME,
                "VMCP_NAMESPACE": self.namespace,
                "KUBECONFIG": str(self.kubeconfig),
                "VMCP_STATUS_LEASE_SECONDS": str(lease_seconds),
                "RUST_LOG": log_level,
            },
        )

    def watch_vmcp(self) -> ObjectWatch:
        rv = self.kube.get(self.vmcp)["metadata"]["resourceVersion"]
        return ObjectWatch(self.env, vmcp_path(self.namespace), NAME, rv)

    def watch_lease(self) -> ObjectWatch:
        rv = self.kube.get(lease_path(self.namespace, LEASE))["metadata"]["resourceVersion"]
        return ObjectWatch(self.env, lease_path(self.namespace), LEASE, rv)

    def raw_object(self) -> bytes:
        """The object exactly as the API server serves it (JSON bytes)."""
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self.kube.token}"}
        resp = self.kube._http.get(self.vmcp, headers=headers)  # noqa: SLF001 - raw bytes wanted
        resp.raise_for_status()
        return resp.content


def status_writes_metric(gateway: Gateway) -> dict[str, int]:
    """vmcp_status_writes_total of the kubernetes reporter, outcome ok, by reason."""
    text = gateway.get("/metrics").text
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"vmcp_status_writes_total\{(.*)\} (\S+)", line)
        if m and 'reporter="kubernetes"' in m.group(1) and 'outcome="ok"' in m.group(1):
            reason = re.search(r'reason="(\w+)"', m.group(1))
            key = reason.group(1) if reason else "?"
            out[key] = out.get(key, 0) + int(float(m.group(2)))
    return out


def wait_ready(watch: ObjectWatch, names: list[str], timeout: float, since: int = 0) -> Seen:
    return watch.wait_for(
        lambda o: status_of(o).get("phase") == "Ready" and all(backend_is(status_of(o), n, "ready") for n in names),
        timeout,
        f"phase Ready with {', '.join(names)} ready",
        since,
    )


# ---------------------------------------------------------------------------
# death: SIGKILL of a backend -> the CR shows it unavailable


class Traffic:
    """An MCP client calling `tool` through the gateway in a loop, in its own thread."""

    def __init__(self, url: str, tool: str) -> None:
        self.url = url
        self.tool = tool
        self.ok = 0
        self.failed = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="traffic")
        self._thread.start()

    def _run(self) -> None:
        async def main() -> None:
            async with connect(self.url) as client:
                i = 0
                while not self._stop.is_set():
                    try:
                        result = await client.call_tool(self.tool, {"text": f"t{i}"})
                        if result.is_error:
                            self.failed += 1
                        else:
                            self.ok += 1
                    except Exception:  # noqa: BLE001 - failing calls are the point
                        self.failed += 1
                    i += 1
                    await anyio.sleep(0.02)

        try:
            anyio.run(main)
        except Exception as exc:  # noqa: BLE001
            self.error = f"{type(exc).__name__}: {exc}"

    def wait_flowing(self, calls: int = 10, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.ok < calls:
            if self.error or not self._thread.is_alive():
                raise BenchError(f"the traffic client stopped: {self.error}")
            if time.monotonic() > deadline:
                raise BenchError(f"traffic did not flow: {self.ok} ok, {self.failed} failed calls in {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=35)


def death(env: KubeEnv, rounds: int) -> bool:
    interval, threshold, probe_timeout = 5, 3, 2
    idle_goal = interval * threshold + 1
    times: dict[str, list[float]] = {"traffic": [], "idle": []}
    calls: list[tuple[int, int]] = []
    recoveries: list[float] = []
    recovery_notes: list[str] = []
    last_mode = ""
    with Scenario(env, "death") as sc:
        sc.add_entry("alpha")
        beta = sc.add_entry("beta")
        assert beta is not None
        watch = sc.watch_vmcp()
        gateway = sc.runtime(
            {
                "healthCheckInterval": f"{interval}s",
                "healthCheckTimeout": f"{probe_timeout}s",
                "unhealthyThreshold": threshold,
                "partialFailureMode": "best_effort",
            }
        )
        try:
            ready_from = 0
            restarted = None
            for _ in range(rounds):
                for mode in ("traffic", "idle"):
                    # Ready (again, after the previous round's restart) before the kill.
                    ready = wait_ready(watch, ["alpha", "beta"], 90, since=ready_from)
                    if restarted is not None:
                        circuits = {
                            (backend_entry(status_of(e.obj), "beta") or {}).get("circuitBreakerState")
                            for e in watch.snapshot()[ready_from - 1 : ready.index + 1]
                        }
                        recoveries.append(ready.at - restarted)
                        recovery_notes.append(f"after {last_mode}: {ready.at - restarted:.1f} s, circuit {'/'.join(sorted(c for c in circuits if c))}")
                    traffic = None
                    if mode == "traffic":
                        traffic = Traffic(gateway.url, "beta_echo")
                        traffic.wait_flowing()
                    mark = watch.mark()
                    killed = time.monotonic()
                    beta.kill_hard()
                    seen = watch.wait_for(lambda o: backend_is(status_of(o), "beta", "unavailable"), 60, "beta unavailable on the CR", mark)
                    times[mode].append(seen.at - killed)
                    ready_from = seen.index + 1
                    last_mode = mode
                    if traffic is not None:
                        traffic.stop()
                        calls.append((traffic.ok, traffic.failed))
                    gateway.check_alive()
                    beta.start()
                    restarted = time.monotonic()
                    beta.wait_listening()
        finally:
            watch.stop()

    traffic_t, idle_t = times["traffic"], times["idle"]
    ok_traffic = max(traffic_t) <= 1.0
    ok_idle = max(idle_t) <= idle_goal
    print(f"### death: backend SIGKILL → VirtualMCPServer shows it `unavailable` ({rounds} rounds per mode, alternating)\n")
    print("\n".join(machine_lines()))
    print(f"- runtime: healthCheckInterval {interval}s, unhealthyThreshold {threshold}, healthCheckTimeout {probe_timeout}s, "
          "circuit breaker defaults (opens after 5 failures in a row, 60 s open); two MCPServerEntry backends (vmcp-example-server), `beta` is killed")
    print("- measured: from just before SIGKILL to the arrival of the first watch event (MODIFIED) whose "
          "`status.discoveredBackends[beta].status` is `unavailable`; beta restarted on the same port and the CR back to Ready between rounds")
    print(f"- with traffic: an MCP client (official Python SDK) calls `beta_echo` through the gateway every ~20 ms; calls per round (ok, failed): {calls}")
    if recoveries:
        print(f"- for information, beta restarted → CR Ready with beta `ready` again: median {statistics.median(recoveries):.1f} s, "
              f"min {min(recoveries):.1f} s, max {max(recoveries):.1f} s ({len(recoveries)} restarts: {'; '.join(recovery_notes)})")
    print("- idle rounds kill beta right after the CR turned Ready again, i.e. right after a successful probe: each idle round "
          "hits the worst phase, three full probe intervals")
    print(f"- load average at end: {loadavg()}\n")

    def summary(ts: list[float]) -> str:
        return f"median {statistics.median(ts):.2f} s, min {min(ts):.2f} s, max {max(ts):.2f} s"

    print(table([
        ("death → CR `unavailable`, with traffic", "≤ 1 s", summary(traffic_t), verdict(ok_traffic)),
        (f"death → CR `unavailable`, idle (probes {interval} s × {threshold})", f"≤ {idle_goal} s", summary(idle_t), verdict(ok_idle)),
    ]))
    print(f"\nraw (s): with traffic {[round(t, 3) for t in traffic_t]}; idle {[round(t, 3) for t in idle_t]}")
    return ok_traffic and ok_idle


# ---------------------------------------------------------------------------
# size: 500 entries


def size(env: KubeEnv, backends: int, live: int, window: float) -> bool:
    goal = 256 * 1024
    interval, probe_timeout, threshold = 10, 2, 2
    dead = backends - live
    with Scenario(env, "size") as sc:
        for i in range(live):
            sc.add_entry(f"live-{i:02d}")
        started = time.monotonic()
        for i in range(dead):
            sc.add_entry(f"dead-{i:04d}", url=f"http://127.0.0.1:{free_port()}/mcp")  # closed: bound, then released
        create_s = time.monotonic() - started
        watch = sc.watch_vmcp()
        gateway = sc.runtime(
            {
                "healthCheckInterval": f"{interval}s",
                "healthCheckTimeout": f"{probe_timeout}s",
                "unhealthyThreshold": threshold,
                "partialFailureMode": "best_effort",
            },
            ready=False,
            log_level="warn",
        )
        launched = time.monotonic()
        try:
            counted = watch.wait_for(lambda o: status_of(o).get("backendCount") == backends, 180, f"backendCount {backends}")
            count_s = counted.at - launched

            # Settled: every listed backend has a result, and the content apart from timestamps and
            # the growing consecutiveFailures counters has not changed for 2.5 probe intervals.
            quiet = interval * 2.5
            deadline = time.monotonic() + 300
            settled_at = None
            st: dict[str, Any] = {}
            while settled_at is None:
                gateway.check_alive()
                if time.monotonic() > deadline:
                    raise BenchError(f"the status did not settle within 300 s; last: {json.dumps(st)[:1500]}")
                time.sleep(1)
                events = watch.snapshot()
                last_change, key = launched, None
                for e in events:
                    k = json.dumps(stripped(status_of(e.obj), failures=True), sort_keys=True)
                    if k != key:
                        last_change, key = e.at, k
                st = status_of(events[-1].obj) if events else {}
                shape = st.get("backendCount") == backends and not any(
                    b.get("status") == "unknown" for b in st.get("discoveredBackends") or []
                )
                if shape and time.monotonic() - last_change >= quiet:
                    settled_at = last_change
            settle_s = settled_at - launched

            # The measuring window: writes, sizes (largest seen), CPU.
            mark = watch.mark()
            metric0 = status_writes_metric(gateway)
            api_pid = apiserver_pid(env)
            cpu0 = cpu_seconds(gateway.pid)
            api0 = cpu_seconds(api_pid) if api_pid else None
            t0 = time.monotonic()
            largest = b""
            while time.monotonic() - t0 < window:
                raw = sc.raw_object()
                if len(raw) > len(largest):
                    largest = raw
                time.sleep(5)
            elapsed = time.monotonic() - t0
            cpu = (cpu_seconds(gateway.pid) - cpu0) / elapsed
            api_cpu = (cpu_seconds(api_pid) - api0) / elapsed if api_pid and api0 is not None else None
            events = watch.snapshot()
            writes_in_window = [e for e in events[mark:] if e.type == "MODIFIED"]
            rss = rss_of(gateway.pid)
            metric1 = status_writes_metric(gateway)
            metric = {k: metric1.get(k, 0) - metric0.get(k, 0) for k in set(metric0) | set(metric1)}
        finally:
            watch.stop()

    obj = json.loads(largest)
    status = status_of(obj)
    listed = status.get("discoveredBackends") or []
    managed = obj["metadata"].get("managedFields") or []
    obj_bytes = len(largest)
    status_bytes = compact(status)
    managed_bytes = compact(managed)
    runtime_managed = compact([m for m in managed if m.get("manager") == RUNTIME_MANAGER])
    per_entry = compact(listed) / max(1, len(listed))
    states: dict[str, int] = {}
    for b in listed:
        states[b.get("status", "?")] = states.get(b.get("status", "?"), 0) + 1
    # What changed in each write of the window: only consecutiveFailures counters (besides the
    # timestamps), or more.
    only_failures, heartbeats, more = 0, 0, 0
    for e in writes_in_window:
        before = status_of(events[e.index - 1].obj) if e.index > 0 else {}
        after = status_of(e.obj)
        if stripped(before) == stripped(after):
            heartbeats += 1
        elif stripped(before, failures=True) == stripped(after, failures=True):
            only_failures += 1
        else:
            more += 1
    ok_size = obj_bytes < goal
    ok_list = len(listed) <= MAX_REPORTED_BACKENDS and status.get("backendCount") == backends

    print(f"### size: {backends} MCPServerEntry objects in the group ({dead} on closed loopback ports, {live} live vmcp-example-servers)\n")
    print("\n".join(machine_lines()))
    print(f"- runtime: healthCheckInterval {interval}s, healthCheckTimeout {probe_timeout}s, unhealthyThreshold {threshold}; "
          "entries created before the runtime starts")
    print(f"- creating the {backends} entries (sequential POSTs): {create_s:.1f} s; runtime start → CR backendCount {backends}: {count_s:.1f} s; "
          f"→ settled (no change but timestamps and consecutiveFailures for {interval * 2.5:.0f} s): {settle_s:.1f} s")
    print(f"- measured over {elapsed:.0f} s after settling (largest of GETs every 5 s): sizes, writes, CPU")
    print(f"- load average at end: {loadavg()}\n")
    print(table([
        ("whole object as served (GET, JSON bytes)", "< 256 KiB", f"{obj_bytes:,} B ({obj_bytes / 1024:.1f} KiB)", verdict(ok_size)),
        ("`.status` alone (compact JSON)", "—", f"{status_bytes:,} B ({status_bytes / 1024:.1f} KiB)", "—"),
        ("`metadata.managedFields` (all managers / runtime's)", "—", f"{managed_bytes:,} B / {runtime_managed:,} B", "—"),
        ("entries in `discoveredBackends`", f"≤ {MAX_REPORTED_BACKENDS}, backendCount {backends}",
         f"{len(listed)} ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))}); backendCount {status.get('backendCount')}; "
         f"≈ {per_entry:.0f} B per entry", verdict(ok_list)),
        ("runtime RSS (VmRSS) with these backends", "—", rss, "—"),
        ("runtime CPU", "—", f"{cpu * 100:.1f} % of one core", "—"),
        ("kube-apiserver CPU", "—", f"{api_cpu * 100:.1f} % of one core" if api_cpu is not None else "n/a", "—"),
        ("status writes (watch MODIFIED events) after settling", "—",
         f"{len(writes_in_window)} in {elapsed:.0f} s ({len(writes_in_window) * 60 / elapsed:.1f}/min): {only_failures} changed only "
         f"`consecutiveFailures`, {heartbeats} only timestamps, {more} more", "—"),
    ]))
    print(f"\n- message: {status.get('message')!r}")
    print(f"- runtime's vmcp_status_writes_total{{reporter=\"kubernetes\",outcome=\"ok\"}} over the window, by reason: {metric}")
    return ok_size and ok_list


# ---------------------------------------------------------------------------
# writes: a stable runtime


def writes(env: KubeEnv, minutes: float, lease_seconds: int, heartbeat: int, dead: int) -> bool:
    names = ["alpha", "beta", "gamma"]
    dead_names = [f"dead-{i}" for i in range(dead)]
    with Scenario(env, "writes") as sc:
        for name in names:
            sc.add_entry(name)
        for name in dead_names:
            sc.add_entry(name, url=f"http://127.0.0.1:{free_port()}/mcp")  # a closed port
        failure_handling: dict[str, Any] = {
            "healthCheckInterval": "10s",
            "healthCheckTimeout": "5s",
            "partialFailureMode": "best_effort",
        }
        if heartbeat != 30:
            failure_handling["statusReportingInterval"] = f"{heartbeat}s"
        watch = sc.watch_vmcp()
        vmcp_watch = lease_watch = None
        gateway = sc.runtime(failure_handling, lease_seconds=lease_seconds)
        try:
            if dead_names:
                watch.wait_for(
                    lambda o: status_of(o).get("phase") == "Degraded"
                    and all(backend_is(status_of(o), n, "ready") for n in names)
                    and all(backend_is(status_of(o), n, "unavailable") for n in dead_names),
                    120,
                    "phase Degraded with the dead entries unavailable",
                )
            else:
                wait_ready(watch, names, 60)
            time.sleep(5)  # past the first writes of startup (outside the window)
            vmcp_watch = sc.watch_vmcp()
            lease_watch = sc.watch_lease()
            before = sc.kube.get(sc.vmcp)
            metric0 = status_writes_metric(gateway)
            events0 = len(sc.kube.items(events_path(sc.namespace))) + len(sc.kube.items(events_v1_path(sc.namespace)))
            t0 = time.monotonic()
            end = t0 + minutes * 60
            while time.monotonic() < end:
                gateway.check_alive()
                time.sleep(min(5, max(0.0, end - time.monotonic())))
            elapsed = time.monotonic() - t0
            metric1 = status_writes_metric(gateway)
            after = sc.kube.get(sc.vmcp)
            events1 = len(sc.kube.items(events_path(sc.namespace))) + len(sc.kube.items(events_v1_path(sc.namespace)))
            vmcp_events = [e for e in vmcp_watch.snapshot() if e.at <= t0 + elapsed]
            lease_events = [e for e in lease_watch.snapshot() if e.at <= t0 + elapsed]
            holders = {(e.obj.get("spec") or {}).get("holderIdentity") for e in lease_events}
            gaps = vmcp_watch.gaps + lease_watch.gaps
            watch_errors = vmcp_watch.errors + lease_watch.errors
        finally:
            for w in (watch, vmcp_watch, lease_watch):
                if w is not None:
                    w.stop()

    # Classify each write to the object: by the runtime (status.timestamp or its managedFields
    # time moved) or by someone else; a heartbeat if nothing but timestamps changed.
    previous = before
    runtime_change, runtime_heartbeat, other = 0, 0, 0
    change_diffs: list[str] = []
    for e in vmcp_events:
        if e.type != "MODIFIED":
            other += 1
            continue
        prev_st, st = status_of(previous), status_of(e.obj)
        by_runtime = st.get("timestamp") != prev_st.get("timestamp") or runtime_status_time(e.obj) != runtime_status_time(previous)
        if not by_runtime:
            other += 1
        elif stripped(st, failures=True) == stripped(prev_st, failures=True):
            # Heartbeats carry the current timestamps and failure counters (docs/status.md).
            runtime_heartbeat += 1
        else:
            runtime_change += 1
            change_diffs.append(f"{st.get('phase')}: {st.get('message')!r}")
        previous = e.obj
    rvs = [e.rv for e in vmcp_events]
    rv_consistent = (not rvs and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]) or (
        rvs and rvs[-1] == after["metadata"]["resourceVersion"] and len(set(rvs)) == len(rvs)
    )
    metric_delta = {k: metric1.get(k, 0) - metric0.get(k, 0) for k in set(metric0) | set(metric1)}
    metric_delta = {k: v for k, v in metric_delta.items() if v}
    per_hour = 3600 / elapsed
    status_total = runtime_change + runtime_heartbeat
    allowed = math.floor(elapsed / heartbeat) + 1  # one heartbeat per interval, plus one at the window's edge
    ok = runtime_change == 0 and status_total <= allowed and other == 0
    renew_every = lease_seconds / 3
    expected_renewals = 3600 / renew_every

    dead_text = f" and {dead} entr{'y' if dead == 1 else 'ies'} on a closed port (permanently unavailable)" if dead else ""
    print(f"### writes: a stable runtime, 3 healthy backends{dead_text}, heartbeat {heartbeat} s, lease {lease_seconds} s, {minutes:g} min\n")
    print("\n".join(machine_lines()))
    print("- runtime: healthCheckInterval 10s, healthCheckTimeout 5s, unhealthyThreshold 3 (default); "
          f"statusReportingInterval {heartbeat}s; VMCP_STATUS_LEASE_SECONDS={lease_seconds} (renewal every {renew_every:g} s)")
    print("- counted: watch events on the VirtualMCPServer and on the Lease from the resourceVersion read at the window's start, "
          "for the whole window; a MODIFIED VirtualMCPServer event is the runtime's when `status.timestamp` or the managedFields "
          "time of `vmcp-runtime` moved, a heartbeat when nothing but `timestamp`/`lastHealthCheck`/`consecutiveFailures` changed")
    print(f"- cross-checks: resourceVersions distinct and the last one equals a GET's at the end: {'yes' if rv_consistent else 'NO'}; "
          f"the runtime's own counter vmcp_status_writes_total{{reporter=\"kubernetes\",outcome=\"ok\"}} over the window: {metric_delta or '{}'}; "
          f"Event objects created in the namespace: {events1 - events0}; watch gaps (410): {gaps}; watch errors: {len(watch_errors)}")
    print(f"- lease holders seen: {len(holders)}; load average at end: {loadavg()}\n")
    print(table([
        ("VirtualMCPServer status writes by the runtime", f"≤ {3600 // heartbeat}/h (heartbeats only), no change writes",
         f"{status_total} in {elapsed / 60:.1f} min = {status_total * per_hour:.0f}/h ({runtime_heartbeat} heartbeats, {runtime_change} change writes)",
         verdict(ok)),
        ("writes to the VirtualMCPServer by anything else", "0", str(other), "—"),
        ("Lease renewals (API writes too)", f"by design 3600/({lease_seconds}/3) = {expected_renewals:.0f}/h",
         f"{len(lease_events)} in {elapsed / 60:.1f} min = {len(lease_events) * per_hour:.0f}/h", "as designed" if abs(len(lease_events) * per_hour - expected_renewals) <= 0.1 * expected_renewals else "**off**"),
        ("all API writes of the runtime", "—", f"{(status_total + len(lease_events)) * per_hour:.0f}/h", "—"),
    ]))
    if change_diffs:
        kinds: dict[str, int] = {}
        for d in change_diffs:
            kinds[d] = kinds.get(d, 0) + 1
        print(f"\nchange writes seen while stable, by what changed: {kinds}")
    return ok


# ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("writes", help="API writes of a stable runtime")
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--lease-seconds", type=int, default=15)
    p.add_argument("--heartbeat", type=int, default=30, help="statusReportingInterval in seconds (default 30, the default)")
    p.add_argument("--dead", type=int, default=0, help="extra entries on closed ports (permanently unavailable)")
    p = sub.add_parser("death", help="backend SIGKILL -> CR shows it unavailable")
    p.add_argument("--rounds", type=int, default=5)
    p = sub.add_parser("size", help="object size with many entries in the group")
    p.add_argument("--backends", type=int, default=500)
    p.add_argument("--live", type=int, default=3)
    p.add_argument("--window", type=float, default=60, help="seconds measured after the status settled")
    args = parser.parse_args()
    # The SDK client warns on every call of a tool it has not listed itself; not our business here.
    logging.disable(logging.WARNING)
    global START_LOAD, START_DATE
    START_LOAD = loadavg()
    START_DATE = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    try:
        env = require_environment()
        if args.what == "writes":
            ok = writes(env, args.minutes, args.lease_seconds, args.heartbeat, args.dead)
        elif args.what == "death":
            ok = death(env, args.rounds)
        else:
            ok = size(env, args.backends, args.live, args.window)
    except BenchError as exc:
        print(f"kube_bench: {exc}", file=sys.stderr)
        return 2
    if not ok:
        print("\nkube_bench: a goal was missed (numbers above)", file=sys.stderr)
        return 1
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so that the scenario's cleanup runs


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
