#!/usr/bin/env bash
# Install the pinned real MCP peers used by the end-to-end tests:
#   - tests/peers/node_modules   (npm ci from the committed package-lock.json)
#   - .cache/venv                (Python venv from tests/peers/requirements.txt)
#
# Idempotent and quick when nothing changed: each half records the hash of its
# lock file in a stamp and skips the install when the stamp matches.
# Fails (non-zero, with a message saying what is missing) rather than
# installing anything unpinned.
#
# Environment:
#   PYTHON            interpreter used to create the venv (default: python3)
#   VMCP_PEERS_FORCE  set to 1 to reinstall both halves
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$REPO/tests/peers"
VENV="$REPO/.cache/venv"
PYTHON="${PYTHON:-python3}"
FORCE="${VMCP_PEERS_FORCE:-0}"

die() {
  echo "install-peers: ERROR: $*" >&2
  exit 1
}
note() { echo "install-peers: $*" >&2; }

hash_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

# --- prerequisites --------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found on PATH (Node.js >= 20 is required)"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (coreutils)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js >= 20 is required, found $(node --version)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH (CPython >= 3.11 is required)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "CPython >= 3.11 is required, $PYTHON is $("$PYTHON" --version 2>&1)"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
  || die "$PYTHON lacks venv/ensurepip (Debian: apt-get install python3-venv)"
[ -f "$PEERS/package.json" ] || die "missing $PEERS/package.json"
[ -f "$PEERS/package-lock.json" ] || die "missing $PEERS/package-lock.json (it is committed; do not delete it)"
[ -f "$PEERS/requirements.txt" ] || die "missing $PEERS/requirements.txt"

# --- node peers -----------------------------------------------------------
EVERYTHING="$PEERS/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
npm_stamp="$PEERS/node_modules/.vmcp-peers.sha256"
npm_hash="$(hash_of "$PEERS/package.json" "$PEERS/package-lock.json")"
if [ "$FORCE" != 1 ] && [ -f "$EVERYTHING" ] && [ -f "$npm_stamp" ] && [ "$(cat "$npm_stamp")" = "$npm_hash" ]; then
  note "node peers up to date"
else
  note "npm ci in tests/peers"
  # No dependency has an install script; --ignore-scripts keeps it that way.
  (cd "$PEERS" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
    || die "npm ci failed in $PEERS (is the npm registry reachable?)"
  [ -f "$EVERYTHING" ] || die "npm ci finished but $EVERYTHING is missing"
  echo "$npm_hash" >"$npm_stamp"
fi

# --- python peers ---------------------------------------------------------
py_stamp="$VENV/.vmcp-peers.sha256"
py_hash="$(
  {
    sha256sum "$PEERS/requirements.txt"
    "$PYTHON" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -d' ' -f1
)"
if [ "$FORCE" != 1 ] && [ -x "$VENV/bin/python" ] && [ -f "$py_stamp" ] && [ "$(cat "$py_stamp")" = "$py_hash" ] \
  && "$VENV/bin/python" -c 'import importlib.metadata as m; [m.version(d) for d in ("mcp", "pytest", "httpx", "PyYAML")]' 2>/dev/null; then
  note "python venv up to date ($VENV)"
else
  if [ "$FORCE" = 1 ] || ! "$VENV/bin/python" -c 'pass' 2>/dev/null; then
    note "creating venv $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV" || die "could not create venv at $VENV"
  fi
  rm -f "$py_stamp"
  note "pip install -r tests/peers/requirements.txt"
  # Every distribution is pinned in the file; --no-deps refuses to pull in
  # anything that is not, and `pip check` then proves the set is complete.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --no-deps -r "$PEERS/requirements.txt" \
    || die "pip install failed (is PyPI reachable? are the pins in requirements.txt valid?)"
  "$VENV/bin/python" -m pip check --disable-pip-version-check >/dev/null \
    || die "pinned Python set is inconsistent: $("$VENV/bin/python" -m pip check 2>&1 | head -5)"
  "$VENV/bin/python" -c 'import mcp, pytest, httpx, yaml' \
    || die "venv at $VENV cannot import the test dependencies"
  echo "$py_hash" >"$py_stamp"
fi

# --- smoke ----------------------------------------------------------------
node -e 'require("node:fs").accessSync(process.argv[1])' "$EVERYTHING" \
  || die "server-everything entry point missing: $EVERYTHING"
"$VENV/bin/python" -c 'import importlib.metadata as m; print("install-peers: mcp", m.version("mcp"), "| server-everything", __import__("json").load(open("'"$PEERS"'/node_modules/@modelcontextprotocol/server-everything/package.json"))["version"])' >&2
