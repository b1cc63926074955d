#!/usr/bin/env bash
# Installs what is missing and runs the shipped lab with the local provider.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_rust
ensure_docker
cargo build --release
playbook=playbooks/mysql_client_server.rhai
[ -f "$playbook" ] || playbook=playbooks/tour.rhai
exec ./target/release/labrun "$playbook" "$@"
