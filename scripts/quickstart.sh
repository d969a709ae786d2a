#!/usr/bin/env bash
# Run the gateway on the bundled example (examples/quickstart.yaml): builds the
# binaries, starts the example HTTP backend "beta" on 127.0.0.1:4484 (the
# stdio backend "alpha" is started by vmcp itself), then runs vmcp in the
# foreground on http://127.0.0.1:4483/mcp. Ctrl-C stops everything.
#
#   scripts/quickstart.sh                # build (release) and run
#   VMCP_PORT=5000 scripts/quickstart.sh # another gateway port
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

cargo build --release --bin vmcp --bin vmcp-example-server >&2

mkdir -p .cache
./target/release/vmcp-example-server --name beta http --host 127.0.0.1 --port 4484 \
  >.cache/quickstart-beta.log 2>&1 &
beta=$!
trap 'kill "$beta" 2>/dev/null || true' EXIT

# Wait until the HTTP backend has printed its address (or died).
for _ in $(seq 1 100); do
  if grep -q '^listening on' .cache/quickstart-beta.log 2>/dev/null; then break; fi
  if ! kill -0 "$beta" 2>/dev/null; then
    echo "quickstart: the example backend failed to start:" >&2
    cat .cache/quickstart-beta.log >&2
    exit 1
  fi
  sleep 0.1
done

echo "vmcp: MCP endpoint http://127.0.0.1:${VMCP_PORT:-4483}/mcp  (status: curl http://127.0.0.1:${VMCP_PORT:-4483}/status)" >&2
./target/release/vmcp serve --config examples/quickstart.yaml --port "${VMCP_PORT:-4483}"
