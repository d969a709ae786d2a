#!/usr/bin/env bash
# kube-test-env.sh — a real kube-apiserver + etcd on loopback, for integration tests; with --node
# a whole single-node cluster (scripts/kube-test-env-node.sh) whose pods really run.
#
# Usage:
#   scripts/kube-test-env.sh start [--node]   start etcd + kube-apiserver (+ the node); prints the admin kubeconfig path
#   scripts/kube-test-env.sh stop             stop everything, undo the node's changes to the host, remove the state dir
#   scripts/kube-test-env.sh stop-apiserver   stop only kube-apiserver (etcd and data stay)
#   scripts/kube-test-env.sh start-apiserver  start kube-apiserver again on the same port; prints the kubeconfig path
#   scripts/kube-test-env.sh status           exit 0 when everything started is up and ready (prints nothing)
#   scripts/kube-test-env.sh install [--node] only obtain the binaries (CI pre-build)
#   scripts/kube-test-env.sh installed [--node] exit 0 when start would need no download or build
#   scripts/kube-test-env.sh import-images TAR...  import OCI image archives into the node's containerd
#
# --node adds kube-controller-manager, kube-scheduler, containerd + runc + CNI bridge, a kubelet
# registered as node "vmcp-node" and kube-proxy (nftables mode); the API server then listens on
# the node's bridge address instead of loopback (pods must reach it). Needs root. One node per
# machine (it owns the bridge and the /kubepods cgroups).
#
# stdout carries only the kubeconfig path (start, start-apiserver); everything else goes to stderr.
#
# Environment:
#   VMCP_KUBE_ENV_DIR      state dir (pids, certs, logs, kubeconfigs); default $REPO/.cache/kube-test-env
#   VMCP_TEST_ENV_CACHE    binaries cache, shared by clones; default ${XDG_CACHE_HOME:-~/.cache}/vmcp-test-env
#                          (k8s-<version>/ holds the built Kubernetes components, etcd-<version>/ etcd)
#   KUBEBUILDER_ASSETS     dir with kube-apiserver and etcd (envtest convention); when set, those are not built
#   VMCP_KUBE_ENV_TIMEOUT  seconds to wait for readiness (default 120)
#   VMCP_DEBIAN_MIRROR     Debian mirror used to fetch etcd (default http://deb.debian.org/debian)
#
# Files in the state dir that tests may use:
#   kubeconfig        admin (user "admin", group system:masters)
#   user.kubeconfig   plain user "vmcp-test-user" (only system:authenticated; RBAC denies almost everything)
#   admin.token, user.token, pki/ca.crt, logs/*.log, env (ports)
#   node/env          (--node) NODE_NAME, NODE_IP, POD_SUBNET, SERVICE_SUBNET, CONTAINERD_ADDRESS
#
# Nothing here talks to anything but loopback, the node's own bridge and pods, the Go module
# proxy and Debian's archive.

set -euo pipefail

# --- pinned versions -------------------------------------------------------------------------
# kube-apiserver: newest minor that the k8s-openapi 0.29 crate supports (features v1_33..v1_37).
# (v1.37.2 is listed by the Go module proxy but its source zip is refused there: "not available".)
K8S_VERSION="v1.37.1"
# etcd from Debian trixie (3.5 line); bookworm only has 3.4, used as a fallback.
ETCD_DEB_VERSION="3.5.16-4"
ETCD_SUITE="trixie"
ETCD_FALLBACK_SUITE="bookworm"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Downloaded and built binaries live outside the clone, keyed by version, so a second clone or a
# fresh checkout on the same machine reuses them.
CACHE="${VMCP_TEST_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmcp-test-env}"
K8S_BIN="$CACHE/k8s-$K8S_VERSION"
LEGACY_CACHE="$REPO/.cache" # where older versions of this script kept them
STATE="${VMCP_KUBE_ENV_DIR:-$REPO/.cache/kube-test-env}"
TIMEOUT="${VMCP_KUBE_ENV_TIMEOUT:-120}"
DEBIAN_MIRROR="${VMCP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
MARKER=".kube-test-env"

# Keep the caller's stdout for the single result line; send everything else (including the output
# of go, apt, openssl, curl) to stderr so callers can read stdout as "the kubeconfig path".
exec 3>&1 1>&2

