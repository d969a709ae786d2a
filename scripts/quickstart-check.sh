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

python3 - "$PORT" <<'PY'
import json, sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/status"
deadline = time.monotonic() + 30
while True:
    status = json.load(urllib.request.urlopen(url, timeout=5))
    backends = {b["name"]: b for b in status["discoveredBackends"]}
    if status["phase"] == "Ready" or time.monotonic() > deadline:
        break
    time.sleep(0.2)
assert set(backends) == {"alpha", "beta"}, backends
assert status["phase"] == "Ready", status
for name, backend in backends.items():
    assert backend["status"] == "ready", f"{name} not ready: {backend}"
print(f"quickstart-check: ok (phase {status['phase']}, {len(backends)} backends)")
PY
