"""The test peers themselves, without the gateway.

These pin down what the gateway tests take for granted: which tools each
peer has, that the HTTP peers listen on loopback only, that progress,
cancellation and list_changed work end to end with the official client, and
that SIGKILL/SIGSTOP do what the failure tests expect.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp_types as types
import pytest
import yaml
from mcp.client.stdio import StdioServerParameters

from harness import (
    EVERYTHING_CORE_TOOLS,
    EVERYTHING_DOCS,
    EVERYTHING_JS,
    EVERYTHING_PROMPTS,
    EVERYTHING_TEMPLATES,
    LOOPBACK,
    LOOPBACK_CJS,
    PYTHON,
    PY_BACKEND,
    PY_PROMPTS,
    PY_TEMPLATE,
    PY_TOOLS,
    REPO,
    Launcher,
    await_until,
    base_gateway_config,
    call_error,
    call_text,
    cmdline,
    connect,
    deep_merge,
    descendants,
    everything_stdio_config,
    listen_addresses,
    py_stdio_config,
    sse_target,
    tool_names,
    wait_until,
)

pytestmark = pytest.mark.anyio

PY_VARIANTS = [
    pytest.param("sse", False, "legacy", id="sse"),
    pytest.param("streamable-http", False, "legacy", id="streamable-http"),
    pytest.param("streamable-http", False, "auto", id="streamable-http-2026"),
    pytest.param("streamable-http", True, "legacy", id="stateless"),
]


def _target(backend: Any) -> Any:
    return sse_target(backend.url) if backend.transport == "sse" else backend.url


@pytest.mark.parametrize(("transport", "stateless", "mode"), PY_VARIANTS)
async def test_py_backend_catalogue_and_calls(peers: Launcher, transport: str, stateless: bool, mode: str) -> None:
    backend = peers.py("pyx", transport, stateless=stateless)
    assert listen_addresses(backend.port) == [LOOPBACK]

    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with connect(_target(backend), mode=mode) as client:
        assert client.server_info is not None and client.server_info.name == "pyx"
        assert await tool_names(client) == PY_TOOLS
        assert await call_text(client, "echo", {"text": "hello there"}) == "hello there"
        assert await call_text(client, "add", {"a": 2, "b": 40}) == "42"
        assert await call_text(client, "whoami") == "pyx"
        assert "always fails" in await call_error(client, "fail")

        result = await call_text(client, "slow", {"seconds": 0.5}, progress_callback=on_progress)
        assert result == "slept 0.5 on pyx"
        if stateless:
            assert progress == []  # JSON responses cannot carry notifications
        else:
            assert len(progress) >= 2 and progress == sorted(progress)

        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert uris == {"py://pyx/info", "py://shared/owner", "py://pyx/watched"}
        info = await client.read_resource("py://pyx/info")
        assert info.contents[0].text == f"backend pyx over {transport}"
        owner = await client.read_resource("py://shared/owner")
        assert owner.contents[0].text == "pyx"

        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == [PY_TEMPLATE]
        item = await client.read_resource("py://items/42")
        assert item.contents[0].text == "item 42 from pyx"

        prompts = (await client.list_prompts()).prompts
        assert {p.name for p in prompts} == PY_PROMPTS
        assert [a.name for a in prompts[0].arguments or []] == ["name"]
        greeting = await client.get_prompt("greet", {"name": "Ada"})
        assert greeting.messages[0].content.text == "Hello Ada, greetings from pyx."


async def test_py_backend_stdio() -> None:
    params = StdioServerParameters(command=PYTHON, args=[str(PY_BACKEND), "--transport", "stdio", "--name", "pystdio"])
    async with connect(params) as client:
        assert await tool_names(client) == PY_TOOLS
        assert await call_text(client, "whoami") == "pystdio"
        assert await call_text(client, "echo", {"text": "über"}) == "über"


def test_py_backend_stdio_prints_nothing_before_a_request() -> None:
    # stdin closed at once: the server must exit without writing to stdout.
    out = subprocess.run(
        [PYTHON, str(PY_BACKEND), "--transport", "stdio", "--name", "quiet"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    assert out.stdout == b""


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_py_backend_cancellation_is_counted(peers: Launcher, transport: str) -> None:
    """The gateway cancellation test reads these counters through `stats`."""
    backend = peers.py("pyc", transport)
    async with connect(_target(backend)) as client:
        started = anyio.Event()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            started.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.call_tool("slow", {"seconds": 30}, progress_callback=on_progress))
            with anyio.fail_after(10):
                await started.wait()
            tg.cancel_scope.cancel()

        async def cancelled() -> bool:
            stats = json.loads(await call_text(client, "stats"))
            return stats["cancelled"] == 1 and stats["in_flight"] == 0 and stats["completed"] == 0

        await await_until(cancelled, 5, what="the backend to see the cancellation")


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_py_backend_toggle_extra_announces_list_changed(peers: Launcher, transport: str) -> None:
    backend = peers.py("pyt", transport)
    changes: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changes.append(message)

    async with connect(_target(backend), message_handler=on_message) as client:
        await anyio.sleep(0.3)  # let the standalone GET stream attach (streamable HTTP)
        assert "extra" not in await tool_names(client)
        assert await call_text(client, "toggle_extra") == "added"
        await await_until(lambda: len(changes) >= 1, 5, what="notifications/tools/list_changed")
        assert "extra" in await tool_names(client)
        assert await call_text(client, "extra") == "extra from pyt"
        assert await call_text(client, "toggle_extra") == "removed"
        await await_until(lambda: len(changes) >= 2, 5, what="a second notifications/tools/list_changed")
        assert "extra" not in await tool_names(client)


async def test_py_backend_restarts_on_the_same_port(peers: Launcher) -> None:
    backend = peers.py("pyr", "streamable-http")
    async with connect(backend.url) as client:
        assert await call_text(client, "whoami") == "pyr"
    port = backend.port
    backend.kill_hard()
    assert not backend.alive()
    wait_until(lambda: not listen_addresses(port), 5, what="the port to be released")
    backend.start()
    backend.wait_listening()
    assert backend.port == port
    async with connect(backend.url) as client:
        assert await call_text(client, "whoami") == "pyr"


async def test_sigstop_makes_a_backend_hang(peers: Launcher) -> None:
    """What the gateway hang test relies on: a stopped backend accepts but never answers."""
    backend = peers.py("pyh", "streamable-http")
    async with connect(backend.url) as client:
        assert await call_text(client, "echo", {"text": "before"}) == "before"
        backend.signal(signal.SIGSTOP)
        try:
            begun = time.monotonic()
            with pytest.raises(Exception):  # noqa: B017 - a client read timeout, whatever its type
                with anyio.fail_after(5):
                    await client.call_tool("echo", {"text": "during"}, read_timeout_seconds=1.0)
            assert time.monotonic() - begun < 4
        finally:
            backend.signal(signal.SIGCONT)
        assert await call_text(client, "echo", {"text": "after"}) == "after"


async def test_everything_stdio() -> None:
    params = StdioServerParameters(command="node", args=[str(EVERYTHING_JS), "stdio"])
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with connect(params) as client:
        assert client.server_info is not None and client.server_info.name == "mcp-servers/everything"
        names = await tool_names(client)
        assert EVERYTHING_CORE_TOOLS <= names, EVERYTHING_CORE_TOOLS - names
        assert await call_text(client, "echo", {"message": "ping"}) == "Echo: ping"
        assert await call_text(client, "get-sum", {"a": 2, "b": 3}) == "The sum of 2 and 3 is 5."
        done = await call_text(
            client, "trigger-long-running-operation", {"duration": 0.6, "steps": 3}, progress_callback=on_progress
        )
        assert done.startswith("Long running operation completed")
        assert progress == [1, 2, 3]

        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {f"demo://resource/static/document/{d}" for d in EVERYTHING_DOCS} <= uris
        doc = await client.read_resource("demo://resource/static/document/features.md")
        assert "Everything Server" in doc.contents[0].text
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert templates == EVERYTHING_TEMPLATES
        dynamic = await client.read_resource("demo://resource/dynamic/text/7")
        assert dynamic.contents[0].text.startswith("Resource 7: This is a plaintext resource")

        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == EVERYTHING_PROMPTS
        question = await client.get_prompt("args-prompt", {"city": "Paris"})
        assert "Paris" in question.messages[0].content.text


async def test_everything_streamable_http_on_loopback_only(peers: Launcher) -> None:
    server = peers.everything_http()
    assert listen_addresses(server.port) == [LOOPBACK]
    async with connect(server.url) as client:
        assert EVERYTHING_CORE_TOOLS <= await tool_names(client)
        assert await call_text(client, "echo", {"message": "over http"}) == "Echo: over http"


def test_loopback_preload_rewrites_every_listen_form(tmp_path: Path) -> None:
    script = tmp_path / "listen.cjs"
    script.write_text(
        """
