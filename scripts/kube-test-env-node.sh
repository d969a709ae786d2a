# shellcheck shell=bash
# The node of scripts/kube-test-env.sh (`start --node`): sourced by it, not run on its own.
#
# On top of etcd + kube-apiserver: kube-controller-manager, kube-scheduler, containerd (+ runc and
# the CNI bridge plugin, Debian packages), a kubelet registered as node $NODE_NAME, and kube-proxy
# in nftables mode for Services (ClusterIPs) and in-cluster API access.
#
# Network: a bridge $NODE_BRIDGE with $NODE_IP on the private $POD_SUBNET (pods get their IPs from
# it, no masquerade) and a route for the Service range $SERVICE_SUBNET onto that bridge, so a
# ClusterIP never leaves the machine even without a rule for it. The API server and the kubelet
# listen on $NODE_IP (pods cannot reach the host's loopback); every other component listens on
# loopback. If IP forwarding was off, it is switched on for the bridge only: a table of ours
# drops every forwarded packet that does not go from the bridge to the bridge (pod → Service →
# pod needs routing on the host; nothing else may be routed).
#
# Why kube-proxy in nftables mode: it is what a real cluster uses (GA since 1.33), the kernel and
# nft here support it, and it keeps all its rules in its own tables (`ip kube-proxy`,
# `ip6 kube-proxy`), so stop removes them exactly. Its conntrack sysctl tuning is switched off.
#
# stop undoes everything: pods' processes and network namespaces, containerd shims, mounts under
# the state dir, the /kubepods cgroups, nft tables, the bridge and route, and the kernel settings
# the kubelet changes (their old values are recorded at start).

NODE_NAME="vmcp-node"
NODE_BRIDGE="vmcp0"
POD_SUBNET="10.213.0.0/24"
NODE_IP="10.213.0.1"
SERVICE_SUBNET="10.214.0.0/24"
KUBERNETES_SERVICE_IP="10.214.0.1"
CNI_NETWORK="vmcp-test"
NFT_GUARD_TABLE="vmcp_test_env"
PAUSE_IMAGE="localhost/vmcp/pause:latest"
# sysctls the kubelet (and kube-proxy, and we) may change; restored at stop.
NODE_SYSCTLS=(
  vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/ipv4/ip_forward
  net/ipv4/conf/all/route_localnet net/bridge/bridge-nf-call-iptables
  net/netfilter/nf_conntrack_max net/netfilter/nf_conntrack_tcp_timeout_established
  net/netfilter/nf_conntrack_tcp_timeout_close_wait
)
NODE_PACKAGES=(containerd runc containernetworking-plugins nftables conntrack)
NODE_LOCK="/run/lock/vmcp-kube-test-env-node.lock"

# --- packages --------------------------------------------------------------------------------

node_packages_present() {
  command -v containerd >/dev/null && command -v containerd-shim-runc-v2 >/dev/null &&
    command -v ctr >/dev/null && command -v runc >/dev/null && command -v nft >/dev/null &&
    [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]]
}

# Debian's containerd, runc and CNI plugins (the package installs no running service here: the
# sandbox has no systemd; we run containerd ourselves with a private config).
ensure_node_packages() {
  node_packages_present && return 0
  command -v apt-get >/dev/null || die "apt-get not found: install ${NODE_PACKAGES[*]} yourself"
  [[ "$(id -u)" == 0 ]] || die "installing ${NODE_PACKAGES[*]} needs root"
  log "installing ${NODE_PACKAGES[*]} (Debian packages)"
  (
    exec 7>"$CACHE/.apt-install.lock"
    flock 7
    DEBIAN_FRONTEND=noninteractive apt-get -q update >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "${NODE_PACKAGES[@]}" >&2
  ) || die "apt-get install ${NODE_PACKAGES[*]} failed"
  node_packages_present || die "${NODE_PACKAGES[*]} installed, but containerd/runc/nft/CNI plugins are still missing"
}

# --- apiserver side ----------------------------------------------------------------------------

# Extra subjectAltNames of the API server's certificate: the node address it listens on and the
# names pods use (the `kubernetes` Service's ClusterIP and DNS names).
node_apiserver_sans() {
  [[ "${NODE:-0}" == 1 ]] || return 0
  printf ',IP:%s,IP:%s,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local' \
    "$NODE_IP" "$KUBERNETES_SERVICE_IP"
}

