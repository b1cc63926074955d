#!/usr/bin/env bash
# Installs what is missing and runs the shipped lab with the local provider.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_rust
ensure_docker
log "building labrun (release; several minutes the first time)"
cargo build --release
# `labrun` by name, as the lab's summary and the README use it (what
# `cargo install` would do, without a second build).
if [ -d "$HOME/.cargo/bin" ] && [ "$(readlink "$HOME/.cargo/bin/labrun" 2>/dev/null)" != "$PWD/target/release/labrun" ]; then
    ln -sf "$PWD/target/release/labrun" "$HOME/.cargo/bin/labrun"
    log "linked $HOME/.cargo/bin/labrun -> $PWD/target/release/labrun"
fi
exec ./target/release/labrun playbooks/mysql_client_server.rhai "$@"
