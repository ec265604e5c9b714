# Builds OCI images with no registry: a root filesystem made from local files becomes an image
# `FROM scratch` through Debian's buildah, written as an OCI archive that containerd
# (`ctr images import`) and other runtimes load without pulling. Sourced, not run.
#
# buildah keeps its layers under $OCI_IMAGE_STORE (default: $HOME/.cache/metallb-rs/buildah)
# with the vfs driver, which needs no kernel overlay support and leaves the system's own
# container storage alone.

oci_image_store=${OCI_IMAGE_STORE:-${METALLB_RS_CACHE:-$HOME/.cache/metallb-rs}/buildah}

oci_buildah() {
  buildah --root "$oci_image_store/root" --runroot "$oci_image_store/run" --storage-driver vfs "$@"
}

# oci_image_from_rootfs REFERENCE ROOTFS ARCHIVE [buildah config options...]
#
# REFERENCE is name:tag as the runtime will know it (e.g. localhost/metallb-rs:0.1.0-abc1234);
# ROOTFS a directory copied to / of the image; ARCHIVE the .tar to write; the options go to
# `buildah config` (--user, --entrypoint, --port, --label...). The archive is written to a
# temporary name and renamed, so an interrupted build never leaves a half archive behind.
oci_image_from_rootfs() {
  local reference=$1 rootfs=$2 archive=$3
  shift 3
  command -v buildah >/dev/null || {
    echo "oci-image: buildah is missing: apt-get install buildah" >&2
    return 1
  }
  mkdir -p "$oci_image_store" "$(dirname "$archive")"
  # One build at a time per store: builds share buildah's storage, and one build's clean-up
  # (`rm --all`, `rmi`) would pull the ground from under another (tests build in parallel).
  (
    flock 9
    # A build interrupted earlier may have left its working container behind.
    oci_buildah rm --all >/dev/null 2>&1 || true
    local container
    container=$(oci_buildah from --quiet scratch)
    oci_buildah copy --quiet "$container" "$rootfs/" / >/dev/null
    if [ "$#" -gt 0 ]; then
      oci_buildah config "$@" "$container"
    fi
    oci_buildah commit --quiet --rm "$container" "$reference" >/dev/null
    rm -f "$archive.tmp"
    oci_buildah push --quiet "$reference" "oci-archive:$archive.tmp:$reference" >/dev/null
    oci_buildah rmi --force "$reference" >/dev/null 2>&1 || true
    mv "$archive.tmp" "$archive"
  ) 9>"$oci_image_store/lock"
}

# oci_copy_libraries ROOTFS FILE...: copies every shared library `ldd` names for each
# dynamically linked FILE (and the dynamic loader) into ROOTFS at the same paths, so the image
# needs no distribution underneath.
oci_copy_libraries() {
  local rootfs=$1
  shift
  local file library
  for file in "$@"; do
    for library in $(ldd "$file" 2>/dev/null | grep -o '/[^ ]*' | sort -u); do
      # 0755: the kernel only runs a program whose loader (one of these) is executable.
      install -D -m 0755 "$(readlink -f "$library")" "$rootfs$library"
    done
  done
}

# oci_copy_with_libraries ROOTFS FILE...: each FILE at the same path in ROOTFS, with its
# libraries.
oci_copy_with_libraries() {
  local rootfs=$1
  shift
  local file
  for file in "$@"; do
    install -D -m 0755 "$file" "$rootfs$file"
  done
  oci_copy_libraries "$rootfs" "$@"
}