log() { printf '[kube-test-env] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
result() { printf '%s\n' "$1" >&3; }

# --- state dir safety ------------------------------------------------------------------------

abs_path() {
  case "$1" in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$PWD" "$1" ;;
  esac
}
STATE="$(abs_path "$STATE")"
STATE="${STATE%/}"

# We `rm -rf` the state dir on stop, so refuse paths that are obviously not a private scratch dir,
# and refuse existing non-empty dirs that this script did not create (no marker file).
check_state_dir() {
  case "$STATE" in
    "" | "$REPO" | "$HOME" | /root | /tmp | /work) die "refusing to use '${STATE:-/}' as state dir" ;;
  esac
  if [[ -d "$STATE" && ! -e "$STATE/$MARKER" ]] && [[ -n "$(ls -A "$STATE")" ]]; then
    die "state dir $STATE exists, is not empty and was not created by this script"
  fi
}

# One invocation at a time per state dir (a test harness may call start from several processes).
# The lock file sits beside the state dir because the state dir itself is removed on stop.
lock_state() {
  mkdir -p "$(dirname "$STATE")"
  exec 9>"$STATE.lock"
  flock 9
}

# --- processes -------------------------------------------------------------------------------

# True when $1 is a live process started for this state dir. Checking the command line (not just
# `kill -0`) protects against pid reuse after a crash or reboot; zombies have an empty cmdline.
is_ours() {
  local pid="$1"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  local cmdline
  # (Read into a variable rather than piping into `grep -q`, which can SIGPIPE the writer and,
  # under pipefail, turn a match into a failure.)
  cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
  [[ "$cmdline" == *"$STATE/"* ]]
}

read_pid() {
  local f="$STATE/$1.pid"
  if [[ -f "$f" ]]; then cat "$f"; fi
}

# Processes whose pid file is lost (state dir deleted by hand, crash mid-start): etcd or
# kube-apiserver executables whose arguments point into this state dir. Matching the executable
# name too keeps us from killing a caller whose own command line merely mentions the path.
# kube-apiserver comes first: stopped after its etcd, it hangs in graceful shutdown until SIGKILL.
stray_pids() {
  local d pid exe apiservers=() etcds=()
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    exe="$(readlink "$d/exe" 2>/dev/null || true)"
    case "${exe##*/}" in
      kube-apiserver*) if is_ours "$pid"; then apiservers+=("$pid"); fi ;;
      etcd) if is_ours "$pid"; then etcds+=("$pid"); fi ;;
    esac
  done
  if ((${#apiservers[@]} + ${#etcds[@]} > 0)); then printf '%s\n' "${apiservers[@]}" "${etcds[@]}"; fi
}

# True once $1 has fully exited: gone, or a zombie waiting for its (adoptive) parent to reap it.
# The command line empties a little before the process closes its files, so is_ours is not
# enough here: a restart on the same port right after a stop needs the socket closed.
proc_gone() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }" # field 3 (state) follows the parenthesised command name
  [[ "${stat:0:1}" == [ZX] ]]
}

# SIGTERM, wait (the processes are not our children, so poll /proc), then SIGKILL.
kill_and_wait() {
  local name="$1" pid="$2" deadline
  is_ours "$pid" || return 0
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 20))
  until proc_gone "$pid"; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) did not exit after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      until proc_gone "$pid"; do
        ((SECONDS < deadline)) || die "$name (pid $pid) survived SIGKILL"
        sleep 0.1
      done
      break
    fi
    sleep 0.1
  done
}

stop_apiserver_proc() {
  kill_and_wait kube-apiserver "$(read_pid kube-apiserver)"
  rm -f "$STATE/kube-apiserver.pid"
}

stop_all() {
  local pid
  # The node's processes first (torn down from local state, without the API server's help),
  # then the control plane, then what the node left on the host (bridge, mounts, cgroups...).
  local node=0
  if [[ -f "$STATE/node/env" ]] || node_leftovers; then node=1; fi
  if ((node)); then stop_node; fi
  stop_apiserver_proc
  kill_and_wait etcd "$(read_pid etcd)"
  for pid in $(stray_pids); do kill_and_wait "stray process" "$pid"; done
  if ((node)); then clean_node_host; fi
  if [[ -d "$STATE" ]]; then
    [[ -e "$STATE/$MARKER" || -z "$(ls -A "$STATE")" ]] || die "not removing $STATE: no $MARKER marker"
    rm -rf "$STATE"
  fi
}