const net = require("node:net");
const http = require("node:http");
const forms = [
  (s, cb) => s.listen(0, cb),
  (s, cb) => s.listen("0", "0.0.0.0", cb),
  (s, cb) => s.listen({ port: 0, host: "::" }, cb),
  (s, cb) => s.listen(cb),
  (s, cb) => s.listen(0, "0.0.0.0", 10, cb),
];
(async () => {
  const out = [];
  for (const form of forms) {
    for (const make of [() => net.createServer(), () => http.createServer()]) {
      const s = make();
      await new Promise((resolve) => form(s, resolve));
      out.push(s.address().address);
      await new Promise((resolve) => s.close(resolve));
    }
  }
  console.log(JSON.stringify(out));
})();
"""
    )
    out = subprocess.run(["node", "--require", str(LOOPBACK_CJS), str(script)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)) == {LOOPBACK}


def test_descendants_finds_grandchildren(peers: Launcher) -> None:
    """The stdio-restart test finds the gateway's backend child this way."""
    marker = "e2e-descendant-marker"
    parent = peers.proc("tree", ["sh", "-c", f"sh -c 'sleep 30; : {marker}' & wait"])
    found = wait_until(
        lambda: [p for p in descendants(parent.pid) if marker in cmdline(p)], 5, what="the grandchild to appear"
    )
    assert len(found) == 1


