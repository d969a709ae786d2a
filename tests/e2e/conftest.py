"""Fixtures for vmcp's end-to-end tests (the machinery lives in harness.py).

Missing pieces are failures, never skips:
  - the gateway binary: target/release/vmcp, or $VMCP_BIN
  - the peers: scripts/install-peers.sh (tests/peers/node_modules and .cache/venv)
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import EVERYTHING_JS, LOOPBACK_CJS, PY_BACKEND, Launcher, Stack, default_vmcp_bin


@pytest.fixture(scope="session", autouse=True)
def peers_installed() -> None:
    missing = [str(p) for p in (EVERYTHING_JS, LOOPBACK_CJS, PY_BACKEND) if not p.is_file()]
    if missing:
        pytest.fail(f"test peers missing: {', '.join(missing)}; run scripts/install-peers.sh")
    if subprocess.run(["node", "--version"], capture_output=True).returncode != 0:
        pytest.fail("node is not runnable")


@pytest.fixture(scope="session")
def vmcp_bin() -> Path:
    path = default_vmcp_bin()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"gateway binary not found or not executable: {path} "
            "(build it with `cargo build --release`, or point VMCP_BIN at it)"
        )
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _failed(node: pytest.Item) -> bool:
    return any(getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))


@pytest.fixture
def peers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Launcher]:
    """A launcher for processes that need no gateway; all stopped after the test."""
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.stop_all()
    if _failed(request.node):
        print(launcher.logs())


@pytest.fixture
def launcher(request: pytest.FixtureRequest, tmp_path: Path, vmcp_bin: Path) -> Iterator[Launcher]:
    """A launcher with the gateway binary; everything it started is stopped after the test."""
    launcher = Launcher(tmp_path, vmcp_bin)
    yield launcher
    launcher.stop_all()
    if _failed(request.node):
        print(launcher.logs())


@pytest.fixture(scope="module")
def _shared_launcher(tmp_path_factory: pytest.TempPathFactory, vmcp_bin: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("shared"), vmcp_bin)
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def _shared_stack(_shared_launcher: Launcher) -> Stack:
    return _shared_launcher.stack()


@pytest.fixture
def shared_stack(request: pytest.FixtureRequest, _shared_stack: Stack, _shared_launcher: Launcher) -> Iterator[Stack]:
    """The standard stack, shared by the read-only tests of one module. Do not kill or stop anything in it."""
    _shared_stack.gateway.check_alive()
    yield _shared_stack
    if _failed(request.node):
        print(_shared_launcher.logs())
