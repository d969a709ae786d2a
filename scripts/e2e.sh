#!/usr/bin/env bash
# Run the end-to-end tests: real MCP peers, the real gateway, the official Python client.
#
#   scripts/e2e.sh                                   # everything under tests/e2e
#   scripts/e2e.sh -k catalogue -x                   # extra pytest arguments
#   scripts/e2e.sh tests/e2e/test_peers_direct.py    # chosen files (no gateway needed for this one)
#
# Environment:
#   VMCP_BIN                    gateway binary (default: target/release/vmcp); tests fail if missing
#   VMCP_E2E_TEST_TIMEOUT       per-test limit in seconds (default 180)
#   VMCP_E2E_TIMEOUT            limit for the whole run in seconds (default 2700)
#   VMCP_E2E_SKIP_INSTALL=1     do not run scripts/install-peers.sh, scripts/kube-test-env.sh install
#                               and scripts/install-idp.sh first
#   VMCP_KEYCLOAK_HOME          an installed Keycloak (default: where scripts/install-idp.sh puts it)
#   VMCP_KEYCLOAK_JAVA_HOME     Java >= 21 to run it (default: the one the install script chose)
#   VMCP_KEYCLOAK_START_TIMEOUT seconds to wait for Keycloak to be ready (default 180)
#   VMCP_KUBE_ENV_DIR           state dir of the Kubernetes test environment (see scripts/kube-test-env.sh)
#   VMCP_KUBE_NODE_ENV_DIR      state dir of the single-node cluster (default .cache/kube-node-env)
#   KUBEBUILDER_ASSETS          dir with kube-apiserver and etcd binaries: nothing is built
#   VMCP_E2E_MAX_REQUEST_BYTES  written to the gateway config as server.maxRequestBytes
#   VMCP_E2E_PAGE_SIZE          written to the gateway config as server.pageSize (default 7)
#
# Tests that use the Kubernetes fixtures (marked `kube`; deselect with -m 'not kube') start a
# real kube-apiserver + etcd through scripts/kube-test-env.sh, or reuse a running one, and
# leave it running (scripts/kube-test-env.sh stop). The first install builds kube-apiserver
# from source (10-30 min). Tests marked `node` (run alone with -m node) run real pods on the
# single-node cluster of `scripts/kube-test-env.sh start --node` (own state dir, needs root),
# started the same way and left running (VMCP_KUBE_ENV_DIR=.cache/kube-node-env
# scripts/kube-test-env.sh stop).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.cache/venv/bin/python"

if [ "${VMCP_E2E_SKIP_INSTALL:-0}" != 1 ]; then
  "$REPO/scripts/install-peers.sh"
  "$REPO/scripts/kube-test-env.sh" install --node
  "$REPO/scripts/install-idp.sh"
fi
if [ ! -x "$PY" ]; then
  echo "e2e: $PY is missing; run scripts/install-peers.sh" >&2
  exit 1
fi

export VMCP_BIN="${VMCP_BIN:-$REPO/target/release/vmcp}"
if [ ! -x "$VMCP_BIN" ]; then
  echo "e2e: warning: gateway binary $VMCP_BIN not found; gateway tests will fail (cargo build --release)" >&2
fi

# Default to the whole suite unless a test path was given.
paths=(tests/e2e)
for arg in "$@"; do
  case "$arg" in
    tests/*) paths=() ;;
  esac
done

cd "$REPO"
exec timeout --kill-after=30 "${VMCP_E2E_TIMEOUT:-2700}" \
  "$PY" -m pytest "${paths[@]}" -q --timeout="${VMCP_E2E_TEST_TIMEOUT:-180}" "$@"
