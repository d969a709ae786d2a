#!/usr/bin/env bash
# The whole test suite, from a fresh machine with Rust, Go, Node/npm and Python:
# installs the pinned test peers, checks format and lints, builds once
# (release), runs the Rust tests (unit, real-peer integration, fuzzing),
# the end-to-end tests with the official Python MCP client and a real
# kube-apiserver + etcd, and checks that the README's quickstart command
# really serves the bundled example.
#
# The Kubernetes test environment (scripts/kube-test-env.sh) is obtained in the
# background while Rust builds: etcd from Debian's archive, kube-apiserver and
# the node's components (kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy) built from the k8s.io/kubernetes Go module on first run (cached
# outside the clone in ~/.cache/vmcp-test-env), containerd/runc/CNI plugins
# from Debian. KUBEBUILDER_ASSETS=<dir with kube-apiserver and etcd> skips the
# apiserver build. Both environments (plain, and the single-node cluster in
# .cache/kube-node-env) are started by the end-to-end tests and stopped at exit
# unless they were already running when this script started. Keycloak (the OIDC tests'
# identity provider) is fetched from Maven Central and prepared in the background too
# (scripts/install-idp.sh, cached outside the clone).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
step() { printf '\n==> %s\n' "$*" >&2; }

# --- Kubernetes test environment: fetch/build in the background ------------------------------
mkdir -p .cache
KUBE_LOG="$REPO/.cache/kube-test-env-install.log"
KUBE_WAS_RUNNING=0
NODE_WAS_RUNNING=0
NODE_ENV_DIR="${VMCP_KUBE_NODE_ENV_DIR:-$REPO/.cache/kube-node-env}"
if scripts/kube-test-env.sh status 2>/dev/null; then KUBE_WAS_RUNNING=1; fi
if VMCP_KUBE_ENV_DIR="$NODE_ENV_DIR" scripts/kube-test-env.sh status 2>/dev/null; then NODE_WAS_RUNNING=1; fi
KUBE_INSTALL_PID=""
IDP_LOG="$REPO/.cache/install-idp.log"
IDP_INSTALL_PID=""

cleanup() {
  local rc=$?
  if [ -n "$IDP_INSTALL_PID" ] && kill -0 "$IDP_INSTALL_PID" 2>/dev/null; then
    kill -TERM -- "-$IDP_INSTALL_PID" 2>/dev/null || true
    wait "$IDP_INSTALL_PID" 2>/dev/null || true
  fi
  if [ -n "$KUBE_INSTALL_PID" ] && kill -0 "$KUBE_INSTALL_PID" 2>/dev/null; then
    # Its own process group (setsid below): this stops go and its compilers as well.
    kill -TERM -- "-$KUBE_INSTALL_PID" 2>/dev/null || true
    wait "$KUBE_INSTALL_PID" 2>/dev/null || true
  fi
  if [ "$KUBE_WAS_RUNNING" = 0 ]; then
    scripts/kube-test-env.sh stop 2>/dev/null || echo "test.sh: could not stop the Kubernetes test environment" >&2
  fi
  if [ "$NODE_WAS_RUNNING" = 0 ]; then
    VMCP_KUBE_ENV_DIR="$NODE_ENV_DIR" scripts/kube-test-env.sh stop 2>/dev/null ||
      echo "test.sh: could not stop the single-node cluster ($NODE_ENV_DIR)" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "obtaining etcd, kube-apiserver and the node's binaries in the background (log: ${KUBE_LOG#"$REPO"/})"
# nice: the Rust build and its timing-sensitive tests come first; go build uses what is left
# (on 2 cores it defaults to 2 parallel compiles, which is right). setsid: one process group
# to stop on exit.
setsid nice -n 15 scripts/kube-test-env.sh install --node >"$KUBE_LOG" 2>&1 </dev/null &
KUBE_INSTALL_PID=$!

step "obtaining Keycloak (the OIDC tests' identity provider) in the background (log: ${IDP_LOG#"$REPO"/})"
setsid nice -n 15 scripts/install-idp.sh >"$IDP_LOG" 2>&1 </dev/null &
IDP_INSTALL_PID=$!

step "installing pinned test peers (npm, PyPI)"
scripts/install-peers.sh

step "format and lints"
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings

step "build (release)"
cargo build --release --workspace --bins

step "example configs validate with the real binary"
for file in examples/*.yaml; do ./target/release/vmcp validate --config "$file"; done

step "Rust tests (unit, integration against real peers, fuzzing)"
VMCP_FUZZ_SECONDS="${VMCP_FUZZ_SECONDS:-30}" cargo test --release --workspace

step "quickstart (README's first command) serves the bundled example"
scripts/quickstart-check.sh

# wait_for WHAT PID LOG: waits for a background install, fails with its log's tail.
wait_for() {
  local what=$1 pid=$2 log=$3 started=$SECONDS rc=0
  wait "$pid" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "test.sh: $what failed (exit $rc); last lines of $log:" >&2
    tail -n 40 "$log" >&2 || true
    exit 1
  fi
  tail -n 2 "$log" >&2
  echo "test.sh: waited $((SECONDS - started))s for $what" >&2
}

step "waiting for the Kubernetes binaries (scripts/kube-test-env.sh install --node)"
wait_for "scripts/kube-test-env.sh install --node" "$KUBE_INSTALL_PID" "$KUBE_LOG"
KUBE_INSTALL_PID=""

step "waiting for Keycloak (scripts/install-idp.sh)"
wait_for "scripts/install-idp.sh" "$IDP_INSTALL_PID" "$IDP_LOG"
IDP_INSTALL_PID=""

step "end-to-end tests (official Python MCP client, real backends, real kube-apiserver, real pods on a node)"
VMCP_BIN="$REPO/target/release/vmcp" VMCP_E2E_SKIP_INSTALL=1 scripts/e2e.sh