# Flags of the API server with a node: the Node authorizer for the kubelet, ServiceAccount
# admission on (the controller-manager creates the accounts), the endpoint reconciler on (the
# `kubernetes` Service points at $NODE_IP), and a client certificate for the kubelet API (logs).
node_apiserver_flags() {
  printf '%s ' \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --service-cluster-ip-range="$SERVICE_SUBNET" \
    --endpoint-reconciler-type=lease \
    --kubelet-client-certificate="$STATE/pki/kubelet-client.crt" \
    --kubelet-client-key="$STATE/pki/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP
}

# --- preparing ---------------------------------------------------------------------------------

# Ports, tokens, kubeconfigs, certificates and host network for the node. $1: ports in use.
prepare_node() {
  local used="$1" name
  [[ "$(id -u)" == 0 ]] || die "--node needs root (kubelet, containerd, bridge)"
  mkdir -p "$STATE/node" "$STATE/logs"
  exec 6>"$NODE_LOCK"
  flock -n 6 || die "another node of scripts/kube-test-env.sh is starting or stopping on this machine"
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    exec 6>&-
    die "bridge $NODE_BRIDGE exists: another --node environment runs on this machine (one node per machine)"
  fi
  # From here on the host's node resources (bridge, /kubepods cgroups, kube-proxy's tables, the
  # sysctls) are this state dir's: only an owner's stop may remove them.
  touch "$STATE/node/host-owned"
  for name in KUBELET_PORT KUBELET_HEALTHZ_PORT PROXY_HEALTHZ_PORT PROXY_METRICS_PORT CM_PORT SCHED_PORT; do
    printf -v "$name" '%s' "$(pick_port "$used")"
    used+=$'\n'"${!name}"
  done
  CONTAINERD_ADDRESS="$STATE/containerd/containerd.sock"
  ((${#CONTAINERD_ADDRESS} < 100)) || die "state dir path too long for a unix socket: $CONTAINERD_ADDRESS"
  save_node_env
  record_host_state
  make_node_pki
  make_node_tokens
  setup_node_network
  exec 6>&-
}

save_node_env() {
  [[ -d "$STATE/node" ]] || return 0
  {
    printf 'NODE_NAME=%q\nNODE_IP=%q\nPOD_SUBNET=%q\nSERVICE_SUBNET=%q\n' "$NODE_NAME" "$NODE_IP" "$POD_SUBNET" "$SERVICE_SUBNET"
    printf 'KUBERNETES_SERVICE_IP=%q\nNODE_BRIDGE=%q\nCONTAINERD_ADDRESS=%q\n' "$KUBERNETES_SERVICE_IP" "$NODE_BRIDGE" "$CONTAINERD_ADDRESS"
    printf 'KUBELET_PORT=%q\nKUBELET_HEALTHZ_PORT=%q\nPROXY_HEALTHZ_PORT=%q\nPROXY_METRICS_PORT=%q\nCM_PORT=%q\nSCHED_PORT=%q\n' \
      "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$PROXY_HEALTHZ_PORT" "$PROXY_METRICS_PORT" "$CM_PORT" "$SCHED_PORT"
    printf 'PAUSE_IMAGE=%q\n' "$PAUSE_IMAGE"
  } >"$STATE/node/env"
}

load_node_env() {
  [[ -f "$STATE/node/env" ]] || return 1
  # shellcheck source=/dev/null # written by save_node_env
  source "$STATE/node/env"
}

# What stop must restore or leave alone: sysctl values, network namespaces and top-level dirs
# that existed before.
record_host_state() {
  local key
  [[ -f "$STATE/node/sysctl.saved" ]] && return 0
  for key in "${NODE_SYSCTLS[@]}"; do
    if [[ -r "/proc/sys/$key" ]]; then printf '%s=%s\n' "$key" "$(cat "/proc/sys/$key")"; fi
  done >"$STATE/node/sysctl.saved.tmp"
  mv "$STATE/node/sysctl.saved.tmp" "$STATE/node/sysctl.saved"
  ls /run/netns 2>/dev/null >"$STATE/node/netns.before" || true
  local d
  for d in /run/containerd /run/netns /var/lib/cni; do
    [[ -e "$d" ]] && printf '%s\n' "$d"
  done >"$STATE/node/dirs.before" || true
}

# A client certificate for the API server → kubelet connection (logs, exec), signed by our CA.
make_node_pki() {
  local pki="$STATE/pki"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$pki/kubelet-client.key" -out "$pki/kubelet-client.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$pki/client.ext"
  openssl x509 -req -in "$pki/kubelet-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/client.ext" -out "$pki/kubelet-client.crt" 2>/dev/null
  chmod 600 "$pki/kubelet-client.key"
}

# Static tokens with the identities the bootstrap RBAC policy (and the Node authorizer) expect.
make_node_tokens() {
  local entry name user groups token
  for entry in \
    "kubelet|system:node:$NODE_NAME|system:nodes" \
    "controller-manager|system:kube-controller-manager|" \
    "scheduler|system:kube-scheduler|" \
    "proxy|system:kube-proxy|"; do
    IFS='|' read -r name user groups <<<"$entry"
    token="$(openssl rand -hex 32)"
    if [[ -n "$groups" ]]; then
      printf '%s,%s,%s,"%s"\n' "$token" "$user" "$user" "$groups" >>"$STATE/tokens.csv"
    else
      printf '%s,%s,%s\n' "$token" "$user" "$user" >>"$STATE/tokens.csv"
    fi
    write_kubeconfig "$STATE/node/$name.kubeconfig" "$user" "$token"
  done
}

setup_node_network() {
  log "creating bridge $NODE_BRIDGE ($NODE_IP on $POD_SUBNET), Service route $SERVICE_SUBNET"
  ip link add "$NODE_BRIDGE" type bridge
  ip addr add "$NODE_IP/${POD_SUBNET#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  ip route add "$SERVICE_SUBNET" dev "$NODE_BRIDGE" src "$NODE_IP"
  if [[ "$(cat /proc/sys/net/ipv4/ip_forward)" == 0 ]]; then
    nft -f - <<EOF
table inet $NFT_GUARD_TABLE {
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "$NODE_BRIDGE" oifname "$NODE_BRIDGE" accept
    drop
  }
}
EOF
    sysctl -qw net.ipv4.ip_forward=1
  fi
}

# --- starting ----------------------------------------------------------------------------------

start_node() {
  load_node_env || return 1
  start_controller_manager || return 1
  start_scheduler || return 1
  start_containerd || return 1
  import_pause_image || return 1
  start_kubelet || return 1
  start_kube_proxy || return 1
  log "waiting for node $NODE_NAME to be Ready, the kubernetes Service endpoints and the default ServiceAccount"
  wait_for kubelet "$(read_pid kubelet)" node_ready || return 1
  wait_for kube-controller-manager "$(read_pid kube-controller-manager)" default_sa_exists || return 1
  wait_for kube-proxy "$(read_pid kube-proxy)" service_rules_programmed || return 1
  log "node $NODE_NAME ready (pods on $POD_SUBNET, Services on $SERVICE_SUBNET)"
}

healthz_ok() { [[ "$(curl -fsS --max-time 2 "$1" 2>/dev/null)" == ok ]]; }
healthz_ok_k() { [[ "$(curl -fsSk --max-time 2 "$1" 2>/dev/null)" == ok ]]; }

start_controller_manager() {
  log "starting kube-controller-manager"
  spawn kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$STATE/node/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$CM_PORT" \
    --cert-dir="$STATE/node/cm-certs" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$STATE/pki/sa.key" \
    --root-ca-file="$STATE/pki/ca.crt" \
    --cluster-name=vmcp-test \
    --allocate-node-cidrs=false \
    --service-cluster-ip-range="$SERVICE_SUBNET" \
    --profiling=false --v=1
  wait_for kube-controller-manager "$(read_pid kube-controller-manager)" healthz_ok_k "https://127.0.0.1:$CM_PORT/healthz"
}

start_scheduler() {
  log "starting kube-scheduler"
  spawn kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$STATE/node/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
    --cert-dir="$STATE/node/sched-certs" \
    --leader-elect=false --profiling=false --v=1
  wait_for kube-scheduler "$(read_pid kube-scheduler)" healthz_ok_k "https://127.0.0.1:$SCHED_PORT/healthz"
}

# containerd with everything (root, state, socket, opt dir, CNI config) in the state dir.
# restrict_oom_score_adj: the sandbox lacks CAP_SYS_RESOURCE (without it runc fails every sandbox
# with "can't get final child's PID from pipe: EOF").
start_containerd() {
  local c="$STATE/containerd"
  mkdir -p "$c/root" "$c/state" "$c/opt" "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/cni/net.d/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$STATE/cni/ipam"
      }
    }
  ]
}
EOF
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_ADDRESS"

