"""Harness for vmcp's end-to-end tests: real backends, a real gateway, the official client.

Everything runs on 127.0.0.1 with ports picked at run time. Processes are
started in their own session and write to log files; conftest.py prints the
tail of every log when a test fails.

Knobs (environment):
  VMCP_BIN                     gateway binary (default target/release/vmcp)
  VMCP_EXAMPLE_SERVER_BIN      vmcp-example-server binary for the health tests
                               (default: next to the gateway binary)
  VMCP_E2E_MAX_REQUEST_BYTES   written to the config as server.maxRequestBytes;
                               unset leaves the gateway's default, and the
                               oversized-body test then sends 5 MiB
  VMCP_E2E_PAGE_SIZE           written as server.pageSize (default 7, so that
                               every list goes through nextCursor)
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import inspect
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import yaml
from mcp import Client
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO / "tests" / "peers"
EVERYTHING_JS = PEERS / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
LOOPBACK_CJS = PEERS / "loopback.cjs"
PY_BACKEND = PEERS / "py_backend.py"
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"

# Tools server-everything registers for every client. It also registers
# `simulate-research-query` (task-only) and, depending on the client's
# capabilities, roots/sampling/elicitation tools, so a gateway may show more.
EVERYTHING_CORE_TOOLS = frozenset(
    {
        "echo",
        "get-annotated-message",
        "get-env",
        "get-resource-links",
        "get-resource-reference",
        "get-structured-content",
        "get-sum",
        "get-tiny-image",
        "gzip-file-as-resource",
        "toggle-simulated-logging",
        "toggle-subscriber-updates",
        "trigger-long-running-operation",
    }
)
EVERYTHING_PROMPTS = frozenset({"simple-prompt", "args-prompt", "completable-prompt", "resource-prompt"})
EVERYTHING_DOCS = ("architecture.md", "extension.md", "features.md", "how-it-works.md", "instructions.md", "startup.md", "structure.md")
EVERYTHING_TEMPLATES = frozenset({"demo://resource/dynamic/text/{resourceId}", "demo://resource/dynamic/blob/{resourceId}"})
PY_TOOLS = frozenset(
    {"echo", "add", "whoami", "slow", "fail", "stats", "toggle_extra"}
    | {"ask_llm", "ask_user", "ask_url", "my_roots", "log_all", "touch", "upstream_state", "refuse_subscribe"}
)
PY_PROMPTS = frozenset({"greet"})
PY_TEMPLATE = "py://items/{item_id}"

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
# Small pages, so that every list the tests read goes through nextCursor.
PAGE_SIZE = int(os.environ.get("VMCP_E2E_PAGE_SIZE") or 7)
MAX_REQUEST_BYTES: int | None = (
    int(os.environ["VMCP_E2E_MAX_REQUEST_BYTES"]) if os.environ.get("VMCP_E2E_MAX_REQUEST_BYTES") else None
)


# ---------------------------------------------------------------------------
# small utilities


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


class ProcessExited(AssertionError):
    """A process the test depends on is gone; polling helpers stop at once."""


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ProcessExited:
            raise
        except Exception as exc:  # keep polling; report the last one
            last_exc = exc
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{suffix}")
        time.sleep(interval)


async def await_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Async twin of wait_until; `predicate` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                with anyio.fail_after(max(0.5, deadline - time.monotonic())):
                    value = await value
            if value:
                return value
        except ProcessExited:
            raise
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{suffix}")
        await anyio.sleep(interval)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tail(path: Path, lines: int = 60) -> str:
    try:
        data = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(data[-lines:])


def descendants(pid: int) -> list[int]:
    """Pids of all live descendants of `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def listen_addresses(port: int) -> list[str]:
    """Local addresses with a TCP socket in LISTEN state on `port` (from /proc/net/tcp{,6})."""
    found: list[str] = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            local, state = cols[1], cols[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(addr_hex)
            if width == 8:
                found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


# ---------------------------------------------------------------------------
# processes


class Proc:
    """A child process in its own session, output to a log file."""

    def __init__(self, label: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.label = label
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_dir / f"{label}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.label} already running"
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n===== start #{self.starts}: {' '.join(self.argv)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=REPO,
            start_new_session=True,
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.label} never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.alive(), f"{self.label} is not running"
        os.kill(self.pid, sig)

    def kill_hard(self) -> None:
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=10)

    def stop(self, grace: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
                self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Leftover grandchildren (e.g. a stdio backend the gateway did not reap).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def check_alive(self) -> None:
        if not self.alive():
            raise ProcessExited(
                f"{self.label} exited with {self.proc.returncode if self.proc else None}; log tail:\n{tail(self.log_path)}"
            )

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)


class PyBackend(Proc):
    """tests/peers/py_backend.py over an HTTP transport."""

    def __init__(self, name: str, transport: str, log_dir: Path, *, stateless: bool = False, port: int | None = None) -> None:
        self.name = name
        self.transport = transport
        self.stateless = stateless
        self.port = port or free_port()
        argv = [PYTHON, str(PY_BACKEND), "--transport", transport, "--port", str(self.port), "--name", name]
        if stateless:
            argv.append("--stateless")
        super().__init__(name, argv, log_dir)

    @property
    def url(self) -> str:
        path = "/sse" if self.transport == "sse" else "/mcp"
        return f"http://{LOOPBACK}:{self.port}{path}"

    def wait_listening(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            self.check_alive()
            return port_open(self.port)

        wait_until(ready, timeout, what=f"{self.name} to listen on {self.port}")

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "transport": self.transport, "url": self.url}


class EverythingHttp(Proc):
    """server-everything in streamableHttp mode, forced onto loopback."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(
            "everything-http",
            ["node", "--require", str(LOOPBACK_CJS), str(EVERYTHING_JS), "streamableHttp"],
            log_dir,
            env={"PORT": str(self.port)},
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/mcp"

    def wait_listening(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            self.check_alive()
            return port_open(self.port)

        wait_until(ready, timeout, what=f"server-everything to listen on {self.port}")


class ExampleHttp(Proc):
    """The project's own `vmcp-example-server` over streamable HTTP, with its
    latency control tools (`set_latency`, `set_call_latency`) on."""

    def __init__(self, binary: Path, name: str, log_dir: Path, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        super().__init__(
            name,
            [str(binary), "--name", name, "--latency-tools", "http", "--host", LOOPBACK, "--port", str(self.port)],
            log_dir,
            env={"RUST_LOG": "info"},
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/mcp"

    def wait_listening(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            self.check_alive()
            return port_open(self.port)

        wait_until(ready, timeout, what=f"{self.name} (vmcp-example-server) to listen on {self.port}")

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "transport": "streamable-http", "url": self.url}


def everything_stdio_config(name: str = "everything") -> dict[str, Any]:
    return {"name": name, "transport": "stdio", "command": "node", "args": [str(EVERYTHING_JS), "stdio"]}


def py_stdio_config(name: str, startup_delay: float = 0.0) -> dict[str, Any]:
    args = [str(PY_BACKEND), "--transport", "stdio", "--name", name]
    if startup_delay:
        args += ["--startup-delay", str(startup_delay)]
    return {"name": name, "transport": "stdio", "command": PYTHON, "args": args}


class Gateway(Proc):
    """`vmcp serve` on a fresh loopback port with a generated config file."""

    def __init__(
        self,
        binary: Path,
        config: dict[str, Any],
        log_dir: Path,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        label: str = "vmcp",
    ) -> None:
        self.port = free_port()
        self.config = config
        self.config_path = log_dir / f"{label}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        super().__init__(
            label,
            [
                str(binary),
                "serve",
                "--config",
                str(self.config_path),
                "--host",
                LOOPBACK,
                "--port",
                str(self.port),
                *(args or []),
            ],
            log_dir,
            env=env,
        )

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def get(self, path: str, timeout: float = 5.0) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", timeout=timeout)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            self.check_alive()
            try:
                return self.get("/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, what="vmcp /health to answer 200")

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            self.check_alive()
            try:
                return self.get("/readyz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, what="vmcp /readyz to answer 200")

    def status(self) -> dict[str, Any]:
        resp = self.get("/status")
        assert resp.status_code == 200, f"/status answered {resp.status_code}: {resp.text[:500]}"
        return resp.json()

    def backend_status(self, name: str) -> dict[str, Any] | None:
        for entry in self.status().get("discoveredBackends") or []:
            if entry.get("name") == name:
                return entry
        return None

    def stdio_children(self, marker: str) -> list[int]:
        """Pids of descendants whose command line contains `marker`."""
        return [pid for pid in descendants(self.pid) if marker in cmdline(pid)]


def base_gateway_config(backends: list[dict[str, Any]]) -> dict[str, Any]:
    """The config every test starts from (field names from GUIDE section 4, plus `server`)."""
    names = {b["name"] for b in backends}
    timeouts: dict[str, Any] = {"default": "5s"}
    if "pyhttp" in names:  # perWorkload may only name configured backends
        timeouts["perWorkload"] = {"pyhttp": "2s"}
    server: dict[str, Any] = {"pageSize": PAGE_SIZE}
    if MAX_REQUEST_BYTES is not None:
        server["maxRequestBytes"] = MAX_REQUEST_BYTES
    return {
        "name": "e2e",
        "backends": backends,
        "aggregation": {"conflictResolution": "prefix"},
        "operational": {
            "timeouts": timeouts,
            "failureHandling": {
                # Fast enough that recovery tests finish in seconds, slack enough
                # for a loaded 2-core machine.
                "healthCheckInterval": "2s",
                "healthCheckTimeout": "1500ms",
                "unhealthyThreshold": 2,
                "partialFailureMode": "best_effort",
                "circuitBreaker": {"enabled": True, "failureThreshold": 5, "timeout": "2s"},
            },
        },
        "server": server,
    }


# ---------------------------------------------------------------------------
# the standard stack


STANDARD_NAMES = ("everything", "pysse", "pyhttp", "pyless")
TRANSPORT_OF = {"everything": "stdio", "pysse": "sse", "pyhttp": "streamable-http", "pyless": "streamable-http"}


@dataclass
class Stack:
    gateway: Gateway
    backends: dict[str, PyBackend] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.gateway.url

    def port_strings(self) -> list[str]:
        """Strings that must never leak into client-visible errors."""
        ports = [str(b.port) for b in self.backends.values()]
        return [LOOPBACK, "localhost", *ports]



def default_vmcp_bin() -> Path:
    return Path(os.environ.get("VMCP_BIN") or REPO / "target" / "release" / "vmcp")


def default_example_server_bin() -> Path:
    """$VMCP_EXAMPLE_SERVER_BIN, else `vmcp-example-server` next to the gateway binary."""
    explicit = os.environ.get("VMCP_EXAMPLE_SERVER_BIN")
    return Path(explicit) if explicit else default_vmcp_bin().parent / "vmcp-example-server"


class Launcher:
    """Starts processes for one test (or one module), stops them all at the end."""

    def __init__(self, log_dir: Path, vmcp_bin: Path | None = None) -> None:
        self.log_dir = log_dir
        self.vmcp_bin = vmcp_bin
        self.procs: list[Proc] = []

    def _register(self, proc: Proc) -> None:
        labels = {p.label for p in self.procs}
        if proc.label in labels:
            n = 2
            while f"{proc.label}-{n}" in labels:
                n += 1
            proc.label = f"{proc.label}-{n}"
            proc.log_path = self.log_dir / f"{proc.label}.log"
        self.procs.append(proc)

    def py(
        self,
        name: str,
        transport: str,
        *,
        stateless: bool = False,
        port: int | None = None,
        start: bool = True,
        wait: bool = True,
    ) -> PyBackend:
        """A py_backend on loopback; with start=False it only gets a port (start it later)."""
        backend = PyBackend(name, transport, self.log_dir, stateless=stateless, port=port)
        self._register(backend)
        if start:
            backend.start()
            if wait:
                backend.wait_listening()
        return backend

    def example_http(self, name: str = "ex", *, port: int | None = None, wait: bool = True) -> ExampleHttp:
        """`vmcp-example-server --latency-tools http` on loopback (fails if the binary is missing)."""
        binary = default_example_server_bin()
        assert binary.is_file() and os.access(binary, os.X_OK), (
            f"example server binary not found: {binary} (cargo build --release --bin vmcp-example-server, "
            "or set VMCP_EXAMPLE_SERVER_BIN)"
        )
        server = ExampleHttp(binary, name, self.log_dir, port=port)
        self._register(server)
        server.start()
        if wait:
            server.wait_listening()
        return server

    def everything_http(self) -> EverythingHttp:
        server = EverythingHttp(self.log_dir)
        self._register(server)
        server.start()
        server.wait_listening()
        return server

    def proc(self, label: str, argv: list[str]) -> Proc:
        proc = Proc(label, argv, self.log_dir)
        self._register(proc)
        proc.start()
        return proc

    def gateway(
        self,
        config: dict[str, Any],
        *,
        ready: bool = True,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        label: str = "vmcp",
    ) -> Gateway:
        """`vmcp serve` with `config`; `args` are extra command-line arguments, `env` extra
        environment variables; `label` names its log and config files (several gateways)."""
        assert self.vmcp_bin is not None, "this launcher has no gateway binary"
        gateway = Gateway(self.vmcp_bin, config, self.log_dir, args=args, env=env, label=label)
        self._register(gateway)
        gateway.start()
        gateway.wait_healthy()
        if ready:
            gateway.wait_ready()
        return gateway

    def stack(
        self,
        *,
        names: tuple[str, ...] = STANDARD_NAMES,
        overrides: dict[str, Any] | None = None,
        extra_backends: list[dict[str, Any]] | None = None,
        down: tuple[str, ...] = (),
        ready: bool = True,
    ) -> Stack:
        """The standard backends and a gateway in front of them.

        `everything` is server-everything over stdio (spawned by the gateway);
        `pysse` is SSE, `pyhttp` streamable HTTP with sessions, `pyless`
        stateless streamable HTTP with JSON responses. Backends named in
        `down` get a port but are not started.
        """
        backends: dict[str, PyBackend] = {}
        for name in names:
            if name != "everything":
                backends[name] = self.py(
                    name, TRANSPORT_OF[name], stateless=name == "pyless", start=name not in down, wait=False
                )
        for name, backend in backends.items():
            if name not in down:
                backend.wait_listening()
        entries = [everything_stdio_config() if n == "everything" else backends[n].config() for n in names]
        entries.extend(extra_backends or [])
        config = base_gateway_config(entries)
        if overrides:
            config = deep_merge(config, overrides)
        return Stack(gateway=self.gateway(config, ready=ready), backends=backends)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()

    def logs(self, lines: int = 80) -> str:
        return "".join(f"\n----- {p.label} log ({p.log_path}) -----\n{p.log_tail(lines)}\n" for p in self.procs)


# ---------------------------------------------------------------------------
# client helpers


class Sampler:
    """A sampling callback that answers as model `name` and records prompts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prompts: list[str] = []

    async def __call__(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        content = params.messages[0].content
        text = content.text if isinstance(content, types.TextContent) else str(content)
        self.prompts.append(text)
        # Slow enough that two sessions' calls are in flight at once.
        await anyio.sleep(0.3)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"answer to {text}"),
            model=self.name,
        )



@contextlib.asynccontextmanager
async def connect(target: Any, *, mode: str = "legacy", **kwargs: Any) -> AsyncIterator[Client]:
    """The official client, in handshake mode unless told otherwise, without response caching."""
    kwargs.setdefault("read_timeout_seconds", 30.0)
    async with Client(target, mode=mode, cache=None, **kwargs) as client:
        yield client


def sse_target(url: str) -> Any:
    return sse_client(url)


async def call_text(client: Client, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """Call a tool that must succeed; return its text."""
    result = await client.call_tool(name, arguments or {}, **kwargs)
    assert not result.is_error, f"{name} failed: {text_of(result)}"
    return text_of(result)


async def call_error(client: Client, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """Call a tool that must fail; return the error text (JSON-RPC error or isError result)."""
    try:
        result = await client.call_tool(name, arguments or {}, **kwargs)
    except MCPError as exc:
        return f"{exc.code} {exc.message} {exc.data if exc.data is not None else ''}"
    assert result.is_error, f"expected {name} to fail, it returned {text_of(result)!r}"
    return text_of(result)


async def paged(list_fn: Callable[..., Any], attr: str, max_pages: int = 100) -> list[Any]:
    """Follow nextCursor through a list method; fail if it never ends."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = await list_fn(cursor=cursor)
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            return items
    raise AssertionError(f"{attr} listing still had a nextCursor after {max_pages} pages")


async def all_tools(client: Client) -> list[types.Tool]:
    return await paged(client.list_tools, "tools")


async def tool_names(client: Client) -> set[str]:
    return {t.name for t in await all_tools(client)}


async def prompt_names(client: Client) -> set[str]:
    return {p.name for p in await paged(client.list_prompts, "prompts")}


async def resource_uris(client: Client) -> list[str]:
    return [str(r.uri) for r in await paged(client.list_resources, "resources")]


async def template_uris(client: Client) -> list[str]:
    return [t.uri_template for t in await paged(client.list_resource_templates, "resource_templates")]


def assert_no_internals(text: str, stack: Stack) -> None:
    """Client-visible errors must not reveal backend addresses."""
    for needle in stack.port_strings():
        assert needle not in text, f"error text leaks {needle!r}: {text!r}"


def expected_py_tools(*backends: str) -> set[str]:
    return {f"{b}_{t}" for b in backends for t in PY_TOOLS}


# Tools server-everything may add beyond the core set, depending on the
# capabilities the gateway's client declares (and whether task-only tools are
# passed through).
EVERYTHING_OPTIONAL_TOOLS = frozenset(
    {
        "simulate-research-query",
        "get-roots-list",
        "trigger-elicitation-request",
        "trigger-url-elicitation",
        "trigger-sampling-request",
        "trigger-sampling-request-async",
        "trigger-elicitation-request-async",
    }
)


# ---------------------------------------------------------------------------
# raw HTTP

MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def jsonrpc_messages(resp: httpx.Response) -> list[dict[str, Any]]:
    """JSON-RPC messages in a response body, whether plain JSON or an SSE stream."""
    body = resp.text
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        out: list[dict[str, Any]] = []
        for event in body.split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in event.splitlines() if line.startswith("data:"))
            if data:
                parsed = json.loads(data)
                out.extend(parsed if isinstance(parsed, list) else [parsed])
        return out
    if not body.strip():
        return []
    parsed = json.loads(body)
    return parsed if isinstance(parsed, list) else [parsed]


def jsonrpc_error_code(resp: httpx.Response) -> int | None:
    for message in jsonrpc_messages(resp):
        if isinstance(message, dict) and isinstance(message.get("error"), dict):
            return message["error"].get("code")
    return None


def raw_session(http: httpx.Client, url: str) -> dict[str, str]:
    """Initialize a session by hand; return the headers later requests need."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "vmcp-e2e-raw", "version": "0"},
        },
    }
    resp = http.post(url, json=init, headers=MCP_HEADERS)
    assert resp.status_code == 200, f"initialize answered {resp.status_code}: {resp.text[:300]}"
    result = next(m for m in jsonrpc_messages(resp) if m.get("id") == 1)
    assert "result" in result, result
    headers = dict(MCP_HEADERS)
    session = resp.headers.get("mcp-session-id")
    if session:
        headers["Mcp-Session-Id"] = session
    headers["MCP-Protocol-Version"] = result["result"]["protocolVersion"]
    done = http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert done.status_code in (200, 202, 204), f"notifications/initialized answered {done.status_code}"
    return headers


def post_oversized(port: int, path: str, headers: dict[str, str], size: int, timeout: float = 30.0) -> int:
    """POST a `size`-byte JSON body over a raw socket; return the HTTP status.

    The server may answer (413) and close before the body is sent; a normal
    HTTP client would then fail with a broken pipe instead of showing the
    status, so this sends the body in chunks and stops as soon as a response
    starts arriving.
    """
    prefix = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"pyhttp_echo","arguments":{"text":"'
    suffix = b'"}}}'
    filler = size - len(prefix) - len(suffix)
    assert filler > 0
    head = f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Length: {size}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in ("host", "content-length"))
    head += "\r\n"
    chunk = b"x" * 65536
    deadline = time.monotonic() + timeout
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(head.encode() + prefix)
        remaining = filler
        try:
            while remaining > 0:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # the server answered early
                piece = chunk[: min(len(chunk), remaining)]
                sock.sendall(piece)
                remaining -= len(piece)
            if remaining == 0:
                sock.sendall(suffix)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while b"\r\n" not in data and time.monotonic() < deadline:
            try:
                piece = sock.recv(4096)
            except ConnectionResetError:
                break
            if not piece:
                break
            data += piece
    assert data.startswith(b"HTTP/1."), f"no HTTP response to an oversized body (got {data[:80]!r})"
    return int(data.split(b" ", 2)[1])


def assert_still_serving(stack: Stack) -> None:
    """The gateway survived: process alive, /health green, a real call routed."""
    stack.gateway.check_alive()
    assert stack.gateway.get("/health").status_code == 200
    with httpx.Client(timeout=15.0) as http:
        headers = raw_session(http, stack.url)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "pysse_echo", "arguments": {"text": "alive"}}}
        resp = http.post(stack.url, json=call, headers=headers)
        assert resp.status_code == 200, resp.text[:300]
        reply = next(m for m in jsonrpc_messages(resp) if m.get("id") == 2)
        assert "alive" in json.dumps(reply.get("result")), reply


# ---------------------------------------------------------------------------
# health, circuit breaker and /status (tests/e2e/test_health_*.py)

# Fast health settings: a probe every second, two failures in a row make a
# backend unavailable, probes slower than 200 ms count as slow, three failed
# calls open a circuit for two seconds.
HEALTH_INTERVAL = 1.0
HEALTH_TIMEOUT = 0.5
UNHEALTHY_THRESHOLD = 2
DEGRADED_LATENCY = 0.2
CIRCUIT_FAILURE_THRESHOLD = 3
CIRCUIT_OPEN_TIMEOUT = 2.0
FAST_FAILURE_HANDLING: dict[str, Any] = {
    "healthCheckInterval": "1s",
    "healthCheckTimeout": "500ms",
    "unhealthyThreshold": UNHEALTHY_THRESHOLD,
    "degradedLatencyThreshold": "200ms",
    "partialFailureMode": "best_effort",
    "circuitBreaker": {"enabled": True, "failureThreshold": CIRCUIT_FAILURE_THRESHOLD, "timeout": "2s"},
}


def fast_health_config(
    backends: list[dict[str, Any]],
    *,
    per_workload: dict[str, str] | None = None,
    failure_handling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The base config with FAST_FAILURE_HANDLING (plus `failure_handling`)
    and a 2 s default call timeout (`per_workload` overrides it per backend)."""
    config = base_gateway_config(backends)
    timeouts: dict[str, Any] = {"default": "2s"}
    if per_workload:
        timeouts["perWorkload"] = dict(per_workload)
    config["operational"]["timeouts"] = timeouts
    config["operational"]["failureHandling"] = deep_merge(FAST_FAILURE_HANDLING, failure_handling or {})
    return config


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def parse_time(text: str) -> float:
    """An RFC 3339 timestamp (up to nanoseconds, as the gateway writes them) as epoch seconds."""
    match = _RFC3339.fullmatch(text)
    assert match, f"not an RFC 3339 timestamp: {text!r}"
    offset = "+00:00" if match[3] == "Z" else match[3]
    whole = datetime.datetime.fromisoformat(match[1] + offset).timestamp()
    return whole + float("0." + (match[2] or "0"))


def phase_is(phase: str, *also: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], bool]:
    """Predicate on a status: its phase is `phase` and every `also` predicate holds."""
    return lambda status: status.get("phase") == phase and all(check(status) for check in also)


class ListChanges:
    """A client message handler counting the `notifications/tools/list_changed` it receives."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.count += 1


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in status.get("conditions") or [] if c.get("type") == type_]
    assert len(found) == 1, f"expected exactly one {type_} condition: {status.get('conditions')}"
    return found[0]


def backend_entry(status: dict[str, Any], name: str) -> dict[str, Any]:
    found = [b for b in status.get("discoveredBackends") or [] if b.get("name") == name]
    assert len(found) == 1, f"expected exactly one discoveredBackends entry {name}: {status.get('discoveredBackends')}"
    return found[0]


def find_backend(status: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The discoveredBackends entry `name`, or None when it is not listed."""
    return next((b for b in status.get("discoveredBackends") or [] if b.get("name") == name), None)


def backend_is(name: str, state: str, **extra: Any) -> Callable[[dict[str, Any]], bool]:
    """Predicate on a status: backend `name` has `status == state` (and the given other fields)."""

    def check(status: dict[str, Any]) -> bool:
        entry = find_backend(status, name)
        return (
            entry is not None
            and entry.get("status") == state
            and all(entry.get(key) == value for key, value in extra.items())
        )

    return check


def assert_sanitized(text: str, *needles: str) -> None:
    """A status or error message carries categories, not internals: no
    addresses, URLs, paths or the given needles (ports, pids...)."""
    for bad in (LOOPBACK, "localhost", "://", "/", *needles):
        assert bad not in text, f"message leaks {bad!r}: {text!r}"


async def get_status(gateway: Gateway) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        resp = await http.get(f"{gateway.base}/status")
    assert resp.status_code == 200, f"/status answered {resp.status_code}: {resp.text[:500]}"
    return resp.json()


async def wait_status(
    gateway: Gateway, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    """Poll /status (without blocking the event loop) until `predicate` holds; return that status."""
    seen: list[dict[str, Any]] = []

    async def probe() -> dict[str, Any] | None:
        gateway.check_alive()
        status = await get_status(gateway)
        seen[:] = [status]
        return status if predicate(status) else None

    try:
        return await await_until(probe, timeout, interval=0.05, what=what)
    except AssertionError as exc:
        last = json.dumps(seen[0], indent=1) if seen else "(none)"
        raise AssertionError(f"{exc}; last /status: {last}") from None


@dataclass
class StatusSample:
    index: int  # position in StatusWatch.samples
    at: float  # time.monotonic() when the answer arrived
    status: dict[str, Any]


class StatusWatch:
    """Polls /status in the background, keeping every answer, so a test can
    see short-lived states and check that a state never appeared."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.samples: list[StatusSample] = []

    async def _run(self, interval: float) -> None:
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                try:
                    resp = await http.get(f"{self.gateway.base}/status")
                    if resp.status_code == 200:
                        self.samples.append(StatusSample(len(self.samples), time.monotonic(), resp.json()))
                except httpx.HTTPError:
                    pass
                await anyio.sleep(interval)

    def mark(self) -> int:
        """An index for `wait_for(since=...)` and `since()`: samples from now on."""
        return len(self.samples)

    def since(self, mark: int) -> list[StatusSample]:
        return self.samples[mark:]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str, since: int = 0
    ) -> StatusSample:
        """The first sample at or after `since` for which `predicate` holds."""
        deadline = time.monotonic() + timeout
        index = since
        while True:
            while index < len(self.samples):
                if predicate(self.samples[index].status):
                    return self.samples[index]
                index += 1
            if time.monotonic() >= deadline:
                last = json.dumps(self.samples[-1].status, indent=1) if self.samples else "(none)"
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last /status: {last}")
            self.gateway.check_alive()
            await anyio.sleep(0.02)


@contextlib.asynccontextmanager
async def watch_status(gateway: Gateway, interval: float = 0.05) -> AsyncIterator[StatusWatch]:
    watch = StatusWatch(gateway)
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch._run, interval)
        try:
            yield watch
        finally:
            tg.cancel_scope.cancel()


async def next_probe(gateway: Gateway, backend: str, after: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """The first status whose `lastHealthCheck` of `backend` is later than in `after`."""
    before = parse_time(backend_entry(after, backend)["lastHealthCheck"])

    def probed(status: dict[str, Any]) -> bool:
        checked = backend_entry(status, backend).get("lastHealthCheck")
        return checked is not None and parse_time(checked) > before

    return await wait_status(gateway, probed, timeout, f"a new health check of {backend}")


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of the Prometheus sample `name` whose labels include `labels` (0 if absent)."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample_name, _, label_text = head.partition("{")
        if sample_name != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0