def test_generated_configs_match_the_gateway_schema() -> None:
    """Every config shape the gateway tests write is valid for the committed JSON Schema."""
    schema_path = REPO / "schema" / "vmcp-config.schema.json"
    assert schema_path.is_file(), f"missing {schema_path}"
    schema = json.loads(schema_path.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)

    def http(name: str, transport: str) -> dict[str, Any]:
        path = "/sse" if transport == "sse" else "/mcp"
        return {"name": name, "transport": transport, "url": f"http://127.0.0.1:9000{path}"}

    standard = [everything_stdio_config(), http("pysse", "sse"), http("pyhttp", "streamable-http"), http("pyless", "streamable-http")]
    variants = {
        "standard": base_gateway_config(standard),
        "no pyhttp": base_gateway_config(standard[:2]),
        "stdio extras": deep_merge(
            base_gateway_config([*standard[:2], py_stdio_config("pyslow", startup_delay=4.0)]),
            {"operational": {"timeouts": {"perWorkload": {"pyslow": "60s"}}}},
        ),
        "long default timeout": deep_merge(base_gateway_config(standard), {"operational": {"timeouts": {"default": "60s"}}}),
        "request limit": deep_merge(base_gateway_config(standard), {"server": {"maxRequestBytes": 1 << 20}}),
    }
    for label, config in variants.items():
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(config)]
        assert not errors, f"{label}: {errors}"
    assert list(validator.iter_errors({**variants["standard"], "bogus": 1})), "schema should reject unknown fields"


def test_gateway_config_round_trips_as_yaml() -> None:
    config = base_gateway_config([everything_stdio_config(), {"name": "pyhttp", "transport": "streamable-http", "url": "http://127.0.0.1:1/mcp"}])
    text = yaml.safe_dump(config, sort_keys=False)
    assert yaml.safe_load(text) == config
    assert config["aggregation"]["conflictResolution"] == "prefix"
    assert config["operational"]["timeouts"]["perWorkload"] == {"pyhttp": "2s"}
    # perWorkload may only name backends that exist.
    assert "perWorkload" not in base_gateway_config([everything_stdio_config()])["operational"]["timeouts"]
    assert config["backends"][0]["args"][0].endswith("server-everything/dist/index.js")
    assert sys.executable  # the stdio python backends run under this interpreter
