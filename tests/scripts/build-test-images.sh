#!/usr/bin/env bash
# Builds the images the tests run on a real node besides metallb-rs's own
# (scripts/build-image.sh): the test echo server, CoreDNS (the cluster DNS the manifests' Service
# names need) and Jaeger (deploy/components/jaeger), each from a binary this repository builds
# or the tool installer built from its Go module, as OCI archives in the tool cache. An image is
# rebuilt only when its binary changes. Prints one line per image: `reference archive`.
#
#   tests/scripts/build-test-images.sh echo coredns jaeger
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../../scripts/lib/oci-image.sh
source "$repo/scripts/lib/oci-image.sh"
cache=${METALLB_RS_CACHE:-$HOME/.cache/metallb-rs}
images="$cache/images"
mkdir -p "$images"

# image NAME BINARY PATH_IN_IMAGE [buildah config options...]: the image NAME with BINARY (and
# its libraries, if it has any) at PATH_IN_IMAGE as its entrypoint, tagged by the binary's hash.
image() {
  local name=$1 binary=$2 path=$3
  shift 3
  [ -x "$binary" ] || {
    echo "build-test-images: $binary is missing (run tests/scripts/install-tools.sh and cargo build --workspace --bins)" >&2
    return 1
  }
  local tag
  tag=$(sha256sum "$(readlink -f "$binary")" | cut -c1-12)
  local reference="localhost/metallb-test-$name:$tag"
  local archive="$images/$name-$tag.oci.tar"
  if [ ! -f "$archive" ]; then
    local rootfs
    rootfs=$(mktemp -d)
    install -D -m 0755 "$(readlink -f "$binary")" "$rootfs$path"
    oci_copy_libraries "$rootfs" "$binary"
    oci_image_from_rootfs "$reference" "$rootfs" "$archive" --entrypoint "[\"$path\"]" "$@"
    rm -rf "$rootfs"
  fi
  echo "$reference $archive"
}

target_dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
for name in "$@"; do
  case $name in
    echo) image echo "$target_dir/debug/metallb-test-echo" /usr/local/bin/metallb-test-echo --user 65532:65532 ;;
    # CoreDNS listens on an unprivileged port as a non-root user; its Service maps 53 to it.
    coredns) image coredns "$cache/bin/coredns" /coredns --user 65532:65532 ;;
    # deploy/components/jaeger runs the image's user 10001 and passes only arguments.
    jaeger) image jaeger "$cache/bin/jaeger" /jaeger --user 10001:10001 --volume /tmp ;;
    *) echo "build-test-images: no image named $name" >&2; exit 2 ;;
  esac
done
