"""Catalogue merging and routing through the gateway (read-only; one shared stack).

Stack: `everything` (server-everything, stdio), `pysse` (SSE), `pyhttp`
(streamable HTTP), `pyless` (stateless streamable HTTP), conflictResolution
`prefix` with the default format `{workload}_`.
"""

from __future__ import annotations

import uuid

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError

from harness import (
    EVERYTHING_CORE_TOOLS,
    EVERYTHING_DOCS,
    EVERYTHING_OPTIONAL_TOOLS,
    EVERYTHING_PROMPTS,
    EVERYTHING_TEMPLATES,
    PAGE_SIZE,
    PY_TEMPLATE,
    STANDARD_NAMES,
    TRANSPORT_OF,
    Stack,
    all_tools,
    await_until,
    call_error,
    call_text,
    connect,
    expected_py_tools,
    paged,
    prompt_names,
    resource_uris,
    template_uris,
    tool_names,
    wait_until,
)

pytestmark = pytest.mark.anyio

PY_NAMES = ("pysse", "pyhttp", "pyless")


async def test_tools_from_every_backend_are_merged_with_prefixes(shared_stack: Stack) -> None:
    async with connect(shared_stack.url) as client:
        tools = await all_tools(client)
        names = [t.name for t in tools]
        assert len(names) == len(set(names)), "a tool is listed twice"

        python_side = {n for n in names if not n.startswith("everything_")}
        assert python_side == expected_py_tools(*PY_NAMES)

        everything_side = {n.removeprefix("everything_") for n in names if n.startswith("everything_")}
        assert EVERYTHING_CORE_TOOLS <= everything_side, EVERYTHING_CORE_TOOLS - everything_side
        assert everything_side <= EVERYTHING_CORE_TOOLS | EVERYTHING_OPTIONAL_TOOLS

        # Schemas survive the renaming.
        by_name = {t.name: t for t in tools}
        assert set(by_name["pyhttp_add"].input_schema["properties"]) == {"a", "b"}
        assert set(by_name["pysse_echo"].input_schema["properties"]) == {"text"}
        assert "message" in by_name["everything_echo"].input_schema["properties"]
        assert by_name["everything_get-sum"].description == "Returns the sum of two numbers"

        # Each renamed tool says where it comes from.
        meta = by_name["pyhttp_add"].meta or {}
        assert (meta.get("vmcp/backend"), meta.get("vmcp/originalName")) == ("pyhttp", "add"), meta
        prompts = await paged(client.list_prompts, "prompts")
        greet = next(p for p in prompts if p.name == "pysse_greet")
        assert (greet.meta or {}).get("vmcp/originalName") == "greet", greet.meta


async def test_tool_calls_are_routed_to_their_backend(shared_stack: Stack) -> None:
    async with connect(shared_stack.url) as client:
        for backend in PY_NAMES:
            token = f"{backend}-{uuid.uuid4().hex[:8]}"
            assert await call_text(client, f"{backend}_echo", {"text": token}) == token
            assert await call_text(client, f"{backend}_whoami") == backend
            assert await call_text(client, f"{backend}_add", {"a": 40, "b": len(backend)}) == str(40 + len(backend))
        assert await call_text(client, "everything_echo", {"message": "to-everything"}) == "Echo: to-everything"
        assert await call_text(client, "everything_get-sum", {"a": 2, "b": 3}) == "The sum of 2 and 3 is 5."


async def test_concurrent_calls_to_different_backends_do_not_cross(shared_stack: Stack) -> None:
    results: dict[str, str] = {}

    async with connect(shared_stack.url) as client:

        async def call(tool: str, args: dict[str, object], key: str) -> None:
            results[key] = await call_text(client, tool, args)

        async with anyio.create_task_group() as tg:
            for i in range(5):
                for backend in PY_NAMES:
                    tg.start_soon(call, f"{backend}_echo", {"text": f"{backend}#{i}"}, f"{backend}#{i}")
                    tg.start_soon(call, f"{backend}_whoami", {}, f"who-{backend}#{i}")
                tg.start_soon(call, "everything_echo", {"message": f"ev#{i}"}, f"ev#{i}")

    for i in range(5):
        for backend in PY_NAMES:
            assert results[f"{backend}#{i}"] == f"{backend}#{i}"
            assert results[f"who-{backend}#{i}"] == backend
        assert results[f"ev#{i}"] == f"Echo: ev#{i}"


async def test_backend_tool_errors_reach_the_client(shared_stack: Stack) -> None:
    async with connect(shared_stack.url) as client:
        for backend in PY_NAMES:
            assert "always fails" in await call_error(client, f"{backend}_fail")
        # The session is still fine afterwards.
        assert await call_text(client, "pyhttp_whoami") == "pyhttp"


async def test_resources_are_merged_and_read_from_their_backend(shared_stack: Stack) -> None:
    async with connect(shared_stack.url) as client:
        uris = await resource_uris(client)
        assert len(uris) == len(set(uris)), f"a resource URI is listed twice: {sorted(uris)}"
        for backend in PY_NAMES:
            assert f"py://{backend}/info" in uris
        assert "py://shared/owner" in uris
        for doc in EVERYTHING_DOCS:
            assert f"demo://resource/static/document/{doc}" in uris

        for backend in PY_NAMES:
            info = await client.read_resource(f"py://{backend}/info")
            assert info.contents[0].text == f"backend {backend} over {TRANSPORT_OF[backend]}"
        features = await client.read_resource("demo://resource/static/document/features.md")
        assert "Everything Server" in features.contents[0].text

        # Same URI on pysse, pyhttp and pyless: the first backend in config order wins.
        owner = await client.read_resource("py://shared/owner")
        assert owner.contents[0].text == "pysse"

        with pytest.raises(MCPError):
            await client.read_resource("py://nobody/has-this")


