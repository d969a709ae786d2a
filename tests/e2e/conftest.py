"""Fixtures for vmcp's end-to-end tests (the machinery lives in harness.py and kube.py).

Missing pieces are failures, never skips:
  - the gateway binary: target/release/vmcp, or $VMCP_BIN
  - the peers: scripts/install-peers.sh (tests/peers/node_modules and .cache/venv)
  - for tests using the Kubernetes fixtures (marked `kube` automatically): kube-apiserver and
    etcd (scripts/kube-test-env.sh install, or KUBEBUILDER_ASSETS), and deploy/crds/ for `kube`

Kubernetes fixtures (the environment is scripts/kube-test-env.sh's, state dir
$VMCP_KUBE_ENV_DIR or .cache/kube-test-env; started once, reused when already up, left running):
  kube_env     session   KubeEnv: the running environment (no CRDs); .admin, .user(), .kubeconfig
  kube_admin   session   Kube admin client, no CRDs needed
  kube_crds    session   installs deploy/crds/*.yaml, waits until served; the CRD names
  kube         session   Kube admin client with the CRDs installed
  namespace    function  a fresh namespace "t-<random>" (deleted afterwards)
  kube_restart function  the KubeEnv, for stop_apiserver()/start_apiserver()/restart_apiserver();
                         makes sure the API server runs again after the test
  operator     function  OperatorProc: vmcp-operator with admin credentials, watching only
                         `namespace`
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import EVERYTHING_JS, LOOPBACK_CJS, PY_BACKEND, REPO, Launcher, Stack, default_example_server_bin, default_vmcp_bin, tail
from keycloak import keycloak  # noqa: F401 - session fixture: Keycloak with the vmcp realm (keycloak.py)
from kube import CRD_DIR, Kube, KubeEnv, KubeEnvError, KubeError, WaitTimeout, namespace_path
from operator_proc import OperatorProc

# Fixtures that need the Kubernetes environment: tests using any of them get the `kube` marker.
KUBE_FIXTURES = frozenset({"kube_env", "kube_admin", "kube_crds", "kube", "namespace", "kube_restart"})
# Fixtures that need the single-node cluster (`start --node`): the `node` marker.
NODE_FIXTURES = frozenset({"node_env", "node_kube", "node_images", "node_namespace"})
# Its own state dir: the node's API server listens on the node's bridge, and the plain
# environment of the `kube` tests keeps running next to it.
NODE_STATE_DIR = Path(os.environ.get("VMCP_KUBE_NODE_ENV_DIR") or REPO / ".cache" / "kube-node-env")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kube: needs the real kube-apiserver + etcd of scripts/kube-test-env.sh (added automatically "
        "to tests using the Kubernetes fixtures; deselect with -m 'not kube')",
    )
    config.addinivalue_line(
        "markers",
        "node: needs the single-node cluster of `scripts/kube-test-env.sh start --node` (kubelet, containerd; "
        "root); added automatically to tests using the node fixtures; run alone with -m node",
    )
    config.addinivalue_line(
        "markers",
        "runs_last: stops and restarts a shared test environment; collected after every other test",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: before -m selects on markers.
    for item in items:
        if KUBE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kube)
        if NODE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.node)
    # Tests that stop and restart a shared environment go after every other test (its clients
    # held by session fixtures point at the old ports afterwards). Stable: order kept otherwise.
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("runs_last") is not None)


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


# ---------------------------------------------------------------------------
# Kubernetes (real kube-apiserver + etcd on loopback; see kube.py)


@pytest.fixture(scope="session")
def kube_env() -> Iterator[KubeEnv]:
    """The running test environment; started here unless it is up already. Never skipped:
    if it cannot start, every test using it fails with the script's stderr tail."""
    env = KubeEnv()
    if not env.is_running():
        if not env.installed():
            pytest.fail(
                "kube-apiserver/etcd are not installed: run `scripts/kube-test-env.sh install` first "
                "(builds kube-apiserver from source, 10-30 min) or point KUBEBUILDER_ASSETS at envtest binaries "
                "(scripts/e2e.sh and scripts/test.sh do this for you)",
                pytrace=False,
            )
        problem = None
        try:
            env.start(timeout=150)
        except KubeEnvError as exc:
            problem = f"the Kubernetes test environment did not start: {exc}"
        if problem:  # (outside the except block, so pytest shows one error, not a chain)
            pytest.fail(problem, pytrace=False)
    problem = None
    try:
        env.wait_ready(60)
    except (WaitTimeout, KubeError, OSError) as exc:
        problem = f"the Kubernetes test environment is not ready: {exc}\nkube-apiserver log tail:\n{tail(env.apiserver_log, 30)}"
    if problem:
        pytest.fail(problem, pytrace=False)
    yield env
    # Left running for the next session; scripts/test.sh stops what it started.


@pytest.fixture(scope="session")
def kube_admin(kube_env: KubeEnv) -> Kube:
    """Admin client (group system:masters); no CRDs needed."""
    return kube_env.admin


