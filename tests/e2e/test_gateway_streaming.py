"""Notifications through the gateway: progress, cancellation, tools/list_changed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
import pytest

from harness import (
    Launcher,
    await_until,
    call_text,
    connect,
    py_stdio_config,
    tool_names,
)

pytestmark = pytest.mark.anyio


async def settle(value: Callable[[], object], quiet: float, timeout: float) -> None:
    """Wait until `value()` has not changed for `quiet` seconds (at most `timeout`)."""
    deadline = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while time.monotonic() < deadline:
        await anyio.sleep(0.1)
        current = value()
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    pytest.fail(f"still changing after {timeout}s: {last!r}")


class ProgressLog:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.first = anyio.Event()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.values.append(progress)
        self.first.set()


async def test_progress_notifications_reach_the_client(launcher: Launcher) -> None:
    stack = launcher.stack(names=("everything", "pysse", "pyhttp"))
    async with connect(stack.url) as client:
        for tool in ("pyhttp_slow", "pysse_slow"):
            log = ProgressLog()
            result = await call_text(client, tool, {"seconds": 1.0}, progress_callback=log)
            assert result == f"slept 1.0 on {tool.split('_')[0]}"
            assert len(log.values) >= 2, f"{tool}: progress seen {log.values}"
            assert log.values == sorted(log.values), f"{tool}: progress went backwards {log.values}"

        log = ProgressLog()
        done = await call_text(
            client, "everything_trigger-long-running-operation", {"duration": 0.9, "steps": 3}, progress_callback=log
        )
        assert done.startswith("Long running operation completed")
        # The last step's notification races the result inside rmcp's client
        # (notifications are handled on spawned tasks, the result is not), so
        # it may arrive after the call ended; every earlier step must arrive, in order.
        assert log.values in ([1, 2, 3], [1, 2]), log.values


async def test_cancelling_a_slow_call_returns_promptly_and_reaches_the_backend(launcher: Launcher) -> None:
    # A long default timeout, so that only the cancellation can stop the call early.
    stack = launcher.stack(names=("everything", "pysse", "pyhttp"), overrides={"operational": {"timeouts": {"default": "60s"}}})
    async with connect(stack.url) as client:
        log = ProgressLog()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.call_tool("pysse_slow", {"seconds": 30}, progress_callback=log))
            with anyio.fail_after(10):
                await log.first.wait()  # the call is running on the backend
            began = time.monotonic()
            tg.cancel_scope.cancel()
        assert time.monotonic() - began < 2.0

        # The gateway passed notifications/cancelled on: the backend stopped the call.
        async def backend_saw_cancel() -> bool:
            stats = json.loads(await call_text(client, "pysse_stats"))
            return stats["cancelled"] == 1 and stats["in_flight"] == 0 and stats["completed"] == 0

        await await_until(backend_saw_cancel, 5, what="pysse to see the cancellation")

        began = time.monotonic()
        assert await call_text(client, "pysse_echo", {"text": "after cancel"}) == "after cancel"
        assert time.monotonic() - began < 3.0


CONCURRENT_CALLS = 32  # above rmcp's default of 16 POSTs in flight per upstream session


@pytest.mark.parametrize("backend", ["pyless", "pyhttp"])
async def test_concurrent_calls_all_reach_the_backend_at_once(launcher: Launcher, backend: str) -> None:
    """The gateway adds no queue below the clients' concurrency: 32 slow calls
    in one session are all running on the backend together. `pyless` answers
    each POST with plain JSON, so every call holds an upstream POST for its
    whole length (with a cap of 16 the peak would be 16); `pyhttp` answers on
    SSE streams."""
    timeouts = {"default": "30s", "perWorkload": {backend: "30s"}}
    stack = launcher.stack(names=(backend,), overrides={"operational": {"timeouts": timeouts}})
    async with connect(stack.url) as client:
        results: list[str] = []

        async def one() -> None:
            results.append(await call_text(client, f"{backend}_slow", {"seconds": 2.0}))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(CONCURRENT_CALLS):
                    tg.start_soon(one)
        assert results == [f"slept 2.0 on {backend}"] * CONCURRENT_CALLS
        stats = json.loads(await call_text(client, f"{backend}_stats"))
        assert stats["completed"] == CONCURRENT_CALLS
        assert stats["peak_in_flight"] == CONCURRENT_CALLS, stats


@pytest.mark.parametrize("backend", ["pysse", "pyhttp", "pystdio"])
async def test_backend_tool_list_change_reaches_the_client(launcher: Launcher, backend: str) -> None:
    """The backend adds then removes a tool `extra` and announces it; the client hears and sees both."""
    stack = launcher.stack(names=("everything", "pysse", "pyhttp"), extra_backends=[py_stdio_config("pystdio")])
    changes: list[float] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changes.append(time.monotonic())

    async with connect(stack.url, message_handler=on_message) as client:
        assert f"{backend}_extra" not in await tool_names(client)
        # server-everything announces a change right after it starts; let that pass.
        await settle(lambda: len(changes), quiet=1.0, timeout=15)
        seen = len(changes)

        assert await call_text(client, f"{backend}_toggle_extra") == "added"
        await await_until(lambda: len(changes) > seen, 10, what="notifications/tools/list_changed after adding")

        async def listed() -> bool:
            return f"{backend}_extra" in await tool_names(client)

        await await_until(listed, 10, what=f"{backend}_extra in tools/list")
        assert await call_text(client, f"{backend}_extra") == f"extra from {backend}"

        seen = len(changes)
        assert await call_text(client, f"{backend}_toggle_extra") == "removed"
        await await_until(lambda: len(changes) > seen, 10, what="notifications/tools/list_changed after removing")

        async def unlisted() -> bool:
            return f"{backend}_extra" not in await tool_names(client)

        await await_until(unlisted, 10, what=f"{backend}_extra gone from tools/list")
