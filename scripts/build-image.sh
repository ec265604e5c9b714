#!/usr/bin/env bash
# Builds the metallb-rs image with no registry and no base image: the release binaries and the
# shared libraries they link (from this machine's Debian), an /etc/passwd naming the nonroot
# user, nothing else (no shell, no package manager), made into an OCI archive by Debian's
# buildah. The layout is the Dockerfile's: binaries in /usr/local/bin, user 65532, the same
# ports, so manifests run either image unchanged.
#
#   scripts/build-image.sh              build; print `reference archive` (sizes go to stderr)
#   scripts/build-image.sh --reference  print only the reference this commit builds
#
# The tag is the crate version and the commit (with `-dirty` when the work tree has changes),
# never `latest`. Load the archive into each node's containerd without a registry:
#
#   ctr -n k8s.io images import target/image/metallb-rs-<tag>.oci.tar
#
# or push it where your nodes pull from: `skopeo copy oci-archive:<archive> docker://...`.
#
#   METALLB_IMAGE_PROFILE  cargo profile of the binaries (default: release)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=lib/oci-image.sh
source scripts/lib/oci-image.sh

binaries=(metallb-allocator metallb-watcher metallb-announcer)
profile=${METALLB_IMAGE_PROFILE:-release}

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
commit=$(git rev-parse --short=12 HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  commit="$commit-dirty"
fi
reference="localhost/metallb-rs:$version-$commit"

if [ "${1:-}" = "--reference" ]; then
  echo "$reference"
  exit 0
fi

cargo_args=(--locked --profile "$profile")
for binary in "${binaries[@]}"; do cargo_args+=(--bin "$binary"); done
cargo build "${cargo_args[@]}" >&2
# The dev profile's directory is target/debug; every other profile's has its own name.
profile_dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
target_dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)

out="$target_dir/image"
rootfs="$out/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs/etc"
for binary in "${binaries[@]}"; do
  install -D -m 0755 "$target_dir/$profile_dir/$binary" "$rootfs/usr/local/bin/$binary"
  oci_copy_libraries "$rootfs" "$target_dir/$profile_dir/$binary"
done
# 65532 is the nonroot user of distroless images, which the Dockerfile uses; naming it keeps
# `ps` and file ownership readable on the node.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"

archive="$out/metallb-rs-$version-$commit.oci.tar"
# Archives of earlier commits are of no further use here (23 MB each).
find "$out" -maxdepth 1 -name 'metallb-rs-*.oci.tar' ! -path "$archive" -delete
oci_image_from_rootfs "$reference" "$rootfs" "$archive" \
  --user 65532:65532 \
  --port 50051/tcp --port 7472/tcp --port 7473/tcp \
  --label "org.opencontainers.image.title=metallb-rs" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$(git rev-parse HEAD)"

echo "build-image: $reference, $(du -h "$archive" | cut -f1) archive, $(du -sh "$rootfs" | cut -f1) unpacked" >&2
echo "$reference $archive"