async def test_resource_templates_are_merged_and_reads_routed(shared_stack: Stack) -> None:
    async with connect(shared_stack.url) as client:
        templates = await template_uris(client)
        assert EVERYTHING_TEMPLATES <= set(templates)
        assert templates.count(PY_TEMPLATE) == 1, f"{PY_TEMPLATE} should be listed once: {templates}"

        dynamic = await client.read_resource("demo://resource/dynamic/text/3")
        assert dynamic.contents[0].text.startswith("Resource 3: This is a plaintext resource")

        item = await client.read_resource("py://items/9")
        # Template on all three Python backends: the first in config order wins.
        assert item.contents[0].text == "item 9 from pysse"


async def test_prompts_are_merged_with_prefixes_and_routed(shared_stack: Stack) -> None:
    async with connect(shared_stack.url) as client:
        names = await prompt_names(client)
        expected = {f"{b}_greet" for b in PY_NAMES} | {f"everything_{p}" for p in EVERYTHING_PROMPTS}
        assert names == expected

        for backend in PY_NAMES:
            got = await client.get_prompt(f"{backend}_greet", {"name": "Ada"})
            assert got.messages[0].content.text == f"Hello Ada, greetings from {backend}."
        question = await client.get_prompt("everything_args-prompt", {"city": "Paris"})
        assert "Paris" in question.messages[0].content.text
        simple = await client.get_prompt("everything_simple-prompt")
        assert simple.messages and simple.messages[0].content.text


async def test_following_next_cursor_lists_everything_exactly_once(shared_stack: Stack) -> None:
    async with connect(shared_stack.url) as client:
        pages: list[int] = []
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(100):
            page = await client.list_tools(cursor=cursor)
            pages.append(len(page.tools))
            seen.extend(t.name for t in page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        else:
            pytest.fail("tools/list never stopped returning nextCursor")
        duplicates = {n for n in seen if seen.count(n) > 1}
        assert not duplicates, f"listed more than once across pages {pages}: {duplicates}"
        # server.pageSize is set in the config: ~40 tools cannot fit one page.
        assert len(pages) > 1, f"expected several pages of at most {PAGE_SIZE}, got {pages}"
        assert max(pages) <= PAGE_SIZE, f"a page is larger than server.pageSize={PAGE_SIZE}: {pages}"
        assert expected_py_tools(*PY_NAMES) <= set(seen)
        assert {f"everything_{t}" for t in EVERYTHING_CORE_TOOLS} <= set(seen)
        assert all(n.split("_", 1)[0] in STANDARD_NAMES for n in seen)

        # The other paginated lists terminate and do not repeat either.
        for method, attr, key in (
            (client.list_prompts, "prompts", lambda p: p.name),
            (client.list_resources, "resources", lambda r: str(r.uri)),
            (client.list_resource_templates, "resource_templates", lambda t: t.uri_template),
        ):
            keys = [key(item) for item in await paged(method, attr)]
            assert len(keys) == len(set(keys)), f"{attr}: listed more than once: {sorted(keys)}"


async def test_the_default_client_mode_negotiates_with_the_gateway(shared_stack: Stack) -> None:
    """The SDK's default `auto` mode probes server/discover first: the gateway
    answers it, so the client speaks 2026-07-28 (no handshake, no session)."""
    async with connect(shared_stack.url, mode="auto") as client:
        assert client.protocol_version == "2026-07-28"
        assert await call_text(client, "pysse_whoami") == "pysse"
        assert "pyhttp_echo" in await tool_names(client)


def test_health_readyz_and_status_shape(shared_stack: Stack) -> None:
    gateway = shared_stack.gateway
    assert gateway.get("/health").status_code == 200
    assert gateway.get("/readyz").status_code == 200

    resp = gateway.get("/status")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    status = resp.json()
    backends = status["discoveredBackends"]
    assert isinstance(backends, list)
    assert {b["name"] for b in backends} == set(STANDARD_NAMES)
    assert status["backendCount"] == len(STANDARD_NAMES)
    assert status["phase"] in ("Pending", "Ready", "Degraded", "Failed"), status
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "BackendsDiscovered", "Degraded"}
    for entry in backends:
        assert entry["status"] in ("ready", "degraded", "unavailable", "unknown", "unauthenticated"), entry
        assert entry["circuitBreakerState"] in ("closed", "open", "half-open"), entry
        if TRANSPORT_OF[entry["name"]] == "stdio":
            assert entry["url"].startswith("stdio:"), entry
        else:
            assert entry["url"].startswith("http://127.0.0.1:"), entry

    def all_ready() -> bool:
        status = gateway.status()
        return status["phase"] == "Ready" and all(b["status"] == "ready" for b in status["discoveredBackends"])

    wait_until(all_ready, 30, interval=0.5, what="phase Ready with every backend ready in /status")


def test_unknown_paths_are_404_not_5xx(shared_stack: Stack) -> None:
    resp = httpx.get(f"{shared_stack.gateway.base}/definitely-not-here", timeout=5)
    assert resp.status_code == 404


async def test_two_sessions_are_independent(shared_stack: Stack) -> None:
    async with connect(shared_stack.url) as first, connect(shared_stack.url) as second:
        assert await call_text(first, "pyhttp_echo", {"text": "one"}) == "one"
        assert await call_text(second, "pyhttp_echo", {"text": "two"}) == "two"
    # Closing both did not take the gateway's backend connections down.
    async with connect(shared_stack.url) as third:
        await await_until(lambda: call_text(third, "pyhttp_whoami"), 10, what="a call after sessions closed")
