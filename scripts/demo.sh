#!/usr/bin/env bash
# The demo: installs what it needs (idempotent, cached), builds, and runs the local stack on
# embedded defaults until Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/scripts/install-tools.sh >/dev/null
cargo build --workspace --bins --locked
exec ./target/debug/metallb-demo "$@"
