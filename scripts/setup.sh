#!/usr/bin/env bash
# Installs and starts what labrun and its tests need on Debian/Ubuntu, and
# does nothing for what is already there. Sourced by lab.sh and test.sh;
# run directly for everything: `bash scripts/setup.sh`.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
# ensure_apt PKG...: installs the Debian packages that are not installed yet.
ensure_apt() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_rust: a Rust toolchain new enough for edition 2024.
ensure_rust() {
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    if ! command -v cargo >/dev/null 2>&1; then
        ensure_apt curl ca-certificates build-essential
        log "installing Rust with rustup"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
        . "$HOME/.cargo/env"
    fi
    ensure_apt gcc pkg-config
    rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy 2>/dev/null || true
}

# ensure_docker: Docker Engine (Debian's docker.io) running, plus what the
# local provider uses on the host: debootstrap and the Debian archive
# keyring (base images: debian-12, -13 and -sid), nft and nsenter (security
# groups), the ssh client (tests).
ensure_docker() {
    ensure_apt docker.io tini debootstrap debian-archive-keyring nftables util-linux tar \
        openssh-client ca-certificates
    ensure_inotify_room
    docker info >/dev/null 2>&1 && return 0
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        log "starting docker (systemd)"
        as_root systemctl start docker
    else
        log "starting dockerd (log: /var/log/dockerd.log)"
        as_root sh -c 'setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null &'
    fi
    for _ in $(seq 300); do
        docker info >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "dockerd did not answer within 30 s; see /var/log/dockerd.log"
    return 1
}

# ensure_inotify_room: every local instance boots systemd, which holds
# about 5 inotify instances, all charged to root: a stock kernel's 128 stop
# the 26th instance from booting (labrun refuses to launch it and says so).
# Raised to 8192 now and in /etc/sysctl.d for later boots.
LABRUN_INOTIFY_INSTANCES=8192
ensure_inotify_room() {
    local now
    now=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0)
    [ "$now" -ge "$LABRUN_INOTIFY_INSTANCES" ] && return 0
    log "raising fs.inotify.max_user_instances from $now to $LABRUN_INOTIFY_INSTANCES (systemd in every instance)"
    as_root sh -c "echo 'fs.inotify.max_user_instances = $LABRUN_INOTIFY_INSTANCES' > /etc/sysctl.d/60-labrun-inotify.conf"
    as_root sysctl -q -w "fs.inotify.max_user_instances=$LABRUN_INOTIFY_INSTANCES" ||
        log "could not raise it (a container without that sysctl?): past about 25 instances, launches are refused"
}

# ensure_labrun_release: the release binary, built when $LABRUN_BIN does not
# name one already (the bench scripts), exported as LABRUN_BIN.
ensure_labrun_release() {
    if [ -z "${LABRUN_BIN:-}" ]; then
        cargo build --release --quiet
        LABRUN_BIN="$PWD/target/release/labrun"
    fi
    export LABRUN_BIN
}

# ensure_test_mariadb: a private, throwaway MariaDB for the mysql tests, on
# 127.0.0.1:$LABRUN_TEST_MYSQL_PORT with its own datadir and socket (never the
# host's own server), reused when it already answers. Tests log in as
# root@127.0.0.1 with $LABRUN_TEST_MYSQL_PASSWORD.
LABRUN_TEST_MYSQL_DIR="${LABRUN_TEST_MYSQL_DIR:-/tmp/labrun-test-mariadb}"
LABRUN_TEST_MYSQL_PORT="${LABRUN_TEST_MYSQL_PORT:-33917}"
LABRUN_TEST_MYSQL_PASSWORD="${LABRUN_TEST_MYSQL_PASSWORD:-labrun-test-root}"
ensure_test_mariadb() {
    ensure_apt mariadb-server mariadb-client
    local dir="$LABRUN_TEST_MYSQL_DIR" sock="$LABRUN_TEST_MYSQL_DIR/mysqld.sock"
    if ! mariadb-admin --no-defaults --socket="$sock" -uroot ping >/dev/null 2>&1; then
        mkdir -p "$dir"
        if [ ! -d "$dir/data/mysql" ]; then
            log "initialising test MariaDB in $dir/data"
            mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
                --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve \
                >"$dir/install.log" 2>&1
        fi
        log "starting test MariaDB on 127.0.0.1:$LABRUN_TEST_MYSQL_PORT"
        setsid mariadbd --no-defaults --datadir="$dir/data" --user="$(id -un)" \
            --bind-address=127.0.0.1 --port="$LABRUN_TEST_MYSQL_PORT" --socket="$sock" \
            --pid-file="$dir/mariadbd.pid" --log-error="$dir/error.log" --skip-name-resolve \
            </dev/null >/dev/null 2>&1 &
        local i
        for i in $(seq 1 300); do
            mariadb-admin --no-defaults --socket="$sock" -uroot ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        mariadb-admin --no-defaults --socket="$sock" -uroot ping >/dev/null 2>&1 \
            || { log "test MariaDB did not start; see $dir/error.log"; return 1; }
    fi
    # The known test credential, (re)set through the root socket.
    mariadb --no-defaults --socket="$sock" -uroot <<SQL
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '$LABRUN_TEST_MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
SQL
    export LABRUN_TEST_MYSQL_PORT LABRUN_TEST_MYSQL_PASSWORD
}

# ensure_ssh_client: OpenSSH's client tools (the ssh tests make keys with
# ssh-keygen; scripts/bench-ssh.sh measures ssh against labrun).
ensure_ssh_client() {
    ensure_apt openssh-client
}

# ensure_moto: moto's EC2 API emulator (`moto_server`, with boto3) in a venv,
# for the AWS provider's tests; exports LABRUN_MOTO_SERVER, which they start.
ensure_moto() {
    local venv="${LABRUN_MOTO_VENV:-$HOME/.cache/labrun/moto-venv}"
    if ! "$venv/bin/python" -c 'import moto.server, boto3, flask' >/dev/null 2>&1; then
        ensure_apt python3 python3-venv
        log "installing moto[server] into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
    fi
    export LABRUN_MOTO_SERVER="$venv/bin/moto_server"
}

# ensure_chromium: Debian's headless-capable Chromium, which the class
# tests load the HTML gradebook in (`chromium --headless --dump-dom`).
ensure_chromium() {
    ensure_apt chromium
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    ensure_rust
    ensure_docker
    ensure_ssh_client
    ensure_moto
    ensure_test_mariadb
    ensure_chromium
fi
