#!/usr/bin/env bash
# The whole test suite, from a fresh machine with Rust, Node/npm and Python:
# installs the pinned test peers, checks format and lints, builds once
# (release), runs the Rust tests (unit, real-peer integration, fuzzing),
# the end-to-end tests with the official Python MCP client, and checks that
# the README's quickstart command really serves the bundled example.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
step() { printf '\n==> %s\n' "$*" >&2; }

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

step "end-to-end tests (official Python MCP client, real backends)"
VMCP_BIN="$REPO/target/release/vmcp" VMCP_E2E_SKIP_INSTALL=1 scripts/e2e.sh
