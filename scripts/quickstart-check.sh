#!/usr/bin/env bash
# Runs scripts/quickstart.sh on a spare port and checks that both example
# backends are connected and their tools are served; fails otherwise.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PORT="${VMCP_QUICKSTART_PORT:-4493}"
LOG="$REPO/.cache/quickstart-check.log"
mkdir -p .cache

VMCP_PORT="$PORT" setsid scripts/quickstart.sh >"$LOG" 2>&1 &
pid=$!
cleanup() { kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT

deadline=$((SECONDS + 300))
until curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "quickstart-check: gateway did not become ready; log:" >&2
    tail -50 "$LOG" >&2
    exit 1
  fi
  sleep 0.2
done

status="$(curl -fsS "http://127.0.0.1:$PORT/status")"
python3 - "$status" <<'PY'
import json, sys
status = json.loads(sys.argv[1])
backends = {b["name"]: b for b in status["discoveredBackends"]}
assert set(backends) == {"alpha", "beta"}, backends
for name, backend in backends.items():
    assert backend["connected"], f"{name} not connected: {backend}"
    assert backend["toolCount"] >= 5, f"{name} has {backend['toolCount']} tools"
print(f"quickstart-check: ok ({status['toolCount']} tools from {len(backends)} backends)")
PY
