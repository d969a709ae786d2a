#!/usr/bin/env bash
# build-images.sh — OCI images of vmcp, vmcp-operator, vmcp-example-server and a pause image, without a daemon.
#
# Usage:
#   scripts/build-images.sh [--out DIR] [--bin-dir DIR] [IMAGE...]
#
# IMAGE: vmcp, vmcp-operator, vmcp-example-server, pause (default: all four). For each, DIR/<image>.tar is an
# OCI image layout (oci-layout, index.json, blobs/sha256/...) packed with tar: what
# `ctr -n k8s.io images import` reads (scripts/kube-test-env.sh import-images does that for the
# test node) and what a registry push would upload (e.g. `skopeo copy oci-archive:DIR/vmcp.tar
# docker://REGISTRY/vmcp:TAG`). Image names (the io.containerd.image.name annotation):
#   localhost/vmcp/vmcp:latest, localhost/vmcp/vmcp-operator:latest, localhost/vmcp/vmcp-example-server:latest,
#   localhost/vmcp/pause:latest (set VMCP_IMAGE_TAG to pin a tag)
#
# Each image is one layer: the stripped release binary, the shared libraries it links (copied
# from this machine, as `ldd` lists them), the CA bundle (/etc/ssl/certs/ca-certificates.crt),
# /etc/passwd and /etc/group with the user `vmcp` (65532:65532, the image's user), and /tmp. The pause image is a static C program
# (images/pause/pause.c) that sleeps until SIGTERM/SIGINT and reaps children.
# `Dockerfile` at the top of the repository builds an equivalent vmcp image with a Docker daemon.
#
# Layers are reproducible: sorted entries, mtime 0, owner 0:0, gzip without a timestamp.
#
# Environment: VMCP_IMAGE_TAG (default latest).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$REPO/target/images"
BIN_DIR="$REPO/target/release"
TAG="${VMCP_IMAGE_TAG:-latest}"
IMAGES=()
UID_GID=65532

log() { printf '[build-images] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

while (($# > 0)); do
  case "$1" in
    --out)
      OUT="$2"
      shift 2
      ;;
    --bin-dir)
      BIN_DIR="$2"
      shift 2
      ;;
    vmcp | vmcp-operator | vmcp-example-server | pause)
      IMAGES+=("$1")
      shift
      ;;
    -h | --help)
      sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
      exit 0
      ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
((${#IMAGES[@]} > 0)) || IMAGES=(vmcp vmcp-operator vmcp-example-server pause)
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

sha256() { sha256sum "$1" | awk '{print $1}'; }

# Minimal /etc for a non-root user; no shell, no home.
write_etc() {
  local root="$1"
  mkdir -p "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/:/sbin/nologin\nvmcp:x:%s:%s:vmcp:/tmp:/sbin/nologin\n' "$UID_GID" "$UID_GID" >"$root/etc/passwd"
  printf 'root:x:0:\nvmcp:x:%s:\n' "$UID_GID" >"$root/etc/group"
}

# The CA bundle of this machine (Debian's ca-certificates): vmcp's HTTP client loads the system
# roots at start (for https backends) and refuses to start without any.
write_ca_bundle() {
  local root="$1" bundle=/etc/ssl/certs/ca-certificates.crt
  [[ -s "$bundle" ]] || die "$bundle missing (apt-get install ca-certificates)"
  mkdir -p "$root/etc/ssl/certs"
  cp -L "$bundle" "$root/etc/ssl/certs/ca-certificates.crt"
}

# Copy a binary, stripped, plus every shared library it loads (same paths as on this machine).
install_binary() {
  local src="$1" root="$2" dest="$3" lib
  [[ -x "$src" ]] || die "$src not found or not executable (cargo build --release --workspace --bins)"
  mkdir -p "$root$(dirname "$dest")"
  strip -o "$root$dest" "$src"
  chmod 0755 "$root$dest"
  # ldd prints "name => /path (addr)" or "/lib64/ld-linux... (addr)"; a static binary prints
  # "not a dynamic executable" (exit 1).
  for lib in $(ldd "$src" 2>/dev/null | awk '/=> \// {print $3} /^[[:space:]]*\// {print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

# pack_image NAME ROOTFS CONFIG_JSON: OCI layout archive $OUT/NAME.tar from a rootfs directory.
pack_image() {
  local name="$1" root="$2" image_config="$3" work layer_tar diff_id layer_digest layer_size
  work="$(mktemp -d)"
  mkdir -p "$work/layout/blobs/sha256"
  layer_tar="$work/layer.tar"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$layer_tar" .
  diff_id="$(sha256 "$layer_tar")"
  gzip -n -9 -c "$layer_tar" >"$work/layer.tar.gz"
  layer_digest="$(sha256 "$work/layer.tar.gz")"
  layer_size="$(stat -c %s "$work/layer.tar.gz")"
  mv "$work/layer.tar.gz" "$work/layout/blobs/sha256/$layer_digest"

  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/build-images.sh"}]}' \
    "$image_config" "$diff_id" >"$work/config.json"
  local config_digest config_size
  config_digest="$(sha256 "$work/config.json")"
  config_size="$(stat -c %s "$work/config.json")"
  mv "$work/config.json" "$work/layout/blobs/sha256/$config_digest"

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
  local manifest_digest manifest_size
  manifest_digest="$(sha256 "$work/manifest.json")"
  manifest_size="$(stat -c %s "$work/manifest.json")"
  mv "$work/manifest.json" "$work/layout/blobs/sha256/$manifest_digest"

  local ref="localhost/vmcp/$name:$TAG"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$manifest_size" "$ref" "$TAG" >"$work/layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/layout" -cf "$OUT/$name.tar.tmp" .
  mv -f "$OUT/$name.tar.tmp" "$OUT/$name.tar"
  rm -rf "$work"
  log "$OUT/$name.tar: $ref (layer $((layer_size / 1024)) KiB, sha256:${manifest_digest:0:12})"
}

build_binary_image() {
  local name="$1" exposed="$2" root
  root="$(mktemp -d)"
  write_etc "$root"
  write_ca_bundle "$root"
  install_binary "$BIN_DIR/$name" "$root" "/usr/local/bin/$name"
  pack_image "$name" "$root" \
    "{\"User\":\"$UID_GID:$UID_GID\",\"Entrypoint\":[\"/usr/local/bin/$name\"],\"WorkingDir\":\"/tmp\",\"Env\":[\"PATH=/usr/local/bin:/usr/bin:/bin\"],\"ExposedPorts\":{\"$exposed/tcp\":{}},\"Labels\":{\"org.opencontainers.image.source\":\"vmcp\"}}"
  rm -rf "$root"
}

build_pause_image() {
  local root
  command -v gcc >/dev/null || die "gcc not found: needed to build the pause image"
  root="$(mktemp -d)"
  gcc -static -Os -s -Wall -Wextra -Werror -o "$root/pause" "$REPO/images/pause/pause.c"
  pack_image pause "$root" "{\"User\":\"$UID_GID:$UID_GID\",\"Entrypoint\":[\"/pause\"]}"
  rm -rf "$root"
}

for image in "${IMAGES[@]}"; do
  case "$image" in
    vmcp) build_binary_image vmcp 4483 ;;
    vmcp-operator) build_binary_image vmcp-operator 8081 ;;
    vmcp-example-server) build_binary_image vmcp-example-server 8080 ;;
    pause) build_pause_image ;;
  esac
done
