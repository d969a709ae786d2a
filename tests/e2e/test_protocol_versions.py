"""Protocol revision 2026-07-28 (stateless: no handshake, no session,
per-request `_meta`, input asked for in rounds) next to the handshake
revisions on one gateway: a 2026-07-28 client and a 2025-11-25 client see
the same catalogue and the same call results, and what a backend asks
mid-call (sampling, elicitation, roots) reaches a 2026-07-28 client as
`inputRequests`, answered on its retry."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import anyio
import mcp_types as types
import pytest

from mcp.client.subscriptions import SubscriptionLost
from mcp.shared.exceptions import MCPError

from harness import Launcher, Sampler, await_until, call_error, call_text, connect, paged, text_of

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"


async def view(client: Any) -> dict[str, Any]:
    """What a client sees of the gateway: lists and a few call results."""
    return {
        "tools": sorted(t.name for t in await paged(client.list_tools, "tools")),
        "prompts": sorted(p.name for p in await paged(client.list_prompts, "prompts")),
        "resources": sorted(str(r.uri) for r in await paged(client.list_resources, "resources")),
        "echo": await call_text(client, "pyhttp_echo", {"text": "same for all"}),
        "add": await call_text(client, "pyhttp_add", {"a": 2, "b": 40}),
    }


async def test_a_2026_client_and_a_2025_client_see_the_same_gateway(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    async with connect(stack.url, mode=MODERN) as modern, connect(stack.url) as legacy:
        assert modern.protocol_version == MODERN
        assert legacy.protocol_version == "2025-11-25"
        seen_modern, seen_legacy = await view(modern), await view(legacy)
        assert seen_modern == seen_legacy
        assert "pyhttp_echo" in seen_modern["tools"] and seen_modern["echo"] == "same for all"
        # Offered only where the gateway delivers it: backend log messages and
        # resource updates reach sessions (the handshake revisions) only.
    # A client in `auto` mode asks server/discover (a pinned one does not).
    async with connect(stack.url, mode="auto") as discovered, connect(stack.url) as legacy:
        assert discovered.protocol_version == MODERN
        # Offered only where the gateway delivers it: backend log messages
        # reach sessions (the handshake revisions) only.
        modern_caps, legacy_caps = discovered.server_capabilities, legacy.server_capabilities
        assert legacy_caps.logging is not None and legacy_caps.resources.subscribe is True
        assert modern_caps.logging is None and modern_caps.resources.subscribe is True
        assert modern_caps.tools.list_changed is True and modern_caps.resources.list_changed is True
        assert modern_caps.prompts is not None


async def test_sampling_reaches_a_2026_client_in_rounds(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    sampler = Sampler("model-modern")
    async with connect(stack.url, mode=MODERN, sampling_callback=sampler) as client:
        answer = await call_text(client, "pyhttp_ask_llm", {"prompt": "stateless question"})
    assert answer == "model-modern: answer to stateless question"
    assert sampler.prompts == ["stateless question"]


async def test_roots_reach_a_2026_client(launcher: Launcher) -> None:
    """roots/list is sent the SDK's way (on the standalone stream): it belongs to the one call in flight."""
    stack = launcher.stack(names=("pyhttp",))

    async def roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/modern", name="m")])

    async with connect(stack.url, mode=MODERN, list_roots_callback=roots) as client:
        assert json.loads(await call_text(client, "pyhttp_my_roots")) == ["file:///work/modern"]


