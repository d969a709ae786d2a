"""What backends send towards clients, through the gateway, with the official
Python client downstream and Python SDK backends upstream: sampling,
elicitation and roots reach the session whose call caused them (and only
clients that declared the capability); log messages respect each session's
level; resource updates reach subscribed sessions only, survive a backend
restart and end with the session."""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from harness import Launcher, Sampler, await_until, call_error, call_text, connect

pytestmark = pytest.mark.anyio


class Notifications:
    """Records log messages and resource updates one session receives."""

    def __init__(self) -> None:
        self.logs: list[types.LoggingMessageNotificationParams] = []
        self.updated: list[str] = []

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    async def messages(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.updated.append(str(message.params.uri))

    def log_data(self) -> list[str]:
        return sorted(str(p.data) for p in self.logs)


async def upstream_state(client: Any, backend: str) -> dict[str, Any]:
    return json.loads(await call_text(client, f"{backend}_upstream_state"))


@pytest.mark.parametrize(
    "alice_mode",
    [pytest.param("legacy", id="two-sessions"), pytest.param("2026-07-28", id="stateless-and-session")],
)
async def test_sampling_reaches_only_the_session_that_caused_it(launcher: Launcher, alice_mode: str) -> None:
    """Two clients sample at once; with `stateless-and-session` one of them
    speaks 2026-07-28 and answers in rounds."""
    stack = launcher.stack(names=("pyhttp",))
    alice, bob = Sampler("model-alice"), Sampler("model-bob")
    results: dict[str, str] = {}
    async with (
        connect(stack.url, mode=alice_mode, sampling_callback=alice) as a,
        connect(stack.url, sampling_callback=bob) as b,
    ):

        async def ask(client: Any, who: str) -> None:
            results[who] = await call_text(client, "pyhttp_ask_llm", {"prompt": f"question from {who}"})

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, a, "alice")
            tg.start_soon(ask, b, "bob")
    assert results == {
        "alice": "model-alice: answer to question from alice",
        "bob": "model-bob: answer to question from bob",
    }
    assert alice.prompts == ["question from alice"]
    assert bob.prompts == ["question from bob"]


async def test_a_client_without_the_capability_never_receives_the_request(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    bystander = Sampler("model-bystander")
    async with connect(stack.url, sampling_callback=bystander) as other, connect(stack.url) as plain:
        error = await call_error(plain, "pyhttp_ask_llm", {"prompt": "nobody should see this"})
        assert "does not support sampling" in error, error
        # The session that can sample was connected the whole time and got nothing.
        assert await call_text(other, "pyhttp_whoami") == "pyhttp"
    assert bystander.prompts == []


async def test_sampling_over_a_transport_without_request_streams(launcher: Launcher) -> None:
    # Legacy HTTP+SSE has one stream for everything: with one call in flight
    # the request can only belong to it.
    stack = launcher.stack(names=("pysse",))
    sampler = Sampler("model-sse")
    async with connect(stack.url, sampling_callback=sampler) as client:
        assert await call_text(client, "pysse_ask_llm", {"prompt": "via sse"}) == "model-sse: answer to via sse"
    assert sampler.prompts == ["via sse"]


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_elicitation_answers_and_refusals_travel_back(launcher: Launcher, mode: str) -> None:
    """In a session, or answered in rounds by a 2026-07-28 client."""
    stack = launcher.stack(names=("pyhttp",))
    asked: list[str] = []

    async def accept(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        if "decline" in params.message:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"answer": "forty-two"})

    async with connect(stack.url, mode=mode, elicitation_callback=accept) as client:
        assert await call_text(client, "pyhttp_ask_user", {"question": "what is it?"}) == "accept: forty-two"
        assert await call_text(client, "pyhttp_ask_user", {"question": "please decline"}) == "decline: "
    assert asked == ["what is it?", "please decline"]

    async with connect(stack.url, mode=mode) as plain:
        error = await call_error(plain, "pyhttp_ask_user", {"question": "unseen"})
        assert "does not support elicitation" in error, error


