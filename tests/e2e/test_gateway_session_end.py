"""How sessions and calls end (issue 9, item 11): a session DELETE answers what the official
client expects (200/204), and a call that outlives the drain time at shutdown ends with a
JSON-RPC error that says the gateway is shutting down, not with a cut stream."""

from __future__ import annotations

import logging
import signal
import time

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError

from harness import Launcher, base_gateway_config, call_text, connect, raw_session

pytestmark = pytest.mark.anyio


async def test_session_delete_answers_204_and_ends_the_session(launcher: Launcher, caplog: pytest.LogCaptureFixture) -> None:
    stack = launcher.stack(names=("pysse",))
    with httpx.Client(timeout=15.0) as http:
        headers = raw_session(http, stack.url)
        assert "Mcp-Session-Id" in headers
        deleted = http.delete(stack.url, headers=headers)
        assert deleted.status_code in (200, 204), f"DELETE answered {deleted.status_code}: {deleted.text[:300]}"
        after = http.post(stack.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers)
        assert after.status_code == 404, f"the deleted session still answered {after.status_code}"

    # The official client terminates its session on close and logs a failure for anything
    # but 200/204.
    caplog.set_level(logging.DEBUG, logger="mcp.client.streamable_http")
    async with connect(stack.url) as client:
        assert await call_text(client, "pysse_echo", {"text": "bye"}) == "bye"
    failures = [r.getMessage() for r in caplog.records if "Session termination failed" in r.getMessage()]
    assert not failures, failures


async def test_a_call_that_outlives_the_drain_time_gets_a_shutting_down_error(launcher: Launcher) -> None:
    backend = launcher.py("pysse", "sse")
    gateway = launcher.gateway(base_gateway_config([backend.config()]), args=["--drain-seconds", "1"])
    outcome: dict[str, object] = {}
    in_flight = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        in_flight.set()

    async with connect(gateway.url, read_timeout_seconds=60.0) as client:

        async def long_call() -> None:
            try:
                outcome["result"] = await client.call_tool("pysse_slow", {"seconds": 30.0}, progress_callback=on_progress)
            except MCPError as exc:
                outcome["error"] = exc
            except Exception as exc:  # noqa: BLE001 - any other ending is the bug
                outcome["other"] = exc
            outcome["ended"] = time.monotonic()

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_call)
            with anyio.fail_after(15):
                await in_flight.wait()  # the call is on the backend
            gateway.signal(signal.SIGTERM)
            terminated = time.monotonic()
            with anyio.fail_after(20):
                while "ended" not in outcome:
                    await anyio.sleep(0.05)

    assert "error" in outcome, f"the call ended without a JSON-RPC error: {outcome}"
    error = outcome["error"]
    assert isinstance(error, MCPError)
    assert "shutting down" in error.message, error.message
    assert isinstance(error.data, dict) and error.data.get("reason") == "shutting_down", error.data
    assert float(outcome["ended"]) - terminated < 15  # type: ignore[arg-type]
    assert gateway.proc is not None
    code = await anyio.to_thread.run_sync(lambda: gateway.proc.wait(timeout=20))
    assert code == 0, f"vmcp exited with {code}"
