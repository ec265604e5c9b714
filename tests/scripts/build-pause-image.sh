#!/usr/bin/env bash
# Builds the pod sandbox ("pause") image the test node's containerd uses, with no registry:
# Kubernetes' own pause.c from the Go module cache (the k8s.io/kubernetes module that
# install-tools.sh builds the node binaries from), compiled statically, is the image's only
# file. Idempotent: the archive is cached per pause version. Prints the archive's path.
#
#   METALLB_RS_CACHE  cache root (default: $HOME/.cache/metallb-rs)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${METALLB_RS_CACHE:-$HOME/.cache/metallb-rs}
# shellcheck source=../../scripts/lib/oci-image.sh
source "$repo/scripts/lib/oci-image.sh"

log() { echo "build-pause-image: $*" >&2; }

kubernetes_version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$repo/tests/tools/kubernetes/go.mod")
source_dir=$(cd "$repo/tests/tools/kubernetes" && go mod download -json "k8s.io/kubernetes@$kubernetes_version" | jq -r .Dir)/build/pause
# The tag upstream's Makefile gives the image; the harness names the image by it.
pause_version=$(awk -F' *\\?= *' '$1 == "TAG" { print $2 }' "$source_dir/Makefile")
[ -n "$pause_version" ] || { log "no TAG in $source_dir/Makefile"; exit 1; }
archive="$cache/images/pause-$pause_version.tar"

if [ ! -s "$archive" ]; then
  command -v gcc >/dev/null || { log "gcc is missing: apt-get install gcc libc6-dev"; exit 1; }
  log "building pause $pause_version from $source_dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/rootfs"
  # The flags of upstream's Makefile: a static binary needs nothing else in the image.
  gcc -Os -Wall -Werror -static "-DVERSION=v$pause_version-metallb-rs" \
    -o "$work/rootfs/pause" "$source_dir/linux/pause.c"
  # 65535 as upstream's image does: the sandbox needs no privileges.
  oci_image_from_rootfs "localhost/metallb-rs/pause:$pause_version" "$work/rootfs" "$archive" \
    --entrypoint '["/pause"]' --user 65535:65535
fi
echo "$archive"