async def test_a_url_elicitation_and_its_completion_reach_the_client_that_was_asked(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    urls: list[str] = []
    completed: list[str] = []
    completed_elsewhere: list[str] = []

    async def go(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        urls.append(params.url)
        return types.ElicitResult(action="accept")

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ElicitCompleteNotification):
            completed.append(message.params.elicitation_id)

    async def elsewhere(message: Any) -> None:
        if isinstance(message, types.ElicitCompleteNotification):
            completed_elsewhere.append(message.params.elicitation_id)

    async with (
        connect(stack.url, elicitation_callback=go, message_handler=on_message) as client,
        connect(stack.url, elicitation_callback=go, message_handler=elsewhere) as bystander,
    ):
        answer = await call_text(client, "pyhttp_ask_url", {"url": "https://example.com/authorize"})
        assert answer == "accept: pyhttp-1", answer
        await await_until(lambda: completed == ["pyhttp-1"], timeout=10, what="elicitation/complete")
        assert urls == ["https://example.com/authorize"]
        assert await call_text(bystander, "pyhttp_whoami") == "pyhttp"
    assert completed_elsewhere == []


async def test_roots_come_from_the_calling_client(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))

    async def roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project-a", name="a")])

    async with connect(stack.url, list_roots_callback=roots) as client, connect(stack.url, list_roots_callback=roots) as idle:
        # A session the backend never asked: its change is nobody's business upstream.
        await idle.send_roots_list_changed()
        assert json.loads(await call_text(client, "pyhttp_my_roots")) == ["file:///work/project-a"]
        # The backend asked this session, so it hears when the roots change.
        await client.send_roots_list_changed()

        async def told() -> bool:
            return (await upstream_state(client, "pyhttp"))["roots_changed"] >= 1

        await await_until(told, timeout=10, what="roots/list_changed relayed to the backend that asked")
        assert (await upstream_state(client, "pyhttp"))["roots_changed"] == 1
    async with connect(stack.url) as plain:
        error = await call_error(plain, "pyhttp_my_roots")
        assert "does not support roots" in error, error


async def test_log_messages_respect_each_sessions_level(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    warn, debug, silent = Notifications(), Notifications(), Notifications()
    async with (
        connect(stack.url, logging_callback=warn.logging) as a,
        connect(stack.url, logging_callback=debug.logging) as b,
        connect(stack.url, logging_callback=silent.logging) as c,
    ):
        assert a.server_capabilities.logging is not None
        await a.set_logging_level("warning")
        await b.set_logging_level("debug")
        # The backend logs at the most verbose level any session asked for.
        state = await upstream_state(a, "pyhttp")
        assert state["levels"][-1] == "debug", state
        assert await call_text(a, "pyhttp_log_all", {"tag": "t1"}) == "logged"
        await await_until(lambda: len(debug.logs) >= 4 and len(warn.logs) >= 2, timeout=10, what="log messages")
        await anyio.sleep(0.3)  # let anything that should not arrive have the chance to
        assert warn.log_data() == ["error t1", "warning t1"]
        assert debug.log_data() == ["debug t1", "error t1", "info t1", "warning t1"]
        assert {p.logger for p in warn.logs + debug.logs} == {"pyhttp/tool"}
        # A session that set no level gets no backend logs.
        await call_text(c, "pyhttp_log_all", {"tag": "t2"})
        await await_until(lambda: len(warn.logs) >= 4, timeout=10, what="second round")
        assert silent.logs == []


async def test_the_upstream_log_level_follows_the_sessions_that_remain(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))

    async def last_level(client: Any) -> str:
        return (await upstream_state(client, "pyhttp"))["levels"][-1]

    async with connect(stack.url) as watcher:
        async with connect(stack.url) as a:
            await a.set_logging_level("warning")
            async with connect(stack.url) as b:
                await b.set_logging_level("debug")
                assert await last_level(watcher) == "debug"

            async def back_to_warning() -> bool:
                return await last_level(watcher) == "warning"

            # The most verbose session ended: the backend logs only what the rest want.
            await await_until(back_to_warning, timeout=10, what="upstream level lowered to warning")

        async def quiet() -> bool:
            return await last_level(watcher) == "emergency"

        # Nobody wants logs: the backend is quieted as far as MCP allows.
        await await_until(quiet, timeout=10, what="upstream level lowered to emergency")