[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  log "starting containerd ($(containerd --version 2>/dev/null | awk '{print $3}'))"
  spawn containerd containerd --config "$c/config.toml"
  wait_for containerd "$(read_pid containerd)" ctr_ok
}

ctr_node() { ctr --address "$CONTAINERD_ADDRESS" -n k8s.io "$@"; }
ctr_ok() { [[ -S "$CONTAINERD_ADDRESS" ]] && ctr_node version >/dev/null 2>&1; }

import_pause_image() {
  local dir="$STATE/images"
  mkdir -p "$dir"
  "$REPO/scripts/build-images.sh" --out "$dir" pause >&2 || {
    log "building the pause image failed"
    return 1
  }
  ctr_node images import "$dir/pause.tar" >&2 || return 1
  # The kubelet's image GC must never remove it (it cannot be pulled from anywhere).
  ctr_node images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
}

start_kubelet() {
  local k="$STATE/kubelet"
  mkdir -p "$k/root" "$k/manifests" "$k/pod-logs" "$k/certs"
  cat >"$k/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
containerRuntimeEndpoint: unix://$CONTAINERD_ADDRESS
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
staticPodPath: $k/manifests
podLogsDir: $k/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization:
  mode: AlwaysAllow
# Images are imported, never pulled: garbage collection must not delete them, and a busy disk
# must not evict test pods.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
# No DNS server in pods: nothing in the tests resolves names, and pods must not send anything
# beyond the bridge.
resolvConf: ""
registerNode: true
syncFrequency: 10s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 5s
EOF
  log "starting kubelet on $NODE_IP:$KUBELET_PORT (node $NODE_NAME)"
  spawn kubelet "$K8S_BIN/kubelet" \
    --config="$k/config.yaml" \
    --kubeconfig="$STATE/node/kubelet.kubeconfig" \
    --root-dir="$k/root" \
    --cert-dir="$k/certs" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --v=1
  wait_for kubelet "$(read_pid kubelet)" healthz_ok "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
}

