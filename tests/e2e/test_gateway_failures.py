"""One backend failing must not take the others (or the session) down."""

from __future__ import annotations

import os
import signal
import time

import anyio
import pytest

from harness import (
    EVERYTHING_JS,
    Launcher,
    Stack,
    assert_no_internals,
    await_until,
    call_error,
    call_text,
    connect,
    tool_names,
    wait_until,
)

pytestmark = pytest.mark.anyio

PYHTTP_TIMEOUT = 2.0  # operational.timeouts.perWorkload.pyhttp in the base config
TIMEOUT_MARGIN = 3.0


def wait_connected(stack: Stack, name: str, connected: bool, timeout: float = 30.0) -> None:
    def matches() -> bool:
        entry = stack.gateway.backend_status(name)
        return entry is not None and (entry.get("status") == "ready") is connected

    wait_until(matches, timeout, interval=0.25, what=f"/status to show {name} connected={connected}")


async def others_still_work(client, tag: str) -> None:  # noqa: ANN001 - mcp.Client
    assert await call_text(client, "pysse_echo", {"text": f"sse-{tag}"}) == f"sse-{tag}"
    assert await call_text(client, "pyless_echo", {"text": f"less-{tag}"}) == f"less-{tag}"
    assert await call_text(client, "everything_echo", {"message": f"ev-{tag}"}) == f"Echo: ev-{tag}"


async def test_killed_backend_fails_alone_and_recovers_on_restart(launcher: Launcher) -> None:
    stack = launcher.stack()
    pyhttp = stack.backends["pyhttp"]
    async with connect(stack.url) as client:
        assert await call_text(client, "pyhttp_echo", {"text": "before"}) == "before"

        pyhttp.kill_hard()

        await others_still_work(client, "after-kill")
        began = time.monotonic()
        error = await call_error(client, "pyhttp_echo", {"text": "while-dead"})
        assert time.monotonic() - began < PYHTTP_TIMEOUT + TIMEOUT_MARGIN
        assert "pyhttp" in error, error
        assert_no_internals(error, stack)

        # Listing still works and still carries the healthy backends.
        names = await tool_names(client)
        assert {"pysse_echo", "pyless_echo", "everything_echo"} <= names
        wait_connected(stack, "pyhttp", False)
        for other in ("everything", "pysse", "pyless"):
            assert stack.gateway.backend_status(other)["status"] == "ready"

        pyhttp.start()  # same port
        pyhttp.wait_listening()

        async def pyhttp_back() -> bool:
            try:
                return await call_text(client, "pyhttp_echo", {"text": "back"}) == "back"
            except AssertionError:
                return False

        await await_until(pyhttp_back, 30, interval=0.5, what="pyhttp_echo to work again after restart")
        assert await call_text(client, "pyhttp_whoami") == "pyhttp"
        await others_still_work(client, "after-restart")
    wait_connected(stack, "pyhttp", True)


async def test_hung_backend_times_out_while_others_answer(launcher: Launcher) -> None:
    stack = launcher.stack()
    pyhttp = stack.backends["pyhttp"]
    async with connect(stack.url) as client:
        assert await call_text(client, "pyhttp_echo", {"text": "before"}) == "before"
        pyhttp.signal(signal.SIGSTOP)
        try:
            outcome: dict[str, object] = {}

            async def hung_call() -> None:
                began = time.monotonic()
                outcome["error"] = await call_error(client, "pyhttp_echo", {"text": "while-stopped"})
                outcome["elapsed"] = time.monotonic() - began

            async def healthy_calls() -> None:
                began = time.monotonic()
                await others_still_work(client, "during-hang")
                outcome["others_elapsed"] = time.monotonic() - began

            async with anyio.create_task_group() as tg:
                tg.start_soon(hung_call)
                tg.start_soon(healthy_calls)

            assert outcome["elapsed"] < PYHTTP_TIMEOUT + TIMEOUT_MARGIN, outcome
            assert outcome["others_elapsed"] < PYHTTP_TIMEOUT + TIMEOUT_MARGIN, outcome
            error = str(outcome["error"])
            assert "pyhttp" in error, error
            assert_no_internals(error, stack)

            # Still stopped: a second call is bounded the same way.
            began = time.monotonic()
            await call_error(client, "pyhttp_add", {"a": 1, "b": 2})
            assert time.monotonic() - began < PYHTTP_TIMEOUT + TIMEOUT_MARGIN
        finally:
            pyhttp.signal(signal.SIGCONT)

        async def pyhttp_back() -> bool:
            try:
                return await call_text(client, "pyhttp_echo", {"text": "resumed"}) == "resumed"
            except AssertionError:
                return False

        await await_until(pyhttp_back, 30, interval=0.5, what="pyhttp_echo to work again after SIGCONT")


async def test_killed_stdio_backend_is_restarted(launcher: Launcher) -> None:
    stack = launcher.stack(names=("everything", "pysse"))
    gateway = stack.gateway
    marker = str(EVERYTHING_JS)
    old = wait_until(lambda: gateway.stdio_children(marker), 15, what="the gateway's server-everything child")
    async with connect(stack.url) as client:
        assert await call_text(client, "everything_echo", {"message": "first"}) == "Echo: first"

        for pid in old:
            os.kill(pid, signal.SIGKILL)

        # Meanwhile the other backend is unaffected.
        assert await call_text(client, "pysse_echo", {"text": "unaffected"}) == "unaffected"

        async def everything_back() -> bool:
            try:
                return await call_text(client, "everything_echo", {"message": "again"}) == "Echo: again"
            except AssertionError:
                return False

        await await_until(everything_back, 30, interval=0.5, what="everything_echo after its process was killed")
        new = gateway.stdio_children(marker)
        assert new and not set(new) & set(old), f"expected a new server-everything process: old {old}, now {new}"
        assert "everything_get-sum" in await tool_names(client)
    wait_connected(stack, "everything", True)


async def test_backend_down_at_start_does_not_block_the_gateway(launcher: Launcher) -> None:
    # make_stack waits for /readyz: readiness must not depend on every backend.
    stack = launcher.stack(down=("pyhttp",))
    assert stack.gateway.get("/readyz").status_code == 200
    async with connect(stack.url) as client:
        names = await tool_names(client)
        assert {"pysse_echo", "pyless_echo", "everything_echo"} <= names
        await others_still_work(client, "pyhttp-never-started")
        error = await call_error(client, "pyhttp_echo", {"text": "nobody home"})
        assert "pyhttp" in error, error
        assert_no_internals(error, stack)
        wait_connected(stack, "pyhttp", False)

        stack.backends["pyhttp"].start()
        stack.backends["pyhttp"].wait_listening()

        async def pyhttp_arrived() -> bool:
            if "pyhttp_echo" not in await tool_names(client):
                return False
            return await call_text(client, "pyhttp_echo", {"text": "late"}) == "late"

        await await_until(pyhttp_arrived, 30, interval=0.5, what="pyhttp tools to appear once it is up")
    wait_connected(stack, "pyhttp", True)