async def test_a_session_subscribing_while_another_subscribe_fails_is_subscribed_for_real(launcher: Launcher) -> None:
    """Two sessions subscribe to one URI at once and the backend refuses the
    first: the second is not told "subscribed" on the strength of the first
    one's attempt; it subscribes upstream itself."""
    stack = launcher.stack(names=("pyhttp",))
    uri = "py://pyhttp/watched"
    outcomes: dict[str, str] = {}
    async with connect(stack.url) as a, connect(stack.url) as b:
        assert await call_text(a, "pyhttp_refuse_subscribe", {"times": 1}) == "refusing 1"

        async def subscribe(client: Any, who: str, delay: float) -> None:
            await anyio.sleep(delay)
            try:
                await client.subscribe_resource(uri)
                outcomes[who] = "subscribed"
            except MCPError as err:
                outcomes[who] = f"refused: {err.message}"

        async with anyio.create_task_group() as tg:
            tg.start_soon(subscribe, a, "a", 0.0)
            tg.start_soon(subscribe, b, "b", 0.2)  # while a's subscribe is under way upstream
        assert outcomes == {"a": "refused: subscriptions are refused right now", "b": "subscribed"}, outcomes
        assert (await upstream_state(a, "pyhttp"))["subscribed"] == [uri]


async def test_resource_updates_reach_subscribers_only_and_survive_a_backend_restart(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    uri = "py://pyhttp/watched"
    sub, other = Notifications(), Notifications()
    async with connect(stack.url, message_handler=sub.messages) as a, connect(stack.url, message_handler=other.messages) as b:
        resources = a.server_capabilities.resources
        assert resources is not None and resources.subscribe is True
        await a.subscribe_resource(uri)
        assert (await upstream_state(a, "pyhttp"))["subscribed"] == [uri]
        await call_text(b, "pyhttp_touch")
        await await_until(lambda: sub.updated == [uri], timeout=10, what="resources/updated")
        assert other.updated == []

        # A second subscriber and one leaving: the backend stays subscribed.
        await b.subscribe_resource(uri)
        await b.unsubscribe_resource(uri)
        assert (await upstream_state(a, "pyhttp"))["subscribed"] == [uri]

        # The backend restarts and forgets; the gateway subscribes it again.
        backend = stack.backends["pyhttp"]
        backend.stop()
        backend.start()
        backend.wait_listening()

        async def resubscribed() -> bool:
            try:
                return (await upstream_state(a, "pyhttp"))["subscribed"] == [uri]
            except Exception:  # noqa: BLE001 - backend still reconnecting
                return False

        await await_until(resubscribed, timeout=30, what="subscription restored after the restart")
        await call_text(b, "pyhttp_touch")
        await await_until(lambda: sub.updated == [uri, uri], timeout=10, what="update after restart")
        assert other.updated == []

        await a.unsubscribe_resource(uri)

        async def released() -> bool:
            return (await upstream_state(b, "pyhttp"))["subscribed"] == []

        await await_until(released, timeout=10, what="upstream unsubscribe")


async def test_a_session_that_ends_releases_its_subscriptions(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    uri = "py://pyhttp/watched"
    async with connect(stack.url) as watcher:
        await watcher.subscribe_resource(uri)
        assert (await upstream_state(watcher, "pyhttp"))["subscribed"] == [uri]
    async with connect(stack.url) as observer:

        async def released() -> bool:
            return (await upstream_state(observer, "pyhttp"))["subscribed"] == []

        await await_until(released, timeout=10, what="subscription dropped with its session")


async def test_subscribing_to_an_unknown_resource_is_a_clear_error(launcher: Launcher) -> None:
    stack = launcher.stack(names=("pyhttp",))
    async with connect(stack.url) as client:
        with pytest.raises(Exception) as raised:
            await client.subscribe_resource("py://nowhere/nothing")
        assert "unknown resource" in str(raised.value)


async def test_sampling_from_server_everything_over_stdio(launcher: Launcher) -> None:
    # The reference TypeScript server, spawned over stdio (no per-request
    # streams), registers its sampling tool because the gateway offers
    # sampling on behalf of its clients.
    stack = launcher.stack(names=("everything",))
    sampler = Sampler("model-ts")
    async with connect(stack.url, sampling_callback=sampler) as client:
        answer = await call_text(client, "everything_trigger-sampling-request", {"prompt": "hello ts"})
    assert sampler.prompts == ["Resource trigger-sampling-request context: hello ts"]
    assert '"model": "model-ts"' in answer, answer
    assert "answer to Resource trigger-sampling-request context: hello ts" in answer, answer