start_kube_proxy() {
  cat >"$STATE/node/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: $STATE/node/proxy.kubeconfig
hostnameOverride: $NODE_NAME
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
clusterCIDR: $POD_SUBNET
nodePortAddresses: ["$NODE_IP/32"]
# No tuning of the host's conntrack table (0 = leave the kernel's values).
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  log "starting kube-proxy (nftables mode)"
  spawn kube-proxy "$K8S_BIN/kube-proxy" --config="$STATE/node/kube-proxy.yaml" --v=1
  wait_for kube-proxy "$(read_pid kube-proxy)" healthz_ok_any "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
}

# kube-proxy's /healthz answers JSON, not "ok".
healthz_ok_any() { curl -fsS --max-time 2 "$1" >/dev/null 2>&1; }

node_ready() {
  local body
  body="$(admin_get "/api/v1/nodes/$NODE_NAME" 2>/dev/null)" || return 1
  jq -e '.status.conditions[] | select(.type == "Ready") | .status == "True"' <<<"$body" >/dev/null 2>&1
}

default_sa_exists() { admin_get /api/v1/namespaces/default/serviceaccounts/default >/dev/null 2>&1; }

# The `kubernetes` Service's ClusterIP is in kube-proxy's table.
service_rules_programmed() {
  nft list table ip kube-proxy 2>/dev/null | grep -q "$KUBERNETES_SERVICE_IP"
}

node_running() {
  load_node_env 2>/dev/null || return 1
  local name
  for name in kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    is_ours "$(read_pid "$name")" || return 1
  done
  node_ready
}

cmd_import_images() {
  check_state_dir
  load_env 2>/dev/null && load_node_env || die "no node running in $STATE (start --node)"
  (($# > 0)) || die "import-images: no image archive given"
  local f
  for f in "$@"; do
    [[ -f "$f" ]] || die "import-images: $f does not exist"
    ctr_node images import "$f" >&2 || die "import of $f failed"
  done
}

# --- stopping ----------------------------------------------------------------------------------

# Anything of a node left without its env file (crash during start).
node_leftovers() {
  [[ -d "$STATE/node" || -d "$STATE/containerd" || -d "$STATE/kubelet" ]]
}

# The node's processes: kubelet, kube-proxy, scheduler, controller-manager, containers, containerd.
stop_node() {
  load_node_env 2>/dev/null || true
  CONTAINERD_ADDRESS="${CONTAINERD_ADDRESS:-$STATE/containerd/containerd.sock}"
  local name pid
  # Nothing may start new containers while we tear down: the kubelet first.
  for name in kubelet kube-proxy kube-scheduler kube-controller-manager; do
    kill_and_wait "$name" "$(read_pid "$name")"
    rm -f "$STATE/$name.pid"
  done
  stop_containers
  kill_and_wait containerd "$(read_pid containerd)"
  rm -f "$STATE/containerd.pid"
  # Shims (their command line names our containerd socket) and anything still in a pod cgroup.
  for pid in $(node_stray_pids); do kill_and_wait "stray node process" "$pid"; done
  if owns_host; then kill_pod_processes; fi
}

owns_host() { [[ -e "$STATE/node/host-owned" ]]; }

# After the control plane has stopped (the API server listens on the bridge's address; with it
# gone, its graceful shutdown hangs): everything the node left on the host.
clean_node_host() {
  unmount_state_dir
  # A start that found another node running never owned anything else.
  owns_host || return 0
  remove_pod_netns
  remove_pod_cgroups
  remove_node_network
  restore_sysctls
  remove_new_dirs
}

# Kill every task and delete every container of containerd's k8s.io namespace (pods included).
stop_containers() {
  ctr_ok || return 0
  local id
  for id in $(ctr_node tasks ls -q 2>/dev/null); do
    ctr_node tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr_node tasks ls -q 2>/dev/null); do
    ctr_node tasks delete -f "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr_node containers ls -q 2>/dev/null); do
    ctr_node containers delete "$id" >/dev/null 2>&1 || true
  done
}

node_stray_pids() {
  local d pid exe
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    exe="$(readlink "$d/exe" 2>/dev/null || true)"
    case "${exe##*/}" in
      kubelet | kube-proxy | kube-scheduler | kube-controller-manager | containerd | containerd-shim*)
        if is_ours "$pid"; then printf '%s\n' "$pid"; fi
        ;;
    esac
  done
}

