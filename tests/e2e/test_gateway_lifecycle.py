"""Start-up readiness and graceful shutdown of the gateway process."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anyio
import pytest

from harness import TRANSPORT_OF, Launcher, base_gateway_config, call_text, connect, py_stdio_config, tool_names

pytestmark = pytest.mark.anyio


async def test_sigterm_lets_an_in_flight_call_finish_then_exits_0(launcher: Launcher) -> None:
    stack = launcher.stack(names=("everything", "pysse"))
    gateway = stack.gateway
    result: dict[str, str] = {}
    first_progress = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        first_progress.set()

    async with connect(stack.url) as client:

        async def slow_call() -> None:
            result["text"] = await call_text(client, "pysse_slow", {"seconds": 3.0}, progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)
            with anyio.fail_after(10):
                await first_progress.wait()  # the call is in flight on the backend
            gateway.signal(signal.SIGTERM)
            terminated = time.monotonic()

        assert result["text"] == "slept 3.0 on pysse"
        # The client is still connected (its GET stream open): shutdown must not wait for it.
        assert gateway.proc is not None
        code = await anyio.to_thread.run_sync(lambda: gateway.proc.wait(timeout=20))
    assert code == 0, f"vmcp exited with {code}"
    assert time.monotonic() - terminated < 20


async def test_readyz_is_503_until_first_discovery_finishes(launcher: Launcher) -> None:
    slow = py_stdio_config("pyslow", startup_delay=4.0)
    stack = launcher.stack(
        names=("everything", "pysse"),
        extra_backends=[slow],
        overrides={"operational": {"timeouts": {"perWorkload": {"pyslow": "60s"}}}},
        ready=False,  # only wait for /health
    )
    gateway = stack.gateway
    assert gateway.get("/health").status_code == 200
    assert gateway.get("/readyz").status_code == 503, "ready before the slow backend was discovered"
    gateway.wait_ready(timeout=60)
    async with connect(stack.url) as client:
        names = await tool_names(client)
        assert "pyslow_whoami" in names and "pysse_whoami" in names and "everything_echo" in names
        assert await call_text(client, "pyslow_whoami") == "pyslow"


async def test_a_machine_without_ca_certificates_still_serves_plain_http_backends(launcher: Launcher, tmp_path: Path) -> None:
    """No system CA certificates (a minimal image): the gateway starts, says why https backends
    will fail, and serves its http backends (it used to panic while building its HTTP client)."""
    empty_file = tmp_path / "no-certs.pem"
    empty_file.write_text("")
    empty_dir = tmp_path / "no-certs.d"
    empty_dir.mkdir()
    backend = launcher.py("pysse", TRANSPORT_OF["pysse"])
    gateway = launcher.gateway(
        base_gateway_config([backend.config()]),
        env={"SSL_CERT_FILE": str(empty_file), "SSL_CERT_DIR": str(empty_dir)},
    )
    async with connect(gateway.url) as client:
        assert await call_text(client, "pysse_whoami") == "pysse"
    assert "cannot load the system's CA certificates" in gateway.log_tail(200)