@pytest.fixture(scope="session")
def kube_crds(kube_env: KubeEnv) -> list[str]:
    """Install (apply) every CRD in deploy/crds/ and wait until the resources are served."""
    if not CRD_DIR.is_dir():
        pytest.fail(f"{CRD_DIR.relative_to(CRD_DIR.parents[1])}/ does not exist: the CRD manifests are missing", pytrace=False)
    try:
        return kube_env.install_crds(CRD_DIR)
    except (KubeError, WaitTimeout, ValueError, OSError) as exc:
        problem = f"installing the CRDs from {CRD_DIR} failed: {exc}"
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def kube(kube_env: KubeEnv, kube_crds: list[str]) -> Kube:
    """Admin client, with our CRDs (deploy/crds/) installed and served."""
    return kube_env.admin


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube_env: KubeEnv, kube_admin: Kube) -> Iterator[str]:
    """A fresh namespace t-<random> for one test. Deleted afterwards (it stays Terminating:
    without a controller-manager nothing empties it, but nothing new can be created in it)."""
    name = f"t-{secrets.token_hex(4)}"
    kube_admin.create(namespace_path(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"vmcp-e2e": "true"}}})
    yield name
    if _failed(request.node):
        print(f"kube-apiserver log tail ({kube_env.apiserver_log}):\n{tail(kube_env.apiserver_log, 20)}")
    if not kube_admin.is_ready():  # a test stopped the API server and failed before restarting it
        kube_env.start_apiserver()
    kube_admin.delete(namespace_path(name), missing_ok=True)


@pytest.fixture
def operator(request: pytest.FixtureRequest, tmp_path: Path, kube_env: KubeEnv, kube: Kube, namespace: str) -> Iterator[OperatorProc]:
    """The operator, admin credentials, watching only the test's namespace."""
    proc = OperatorProc.start_new(tmp_path, kube_env.kubeconfig, namespace=namespace)
    proc.wait_ready()
    yield proc
    proc.stop()
    if _failed(request.node):
        print(f"operator log tail:\n{proc.log_tail(80)}")


@pytest.fixture
def kube_restart(kube_env: KubeEnv) -> Iterator[KubeEnv]:
    """The environment, for tests that stop/start kube-apiserver mid-test
    (stop_apiserver(), start_apiserver(), restart_apiserver(down_for=...)); afterwards the
    API server is running and ready again, whatever the test did."""
    yield kube_env
    if not kube_env.is_running():
        kube_env.start_apiserver()
    kube_env.wait_ready(120)


# ---------------------------------------------------------------------------
# The single-node cluster (scripts/kube-test-env.sh start --node): pods really run.

IMAGE_NAMES = ("vmcp", "vmcp-operator", "vmcp-example-server")


@pytest.fixture(scope="session")
def node_env() -> Iterator[KubeEnv]:
    """The running single-node cluster; started here unless it is up already. Never skipped:
    if it cannot start (binaries missing, not root, kubelet failing), every test using it fails."""
    env = KubeEnv(NODE_STATE_DIR, node=True)
    if not env.is_running():
        if not env.installed():
            pytest.fail(
                "the node's binaries are not installed: run `scripts/kube-test-env.sh install --node` first "
                "(builds kubelet, kube-controller-manager, kube-scheduler, kube-proxy; installs containerd)",
                pytrace=False,
            )
        problem = None
        try:
            env.start(timeout=400)
        except KubeEnvError as exc:
            problem = f"the single-node cluster did not start: {exc}"
        if problem:
            pytest.fail(problem, pytrace=False)
    problem = None
    try:
        env.wait_ready(60)
    except (WaitTimeout, KubeError, OSError) as exc:
        problem = f"the single-node cluster is not ready: {exc}"
    if problem:
        pytest.fail(problem, pytrace=False)
    yield env
    # Left running like the plain environment; scripts/test.sh stops what it started.


@pytest.fixture(scope="session")
def node_kube(node_env: KubeEnv) -> Kube:
    """Admin client of the node's API server, with our CRDs installed."""
    problem = None
    try:
        node_env.install_crds(CRD_DIR)
    except (KubeError, WaitTimeout, ValueError, OSError) as exc:
        problem = f"installing the CRDs on the node's API server failed: {exc}"
    if problem:
        pytest.fail(problem, pytrace=False)
    return node_env.admin


@pytest.fixture(scope="session")
def node_images(node_env: KubeEnv, vmcp_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Images of the binaries under test (scripts/build-images.sh), imported into the node's
    containerd; image name by binary name. Pods use them with imagePullPolicy: Never."""
    example = default_example_server_bin()
    if example.parent != vmcp_bin.parent:
        pytest.fail(f"{example} must sit next to {vmcp_bin} (scripts/build-images.sh takes one binary dir)", pytrace=False)
    out = tmp_path_factory.mktemp("images")
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-images.sh"), "--out", str(out), "--bin-dir", str(vmcp_bin.parent), *IMAGE_NAMES],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-images.sh failed:\n{proc.stderr[-3000:]}", pytrace=False)
    problem = None
    node_env.image_archives = [out / f"{name}.tar" for name in IMAGE_NAMES]
    try:
        node_env.import_images(node_env.image_archives)
    except KubeEnvError as exc:
        problem = f"importing the images into the node's containerd failed: {exc}"
    if problem:
        pytest.fail(problem, pytrace=False)
    return {name: f"localhost/vmcp/{name}:latest" for name in IMAGE_NAMES}


@pytest.fixture
def node_namespace(request: pytest.FixtureRequest, node_env: KubeEnv, node_kube: Kube) -> Iterator[str]:
    """A fresh namespace on the node's cluster (emptied and removed afterwards by the
    controller-manager)."""
    name = f"n-{secrets.token_hex(4)}"
    node_kube.create(namespace_path(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"vmcp-e2e": "true"}}})
    yield name
    # (node_env.admin: a test may have restarted the cluster, which makes new credentials.)
    node_env.admin.delete(namespace_path(name), missing_ok=True)
