#!/usr/bin/env bash
# Installs every external component the tests and the demo use, idempotently.
#
# Debian packages come from apt; Go programs are built from the wrapper modules in
# tests/tools/ (or `go install`ed) into a cache outside the work tree, one directory per
# version, so a second run only checks stamps. Prints the directory that holds the tools.
#
#   METALLB_RS_CACHE  cache root (default: $HOME/.cache/metallb-rs)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${METALLB_RS_CACHE:-$HOME/.cache/metallb-rs}
bin="$cache/bin"
mkdir -p "$bin"

log() { echo "install-tools: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- Debian packages -------------------------------------------------------------------
debian_packages=(bird2 frr gobgpd iproute2 procps jq curl openssl iputils-arping ndisc6
  # The test node: runc under containerd, the CNI plugins (in /usr/lib/cni), what kube-proxy
  # and the kubelet call, nsenter (util-linux), and what builds the pause image.
  runc containernetworking-plugins iptables conntrack util-linux buildah gcc libc6-dev)
missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# The packages' own services would hold BGP ports and config we do not own; tests start
# their own instances inside network namespaces.
for svc in bird frr gobgpd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    as_root systemctl disable --now "$svc" >&2 || true
  fi
done

# --- Go programs ---------------------------------------------------------------------------
# build_tool NAME MODULE PACKAGE: builds PACKAGE from the wrapper module tests/tools/MODULE into a
# directory keyed by the module's go.mod/go.sum and the Go version, then links bin/NAME to it.
build_tool() {
  local name=$1 module="$repo/tests/tools/$2" package=$3
  local key
  key=$( (cat "$module/go.mod" "$module/go.sum"; go version) | sha256sum | cut -c1-12)
  local version
  version=$(awk -v pkg="${package%%/cmd/*}" '$1 == "require" && $2 ~ pkg { print $3 } $1 ~ pkg && $2 ~ /^v/ { print $2 }' "$module/go.mod" | head -n1)
  local dir="$cache/tools/$name-$version-$key"
  if [ ! -x "$dir/$name" ]; then
    log "building $name $version (this takes a few minutes the first time)"
    mkdir -p "$dir.tmp"
    (cd "$module" && CGO_ENABLED=0 go build -trimpath -o "$dir.tmp/$name" "$package") >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  ln -sfn "$dir/$name" "$bin/$name"
}

go_install() {
  local name=$1 package=$2 version=$3
  local dir="$cache/tools/$name-$version"
  if [ ! -x "$dir/$name" ]; then
    log "go install $package@$version"
    GOBIN="$dir" CGO_ENABLED=0 go install "$package@$version" >&2
  fi
  ln -sfn "$dir/$name" "$bin/$name"
}

command -v go >/dev/null || { log "Go is required (https://go.dev/doc/install)"; exit 1; }
go_install grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl v1.9.3
go_install helm helm.sh/helm/v4/cmd/helm v4.3.2
# The test node's cluster DNS (tests/src/kube_addons.rs), as an image made from this binary.
go_install coredns github.com/coredns/coredns v1.15.0
# Prometheus 3.16 and promtool (the Go module tags 3.x releases v0.3xx.y): the scrape test's
# server (tests/src/prometheus.rs) and the alerting rules' checks. Built without the web UI's
# assets (the builtinassets tag): the tests use the HTTP API only.
go_install prometheus github.com/prometheus/prometheus/cmd/prometheus v0.316.0
go_install promtool github.com/prometheus/prometheus/cmd/promtool v0.316.0
build_tool etcd etcd go.etcd.io/etcd/server/v3
build_tool kube-apiserver kubernetes k8s.io/kubernetes/cmd/kube-apiserver
build_tool kubectl kubernetes k8s.io/kubernetes/cmd/kubectl
# The test node (tests/src/kube_node.rs): the node and cluster components of the same release.
build_tool kubelet kubernetes k8s.io/kubernetes/cmd/kubelet
build_tool kube-proxy kubernetes k8s.io/kubernetes/cmd/kube-proxy
build_tool kube-controller-manager kubernetes k8s.io/kubernetes/cmd/kube-controller-manager
build_tool kube-scheduler kubernetes k8s.io/kubernetes/cmd/kube-scheduler
# containerd 2: Kubernetes 1.36's kubelet needs a CRI that reports its cgroup driver, which
# Debian's containerd 1.6 does not. The shim must sit beside containerd (found on PATH).
build_tool containerd containerd github.com/containerd/containerd/v2/cmd/containerd
build_tool containerd-shim-runc-v2 containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
build_tool ctr containerd github.com/containerd/containerd/v2/cmd/ctr
build_tool jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger

# The test node's sandbox image, built from Kubernetes' pause.c in the module cache.
"$repo/tests/scripts/build-pause-image.sh" >/dev/null

echo "$bin"