async def test_a_2026_client_without_the_capability_is_never_asked(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    async with connect(stack.url, mode=MODERN) as plain:
        assert "does not support sampling" in await call_error(plain, "pyhttp_ask_llm", {"prompt": "unseen"})
        assert "does not support elicitation" in await call_error(plain, "pyhttp_ask_user", {"question": "unseen"})
        # The gateway holds nothing for a call that needed no rounds.
        assert await call_text(plain, "pyhttp_whoami") == "pyhttp"


async def test_a_forged_reused_or_misdirected_request_state_is_refused(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    sampler = Sampler("model-manual")
    async with connect(stack.url, mode=MODERN, sampling_callback=sampler) as client:
        session = client.session

        async def refused(name: str, arguments: dict[str, Any], state: str, answers: Any = None) -> str:
            with pytest.raises(MCPError) as caught:
                await session.call_tool(
                    name, arguments, input_responses=answers, request_state=state, allow_input_required=True
                )
            return caught.value.message

        for forged in ("vmcp1.00000000000000000000000000000000", "vmcp1.not-even-hex"):
            assert "requestState is unknown or has expired" in await refused("pyhttp_echo", {"text": "x"}, forged)

        # Drive the rounds by hand: the gateway asks once, under a fresh state.
        arguments = {"prompt": "by hand"}
        first = await session.call_tool("pyhttp_ask_llm", arguments, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult), first
        assert first.request_state and first.request_state.startswith("vmcp1.")
        [(key, request)] = list((first.input_requests or {}).items())
        assert request.method == "sampling/createMessage"
        # The state names this call only.
        assert "issued for a different request" in await refused("pyhttp_echo", {"text": "x"}, first.request_state)
        answer = {key: await sampler(None, request.params)}
        done = await session.call_tool(
            "pyhttp_ask_llm", arguments, input_responses=answer, request_state=first.request_state,
            allow_input_required=True,
        )
        assert isinstance(done, types.CallToolResult) and text_of(done) == "model-manual: answer to by hand"
        # Used once, gone.
        assert "unknown or has expired" in await refused("pyhttp_ask_llm", arguments, first.request_state, answer)


async def test_a_2026_client_hears_changes_on_subscriptions_listen(launcher: Launcher) -> None:
    """2026-07-28 has no standing stream: the client opens `subscriptions/listen`
    and the gateway sends catalogue changes and resource updates on it; the
    stream holds its resource subscriptions upstream while it lasts."""
    stack = launcher.stack(names=("pyhttp",))
    watched, unknown = "py://pyhttp/watched", "py://nowhere/nothing"
    async with connect(stack.url, mode=MODERN) as client:
        async with client.listen(tools_list_changed=True, resource_subscriptions=[watched, unknown]) as sub:
            # What nobody can deliver is left out of the acknowledgment.
            assert sub.honored.tools_list_changed is True
            assert sub.honored.resource_subscriptions == [watched]
            assert (await upstream_state(client))["subscribed"] == [watched]

            async def next_event() -> Any:
                with anyio.fail_after(10):
                    return await sub.__anext__()

            assert await call_text(client, "pyhttp_touch") == "touched"
            event = await next_event()
            assert type(event).__name__ == "ResourceUpdated" and event.uri == watched, event
            assert await call_text(client, "pyhttp_toggle_extra") == "added"
            assert type(await next_event()).__name__ == "ToolsListChanged"
            assert "pyhttp_extra" in {t.name for t in await paged(client.list_tools, "tools")}
            assert await call_text(client, "pyhttp_toggle_extra") == "removed"
            assert type(await next_event()).__name__ == "ToolsListChanged"

        async def released() -> bool:
            return (await upstream_state(client))["subscribed"] == []

        # The stream ended: its subscription is released upstream.
        await await_until(released, timeout=10, what="upstream unsubscribe after the listen stream ended")


async def upstream_state(client: Any) -> dict[str, Any]:
    return json.loads(await call_text(client, "pyhttp_upstream_state"))


async def test_progress_reaches_a_2026_client(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with connect(stack.url, mode=MODERN) as client:
        assert await call_text(client, "pyhttp_slow", {"seconds": 0.6}, progress_callback=on_progress) == "slept 0.6 on pyhttp"
    assert len(progress) >= 2 and progress == sorted(progress), progress


async def test_sampling_from_a_stdio_backend_reaches_a_2026_client(launcher: Launcher) -> None:
    """stdio has no per-request streams: the request belongs to the one call in flight."""
    stack = launcher.stack(names=("everything",))
    sampler = Sampler("model-stdio")
    async with connect(stack.url, mode=MODERN, sampling_callback=sampler) as client:
        answer = await call_text(client, "everything_trigger-sampling-request", {"prompt": "hello modern"})
    assert sampler.prompts == ["Resource trigger-sampling-request context: hello modern"]
    assert '"model": "model-stdio"' in answer, answer


async def test_progress_after_a_round_reaches_the_retry(launcher: Launcher) -> None:
    """The call asks first, then reports progress: that progress belongs to the
    client's retry (the exchange that is open), not to the first exchange."""
    stack = launcher.stack(names=("pyhttp",))
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with connect(stack.url, mode=MODERN, sampling_callback=Sampler("model-p")) as client:
        answer = await call_text(
            client, "pyhttp_ask_llm", {"prompt": "then work", "then_steps": 3}, progress_callback=on_progress
        )
    assert answer == "model-p: answer to then work"
    assert progress[:2] == [1, 2] and progress == sorted(progress), progress


async def test_shutdown_ends_listen_streams_and_parked_calls_promptly(launcher: Launcher) -> None:
    """SIGTERM with a 2026-07-28 listen stream open and a call parked for input:
    the stream ends gracefully, and the gateway exits well within its drain time."""
    stack = launcher.stack(names=("pyhttp",))
    gateway = stack.gateway
    ended: list[str] = []
    async with connect(stack.url, mode=MODERN, sampling_callback=Sampler("never-used")) as client:
        parked = await client.session.call_tool("pyhttp_ask_llm", {"prompt": "left waiting"}, allow_input_required=True)
        assert isinstance(parked, types.InputRequiredResult)
        async with client.listen(tools_list_changed=True) as sub:
            gateway.signal(signal.SIGTERM)
            terminated = time.monotonic()
            with anyio.fail_after(15):
                try:
                    async for _ in sub:
                        pass
                    ended.append("closed")
                except SubscriptionLost:
                    ended.append("lost")
    assert ended, "the listen stream did not end"
    assert gateway.proc is not None
    code = await anyio.to_thread.run_sync(lambda: gateway.proc.wait(timeout=30))
    assert code == 0, f"vmcp exited with {code}"
    assert time.monotonic() - terminated < 20