# Processes left in the pods' cgroups (containers whose shim died): theirs only, by cgroup.
kill_pod_processes() {
  local round pids
  for round in 1 2 3 4 5; do
    pids="$(cat /sys/fs/cgroup/pids/kubepods/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/cgroup.procs \
      /sys/fs/cgroup/pids/kubepods/*/*/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/*/*/cgroup.procs 2>/dev/null | sort -u || true)"
    [[ -n "$pids" ]] || return 0
    log "killing processes left in pod cgroups: $(tr '\n' ' ' <<<"$pids")"
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  done
}

# Network namespaces containerd created for pods (those not there at start).
remove_pod_netns() {
  local ns
  for ns in $(ls /run/netns 2>/dev/null); do
    [[ "$ns" == cni-* ]] || continue
    grep -qx "$ns" "$STATE/node/netns.before" 2>/dev/null && continue
    ip netns delete "$ns" 2>/dev/null || { umount "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; } || true
  done
  rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
}

# Every mount point under the state dir (kubelet's rshared root, pod volumes, container rootfs
# overlays), deepest first.
unmount_state_dir() {
  local mp round real
  # /proc/self/mountinfo shows resolved paths (the state dir may be reached through a symlink).
  real="$(realpath -m "$STATE")"
  for round in 1 2 3; do
    local mounts
    mounts="$(awk -v s="$real/" 'index($5, s) == 1 || $5 == substr(s, 1, length(s) - 1) { print $5 }' /proc/self/mountinfo | sort -r -u)"
    [[ -n "$mounts" ]] || return 0
    while read -r mp; do
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done <<<"$mounts"
  done
}

remove_pod_cgroups() {
  local root
  for root in /sys/fs/cgroup/*/; do
    [[ -d "$root/kubepods" ]] || continue
    # Depth first: a cgroup can only be removed once its children are gone.
    find "$root/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "$root/kubepods" ]] && log "warning: could not remove ${root}kubepods"
  done
  return 0
}

remove_node_network() {
  nft delete table ip kube-proxy 2>/dev/null || true
  nft delete table ip6 kube-proxy 2>/dev/null || true
  nft delete table inet "$NFT_GUARD_TABLE" 2>/dev/null || true
  ip route del "$SERVICE_SUBNET" 2>/dev/null || true
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    log "deleting bridge $NODE_BRIDGE"
    ip link delete "$NODE_BRIDGE" type bridge || true
  fi
}

restore_sysctls() {
  local line key value
  [[ -f "$STATE/node/sysctl.saved" ]] || return 0
  while IFS='=' read -r key value; do
    [[ -w "/proc/sys/$key" ]] || continue
    if [[ "$(cat "/proc/sys/$key")" != "$value" ]]; then
      log "restoring ${key//\//.} = $value"
      printf '%s\n' "$value" >"/proc/sys/$key" || true
    fi
  done <"$STATE/node/sysctl.saved"
}

# Directories containerd/CNI create outside the state dir when they did not exist before.
remove_new_dirs() {
  local d
  [[ -f "$STATE/node/dirs.before" ]] || return 0
  for d in /run/containerd /var/lib/cni; do
    grep -qx "$d" "$STATE/node/dirs.before" && continue
    [[ -e "$d" ]] && rm -rf "$d"
  done
  # (Only when empty: network namespaces of others live there too.)
  grep -qx /run/netns "$STATE/node/dirs.before" || rmdir /run/netns 2>/dev/null || true
  return 0
}
