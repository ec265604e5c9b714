#!/usr/bin/env bash
# The test command: installs what the tests need (idempotent, cached), checks formatting and
# lints, builds the binaries, and runs every test, including the ones against real
# components (kube-apiserver, etcd, BIRD, FRR, GoBGP, Jaeger, grpcurl).
#
# Needs root (or passwordless sudo) for apt-get and for the network namespaces tests create.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/scripts/install-tools.sh >/dev/null
bash tests/scripts/remove-stale-namespaces.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --locked -- "$@"