# Start a daemon detached from the caller: new session (so a Ctrl-C aimed at the caller's process
# group does not hit it), stdin from /dev/null, output to a log, and fds 3 (our stdout) and 9
# (the lock) closed — otherwise a caller reading our stdout to EOF, or the next invocation
# waiting for the lock, would block for as long as the daemon lives. This shell has no job
# control, so the background child is not a group leader and setsid execs in place: $! is the
# daemon's own pid.
spawn() {
  local name="$1"
  shift
  setsid "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 3>&- 9>&- &
  local pid=$! deadline=$((SECONDS + 10))
  printf '%s\n' "$pid" >"$STATE/$name.pid"
  # Until the forked shell has exec'd the daemon, its command line is this script's, and is_ours
  # would take the daemon for gone (seen under load: "containerd exited during startup" with an
  # empty log). Return once the exec has happened (or the child is already dead).
  until is_ours "$pid" || proc_gone "$pid" || ((SECONDS >= deadline)); do sleep 0.05; done
}

# --- waiting ---------------------------------------------------------------------------------

# wait_for NAME PID CHECK...: poll CHECK until it succeeds, the process dies, or the deadline.
wait_for() {
  local name="$1" pid="$2" deadline
  shift 2
  deadline=$((SECONDS + TIMEOUT))
  until "$@"; do
    # (proc_gone, not is_ours: the pid is our own child, just spawned, so it cannot be reused.)
    if proc_gone "$pid"; then
      log "$name exited during startup; last log lines:"
      tail -n 40 "$STATE/logs/$name.log" >&2 || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$name not ready after ${TIMEOUT}s; last log lines:"
      tail -n 40 "$STATE/logs/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

etcd_healthy() {
  local body
  body="$(curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null)" || return 1
  [[ "$body" == *'"health":"true"'* ]]
}

admin_get() {
  curl -fsS --max-time 5 --cacert "$STATE/pki/ca.crt" -H "@$STATE/admin.header" \
    "https://$APISERVER_HOST:$APISERVER_PORT$1"
}

# /readyz covers etcd and the post-start hooks (RBAC bootstrap roles among them). The "default"
# namespace is created by a controller loop that /readyz does not wait for, so wait for it too:
# tests that create objects in "default" right after start would fail otherwise.
apiserver_ready() {
  [[ "$(admin_get /readyz 2>/dev/null)" == "ok" ]] && admin_get /api/v1/namespaces/default >/dev/null 2>&1
}

# --- ports -----------------------------------------------------------------------------------

# Ports in use (any TCP state, IPv4 and IPv6), read from /proc so no extra tool is needed.
used_ports() {
  local f _ addr
  for f in /proc/net/tcp /proc/net/tcp6; do
    [[ -r "$f" ]] || continue
    # Second column is "<hex address>:<hex port>"; the header line has no hex port.
    while read -r _ addr _; do
      [[ "$addr" =~ :([0-9A-Fa-f]{4})$ ]] && printf '%d\n' "$((16#${BASH_REMATCH[1]}))"
    done <"$f"
  done | sort -un
}

# Random port below the kernel's default ephemeral range (32768+), so outgoing connections do not
# grab it between our choice and the bind. A remaining race is handled by retrying start.
pick_port() {
  local used="$1" p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    grep -qx "$p" <<<"$used" || {
      printf '%s' "$p"
      return 0
    }
  done
  die "no free port found"
}

# --- binaries: Kubernetes components ---------------------------------------------------------

# The components a start needs: the control plane alone, or with a node.
control_plane_components() { printf '%s\n' kube-apiserver; }
node_components() { printf '%s\n' kube-controller-manager kube-scheduler kubelet kube-proxy; }

# Binaries built by an older version of this script inside the clone (.cache/bin/<name>-<version>)
# are adopted into the shared cache instead of being built again.
adopt_legacy_binary() {
  local name="$1" legacy="$REPO/.cache/bin/$1-$K8S_VERSION"
  if [[ ! -x "$K8S_BIN/$name" && -x "$legacy" ]]; then
    mkdir -p "$K8S_BIN"
    cp "$legacy" "$K8S_BIN/.$name.tmp" && mv -f "$K8S_BIN/.$name.tmp" "$K8S_BIN/$name"
    log "adopted $legacy into $K8S_BIN"
  fi
}

# `go install k8s.io/kubernetes/...@vX` is refused because k8s.io/kubernetes's go.mod has replace
# directives (its k8s.io/* "staging" modules are required as v0.0.0 and replaced by in-repo paths).
# So build from a throw-away wrapper module that requires k8s.io/kubernetes and maps every staging
# module to its published twin v0.<minor>.<patch> on the module proxy.
#
# build_components NAME...: build the missing ones among k8s.io/kubernetes/cmd/NAME into $K8S_BIN,
# in one `go build` (the packages they share compile once).
build_components() {
  local name missing=()
  for name in "$@"; do
    adopt_legacy_binary "$name"
    [[ -x "$K8S_BIN/$name" ]] || missing+=("$name")
  done
  ((${#missing[@]} > 0)) || return 0
  command -v go >/dev/null || die "go not found: needed to build ${missing[*]} (or set KUBEBUILDER_ASSETS for the apiserver)"
  mkdir -p "$K8S_BIN"
  # Serialise concurrent builds of the same version (they would share the wrapper dir).
  (
    flock 8
    local todo=()
    for name in "${missing[@]}"; do
      [[ -x "$K8S_BIN/$name" ]] || todo+=("$name")
    done
    ((${#todo[@]} > 0)) || exit 0

    # Modules only through the proxy (no VCS fallback: nothing else is reachable here), no
    # workspace from a parent dir, and no VCS stamping.
    export GOPROXY="${GOPROXY:-https://proxy.golang.org}" GOWORK=off GOFLAGS="-mod=mod -buildvcs=false"
    export CGO_ENABLED=0 # upstream builds these statically as well

    local wrap="$K8S_BIN/build" modinfo info gomod modtime minor patch staging
    mkdir -p "$wrap"
    log "building ${todo[*]} $K8S_VERSION from the Go module proxy (takes a while on first run)"
    local start=$SECONDS

    # Outside any module (cd /), so a half-written wrapper go.mod from an earlier failed run
    # cannot get in the way.
    # (go reports a download failure inside the JSON on stdout, so show it.)
    modinfo="$(cd / && GOFLAGS='' go mod download -json "k8s.io/kubernetes@$K8S_VERSION")" ||
      die "could not download k8s.io/kubernetes@$K8S_VERSION from $GOPROXY: $modinfo"
    gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$modinfo")"
    # The release time is in the .info file (`go mod download -json` has no "Time" field).
    info="$(sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$/\1/p' <<<"$modinfo")"
    modtime="$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$info" 2>/dev/null || true)"
    [[ -f "$gomod" ]] || die "could not download go.mod of k8s.io/kubernetes@$K8S_VERSION"

    minor="${K8S_VERSION#v1.}"
    patch="${minor#*.}"
    minor="${minor%%.*}"
    staging="$(sed -nE 's/^[[:space:]]*(require[[:space:]]+)?(k8s\.io\/[A-Za-z0-9._-]+)[[:space:]]+v0\.0\.0[[:space:]]*(\/\/.*)?$/\2/p' "$gomod" | sort -u)"
    [[ -n "$staging" ]] || die "no k8s.io/* v0.0.0 requirements found in $gomod"

    {
      printf 'module vmcp.invalid/kube-build\n\n'
      # Same language version and GODEBUG defaults as upstream's main module (only the main
      # module's godebug lines take effect, so they must be copied here).
      grep -E '^(go|godebug)[[:space:]]' "$gomod"
      printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
      local m
      for m in $staging; do
        # Unversioned replace: applies whatever version MVS would otherwise select.
        printf '\t%s => %s v0.%s.%s\n' "$m" "$m" "$minor" "$patch"
      done
      printf ')\n'
    } >"$wrap/go.mod"
    : >>"$wrap/go.sum"

    # Version stamping as upstream's build scripts do, so /version reports the real release.
    local ldflags="-s -w" pkg pkgs=()
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${modtime:-1970-01-01T00:00:00Z}"
    done
    for name in "${todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done

    rm -rf "$wrap/out" && mkdir -p "$wrap/out"
    (cd "$wrap" && go build -trimpath -ldflags "$ldflags" -o "$wrap/out/" "${pkgs[@]}")
    for name in "${todo[@]}"; do mv -f "$wrap/out/$name" "$K8S_BIN/$name"; done
    log "built ${todo[*]} into $K8S_BIN in $((SECONDS - start))s"
  ) 8>"$K8S_BIN/.build.lock"
}

# --- binaries: etcd --------------------------------------------------------------------------

# apt-get/apt-cache with a private configuration: our own sources list, package lists and cache
# under .cache/, so the system's apt sources are never changed (no root needed either).
apt_private() {
  local tool="$1" suite="$2" dir="$CACHE/apt-$2"
  shift 2
  "$tool" -q \
    -o Dir::Etc::SourceList="$dir/sources.list" \
    -o Dir::Etc::SourceParts="$dir/sources.list.d" \
    -o Dir::Etc::Preferences="$dir/preferences" \
    -o Dir::Etc::PreferencesParts="$dir/preferences.d" \
    -o Dir::State::Lists="$dir/lists" \
    -o Dir::Cache="$dir/cache" \
    -o APT::Sandbox::User=root \
    -o Acquire::Languages=none \
    -o Acquire::Retries=2 \
    -o Acquire::http::Timeout=30 \
    "$@"
}

apt_private_update() {
  local suite="$1" dir="$CACHE/apt-$1"
  mkdir -p "$dir/sources.list.d" "$dir/preferences.d" "$dir/lists/partial" "$dir/cache/archives/partial"
  # debian-archive-keyring (bookworm's, 2023.3+deb12u2) carries the trixie keys as well.
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
    "$DEBIAN_MIRROR" "$suite" >"$dir/sources.list"
  : >"$dir/preferences"
  # -o APT::Update::Error-Mode=any makes a failed fetch an error instead of a warning.
  apt_private apt-get "$suite" -o APT::Update::Error-Mode=any update >&2
}

# Download etcd-server from SUITE (pinned VERSION if given and available, else the suite's
# candidate) and unpack it into .cache/etcd-<version>/. Prints the etcd path.
fetch_etcd_from() {
  local suite="$1" want="$2" version tmp
  apt_private_update "$suite" || return 1
  version="$(apt_private apt-cache "$suite" show "etcd-server=$want" 2>/dev/null | sed -n 's/^Version: //p' | head -n1 || true)"
  if [[ -z "$version" ]]; then
    version="$(apt_private apt-cache "$suite" policy etcd-server | sed -n 's/^[[:space:]]*Candidate: //p')"
    [[ -n "$version" && "$version" != "(none)" ]] || return 1
    [[ -z "$want" ]] || log "etcd-server $want is no longer in $suite; using $suite's $version"
  fi
  # (Called in a condition, where set -e is off: every step checks its own status.)
  tmp="$(mktemp -d)" || return 1
  local dest="$CACHE/etcd-$version"
  if (cd "$tmp" && apt_private apt-get "$suite" download "etcd-server=$version" >&2) &&
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp" &&
    dpkg-deb -x "$tmp"/etcd-server_*.deb "$dest.tmp" &&
    [[ -x "$dest.tmp/usr/bin/etcd" ]] &&
    rm -rf "$dest" && mv "$dest.tmp" "$dest"; then
    rm -rf "$tmp"
    printf '%s' "$dest/usr/bin/etcd"
    return 0
  fi
  rm -rf "$tmp" "$dest.tmp"
  return 1
}

# First existing executable among the given globs, newest version first.
first_cached() {
  local f
  for f in $(printf '%s\n' "$@" | sort -rV); do
    [[ -x "$f" ]] && {
      printf '%s' "$f"
      return 0
    }
  done
  return 1
}

ensure_etcd() {
  local bin legacy
  # An etcd unpacked inside the clone by an older version of this script moves to the cache.
  for legacy in "$LEGACY_CACHE"/etcd-*; do
    if [[ -x "$legacy/usr/bin/etcd" && ! -e "$CACHE/${legacy##*/}" ]]; then
      cp -a "$legacy" "$CACHE/.${legacy##*/}.tmp" && mv "$CACHE/.${legacy##*/}.tmp" "$CACHE/${legacy##*/}"
      log "adopted $legacy into $CACHE"
    fi
  done
  if [[ -x "$CACHE/etcd-$ETCD_DEB_VERSION/usr/bin/etcd" ]]; then
    ETCD_BIN="$CACHE/etcd-$ETCD_DEB_VERSION/usr/bin/etcd"
    return 0
  fi
  # shellcheck disable=SC2086 # globs are meant to expand
  if bin="$(first_cached $CACHE/etcd-3.[5-9]*/usr/bin/etcd $LEGACY_CACHE/etcd-3.[5-9]*/usr/bin/etcd)"; then
    ETCD_BIN="$bin"
    return 0
  fi
  command -v apt-get >/dev/null || die "apt-get not found: cannot fetch etcd (set KUBEBUILDER_ASSETS)"
  log "fetching etcd-server $ETCD_DEB_VERSION from Debian $ETCD_SUITE"
  if bin="$(fetch_etcd_from "$ETCD_SUITE" "$ETCD_DEB_VERSION")"; then
    ETCD_BIN="$bin"
    return 0
  fi
  log "WARNING: Debian $ETCD_SUITE is unreachable or has no etcd-server; falling back to $ETCD_FALLBACK_SUITE's etcd-server (3.4)"
  # shellcheck disable=SC2086
  if bin="$(first_cached $CACHE/etcd-3.4*/usr/bin/etcd $LEGACY_CACHE/etcd-3.4*/usr/bin/etcd)"; then
    ETCD_BIN="$bin"
    return 0
  fi
  bin="$(fetch_etcd_from "$ETCD_FALLBACK_SUITE" "")" || die "could not fetch etcd-server from Debian"
  ETCD_BIN="$bin"
}

# ensure_binaries [--node]: etcd and kube-apiserver, plus the node's components with --node.
ensure_binaries() {
  local node="${1:-}"
  mkdir -p "$CACHE"
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    APISERVER_BIN="$KUBEBUILDER_ASSETS/kube-apiserver"
    ETCD_BIN="$KUBEBUILDER_ASSETS/etcd"
    [[ -x "$APISERVER_BIN" ]] || die "KUBEBUILDER_ASSETS is set but $APISERVER_BIN is not executable"
    [[ -x "$ETCD_BIN" ]] || die "KUBEBUILDER_ASSETS is set but $ETCD_BIN is not executable"
  else
    # One etcd download at a time (several state dirs may start at once on a fresh machine, and
    # apt locks its private lists dir); fd 7 is closed again before any daemon is spawned.
    exec 7>"$CACHE/.etcd-fetch.lock"
    flock 7
    ensure_etcd
    exec 7>&-
    # One `go build` for everything needed: the packages the components share compile once.
    local components
    components="$(control_plane_components)"
    if [[ "$node" == --node ]]; then components+=$'\n'"$(node_components)"; fi
    # shellcheck disable=SC2086 # one name per line
    build_components $components
    APISERVER_BIN="$K8S_BIN/kube-apiserver"
  fi
  if [[ "$node" == --node ]]; then
    # shellcheck disable=SC2046 # one name per line
    build_components $(node_components)
    ensure_node_packages
  fi
}

# True when ensure_binaries would find everything without downloading or building.
binaries_present() {
  local node="${1:-}" name
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    [[ -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]] || return 1
  else
    for name in $(control_plane_components); do
      [[ -x "$K8S_BIN/$name" || -x "$LEGACY_CACHE/bin/$name-$K8S_VERSION" ]] || return 1
    done
    # shellcheck disable=SC2086 # globs are meant to expand
    first_cached $CACHE/etcd-3.*/usr/bin/etcd $LEGACY_CACHE/etcd-3.*/usr/bin/etcd >/dev/null || return 1
  fi
  if [[ "$node" == --node ]]; then
    for name in $(node_components); do
      [[ -x "$K8S_BIN/$name" ]] || return 1
    done
    node_packages_present || return 1
  fi
}

# --- certificates, tokens, kubeconfigs -------------------------------------------------------

make_pki() {
  local pki="$STATE/pki"
  mkdir -p "$pki"
  # CA and serving certificate with explicit v3 extensions: strict verifiers (rustls/webpki) reject
  # a CA without keyCertSign, a leaf without subjectAltName, or a leaf that is itself a CA.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=vmcp-kube-test-env-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=kube-apiserver" -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  cat >"$pki/apiserver.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost$(node_apiserver_sans)
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
  # Service-account token signing key pair (RSA: RS256 is what every client expects).
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  chmod 600 "$pki"/*.key
}

make_tokens() {
  local admin user
  admin="$(openssl rand -hex 32)"
  user="$(openssl rand -hex 32)"
  printf '%s' "$admin" >"$STATE/admin.token"
  printf '%s' "$user" >"$STATE/user.token"
  # Static token file: token,user,uid[,"groups"]. The plain user gets no group of its own; the
  # apiserver adds system:authenticated to every authenticated user.
  {
    printf '%s,admin,vmcp-test-admin,"system:masters"\n' "$admin"
    printf '%s,vmcp-test-user,vmcp-test-user\n' "$user"
  } >"$STATE/tokens.csv"
  # Header file for curl -H @file, so the token does not show up in `ps`.
  printf 'Authorization: Bearer %s\n' "$admin" >"$STATE/admin.header"
  chmod 600 "$STATE/admin.token" "$STATE/user.token" "$STATE/tokens.csv" "$STATE/admin.header"
}

write_kubeconfig() {
  local file="$1" user="$2" token="$3" ca
  ca="$(base64 -w0 <"$STATE/pki/ca.crt")"
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vmcp-test
  cluster:
    server: https://$APISERVER_HOST:$APISERVER_PORT
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $token
contexts:
- name: vmcp-test
  context:
    cluster: vmcp-test
    user: $user
    namespace: default
current-context: vmcp-test
EOF
  chmod 600 "$file.tmp"
  mv -f "$file.tmp" "$file"
}

# --- starting --------------------------------------------------------------------------------

load_env() {
  [[ -f "$STATE/env" ]] || return 1
  # shellcheck source=/dev/null # written by save_env below
  source "$STATE/env"
}

save_env() {
  {
    printf 'ETCD_CLIENT_PORT=%q\nETCD_PEER_PORT=%q\nAPISERVER_PORT=%q\n' \
      "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT"
    printf 'ETCD_BIN=%q\nAPISERVER_BIN=%q\n' "$ETCD_BIN" "$APISERVER_BIN"
    printf 'NODE=%q\nAPISERVER_HOST=%q\n' "$NODE" "$APISERVER_HOST"
    if [[ "$NODE" == 1 ]]; then save_node_env; fi
  } >"$STATE/env"
}

start_etcd() {
  local extra=() help
  # Tests do not need durability; skipping fsync makes etcd much faster on a busy disk.
  # (--unsafe-no-fsync exists from etcd 3.5 on.)
  help="$("$ETCD_BIN" --help 2>&1 || true)"
  if [[ "$help" == *--unsafe-no-fsync* ]]; then extra+=(--unsafe-no-fsync); fi
  spawn etcd "$ETCD_BIN" \
    --name vmcp-test \
    --data-dir "$STATE/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "vmcp-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --log-level warn \
    "${extra[@]}"
  wait_for etcd "$(read_pid etcd)" etcd_healthy
}

start_apiserver_proc() {
  # Without a node (control plane only): admission ServiceAccount is disabled because without a
  # controller-manager no namespace ever gets its "default" ServiceAccount, and the plugin would
  # then reject every Pod. The endpoint reconciler is off because a loopback address is not a
  # valid endpoint for the "kubernetes" Service and nothing reaches the apiserver through a
  # Service anyway. --service-cluster-ip-range is only bookkeeping (no kube-proxy); a /16 so that
  # benchmarks can hold 1,000 Services (one per gateway) and tests that never reclaim theirs
  # (no garbage collection here) do not exhaust it.
  # With a node: see node_apiserver_flags (scripts/kube-test-env-node.sh).
  local mode=()
  if [[ "$NODE" == 1 ]]; then
    read -ra mode <<<"$(node_apiserver_flags)"
  else
    mode=(
      --authorization-mode=RBAC
      --service-cluster-ip-range=10.0.0.0/16
      --disable-admission-plugins=ServiceAccount
      --endpoint-reconciler-type=none
    )
  fi
  spawn kube-apiserver "$APISERVER_BIN" \
    --bind-address="$APISERVER_HOST" \
    --advertise-address="$APISERVER_HOST" \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$STATE/pki" \
    --tls-cert-file="$STATE/pki/apiserver.crt" \
    --tls-private-key-file="$STATE/pki/apiserver.key" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --token-auth-file="$STATE/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$STATE/pki/sa.pub" \
    --service-account-signing-key-file="$STATE/pki/sa.key" \
    --profiling=false \
    --v=1 \
    "${mode[@]}"
  wait_for kube-apiserver "$(read_pid kube-apiserver)" apiserver_ready
}

running() {
  load_env 2>/dev/null && is_ours "$(read_pid etcd)" && is_ours "$(read_pid kube-apiserver)" && apiserver_ready &&
    { [[ "$NODE" != 1 ]] || node_running; }
}

# One attempt at a fresh environment; returns 2 when a port was taken between choice and bind.
fresh_start() {
  local used
  mkdir -p "$STATE/logs"
  touch "$STATE/$MARKER"
  used="$(used_ports)"
  ETCD_CLIENT_PORT="$(pick_port "$used")"
  used+=$'\n'"$ETCD_CLIENT_PORT"
  ETCD_PEER_PORT="$(pick_port "$used")"
  used+=$'\n'"$ETCD_PEER_PORT"
  APISERVER_PORT="$(pick_port "$used")"
  used+=$'\n'"$APISERVER_PORT"
  save_env
  make_pki
  make_tokens
  write_kubeconfig "$STATE/kubeconfig" admin "$(cat "$STATE/admin.token")"
  write_kubeconfig "$STATE/user.kubeconfig" vmcp-test-user "$(cat "$STATE/user.token")"
  if [[ "$NODE" == 1 ]]; then
    prepare_node "$used" || return 1
    save_env
  fi
  log "starting etcd on 127.0.0.1:$ETCD_CLIENT_PORT ($("$ETCD_BIN" --version 2>/dev/null | head -n1))"
  if ! start_etcd; then
    port_clash etcd && return 2
    return 1
  fi
  log "starting kube-apiserver on $APISERVER_HOST:$APISERVER_PORT ($APISERVER_BIN)"
  if ! start_apiserver_proc; then
    port_clash kube-apiserver && return 2
    return 1
  fi
  if [[ "$NODE" == 1 ]]; then
    local rc=0
    start_node || rc=$?
    return "$rc"
  fi
}

port_clash() {
  grep -qi 'address already in use' "$STATE/logs/$1.log" 2>/dev/null
}

cmd_start() {
  check_state_dir
  lock_state
  if running; then
    if [[ "$WANT_NODE" == 1 && "$NODE" != 1 ]]; then
      die "running without a node in $STATE; stop it first (or use another VMCP_KUBE_ENV_DIR)"
    fi
    log "already running (kube-apiserver on $APISERVER_HOST:$APISERVER_PORT)"
    result "$STATE/kubeconfig"
    return 0
  fi
  # Anything left from a crash or a half-finished start: stop it and start from scratch.
  if [[ -d "$STATE" ]] || [[ -n "$(stray_pids)" ]]; then
    log "cleaning up stale state in $STATE"
    stop_all
  fi
  ensure_binaries "$NODE_FLAG"
  NODE="$WANT_NODE"
  APISERVER_HOST=127.0.0.1
  if [[ "$NODE" == 1 ]]; then APISERVER_HOST="$NODE_IP"; fi
  local attempt rc
  for attempt in 1 2 3; do
    rc=0
    fresh_start || rc=$?
    if ((rc == 0)); then
      log "ready: kube-apiserver https://$APISERVER_HOST:$APISERVER_PORT, etcd http://127.0.0.1:$ETCD_CLIENT_PORT"
      result "$STATE/kubeconfig"
      return 0
    fi
    log "start failed (attempt $attempt); tearing down"
    # Keep the logs of the failed attempt for diagnosis.
    rm -rf "$STATE.failed-logs"
    cp -r "$STATE/logs" "$STATE.failed-logs" 2>/dev/null || true
    stop_all
    ((rc == 2 && attempt < 3)) || break
    log "a port was taken by someone else; retrying with new ports"
  done
  die "could not start the test environment (logs kept in $STATE.failed-logs)"
}

cmd_stop() {
  check_state_dir
  lock_state
  stop_all
  rm -rf "$STATE.failed-logs"
  log "stopped"
}

cmd_stop_apiserver() {
  check_state_dir
  lock_state
  load_env || die "not running (no $STATE/env)"
  stop_apiserver_proc
}

cmd_start_apiserver() {
  check_state_dir
  lock_state
  load_env || die "not running (no $STATE/env); use start"
  is_ours "$(read_pid etcd)" || die "etcd is not running; use stop + start"
  if is_ours "$(read_pid kube-apiserver)"; then
    log "kube-apiserver already running"
  else
    log "starting kube-apiserver on $APISERVER_HOST:$APISERVER_PORT"
    start_apiserver_proc || die "kube-apiserver did not become ready"
  fi
  wait_for kube-apiserver "$(read_pid kube-apiserver)" apiserver_ready || die "kube-apiserver not ready"
  result "$STATE/kubeconfig"
}

cmd_status() {
  check_state_dir
  running
}

cmd_install() {
  ensure_binaries "$NODE_FLAG"
  log "kube-apiserver: $APISERVER_BIN"
  log "etcd: $ETCD_BIN"
  if [[ "$WANT_NODE" == 1 ]]; then log "node components: $K8S_BIN"; fi
}

cmd_installed() {
  binaries_present "$NODE_FLAG"
}

# shellcheck source=kube-test-env-node.sh
source "$REPO/scripts/kube-test-env-node.sh"

NODE=0
APISERVER_HOST=127.0.0.1
NODE_FLAG=""
WANT_NODE=0
case "${1:-}" in
  start | install | installed)
    case "${2:-}" in
      "") ;;
      --node) NODE_FLAG=--node WANT_NODE=1 ;;
      *) die "unknown option '$2' (only --node)" ;;
    esac
    ;;
esac

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  stop-apiserver) cmd_stop_apiserver ;;
  start-apiserver) cmd_start_apiserver ;;
  status) cmd_status ;;
  install) cmd_install ;;
  installed) cmd_installed ;;
  import-images) cmd_import_images "${@:2}" ;;
  *)
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
