#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine: installs and
# starts whatever is missing, then runs formatting, lint and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_rust
ensure_docker
ensure_test_mariadb
ensure_ssh_client
ensure_moto
ensure_chromium

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets -- --test-threads 4
