#!/usr/bin/env bash
# The test command: `scripts/test.sh [cargo test args…]`, e.g. `scripts/test.sh dlq`.
#
# Runs `cargo test` (library, binary, integration tests in tests/ and doctests). The
# integration tests start their own redis-server processes on free ports, so redis-server
# and redis-cli must be installed; some tests cross-check signatures with python3, run the
# docs' Node snippet, and check deploy/ with promtool and systemd-analyze. When one is missing, this script installs it with apt-get if it runs as root on a
# Debian/Ubuntu machine, and otherwise stops and says how to install it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

apt_updated=""

# apt-get install that does not start services: a packaged redis-server would try to start on
# port 6379 (maybe taken) and fail the install; the tests start their own servers anyway.
apt_install() {
    local made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    if [[ -z "$apt_updated" ]]; then
        apt-get update || rc=$?
        apt_updated=1
    fi
    if ((rc == 0)); then
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" || rc=$?
    fi
    if [[ -n "$made_policy" ]]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    return "$rc"
}

# install_or_fail COMMAND PACKAGE HOW-TO: makes sure COMMAND exists.
install_or_fail() {
    local cmd="$1" package="$2" howto="$3"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: $cmd is missing; installing the Debian package $package" >&2
        apt_install "$package"
        command -v "$cmd" >/dev/null 2>&1 && return 0
        echo "test.sh: installed $package but $cmd is still not on PATH" >&2
        exit 1
    fi
    echo "test.sh: $cmd is not installed, and the tests need it. $howto" >&2
    exit 1
}

redis_howto="Install Redis: 'sudo apt-get install -y redis-server' (Debian/Ubuntu), 'brew install redis' (macOS), or your platform's package of Redis. The tests start their own redis-server; no Redis needs to be running."
install_or_fail redis-server redis-server "$redis_howto"
install_or_fail redis-cli redis-server "$redis_howto"
install_or_fail python3 python3 "Install Python 3: 'sudo apt-get install -y python3' (Debian/Ubuntu) or 'brew install python' (macOS)."
# docs/INTEGRATION.md's Node snippet is run by tests/docs_snippets.rs.
install_or_fail node nodejs "Install Node.js: 'sudo apt-get install -y nodejs' (Debian/Ubuntu) or 'brew install node' (macOS)."
# deploy/prometheus/alerts.yml is checked with promtool by tests/deploy.rs.
install_or_fail promtool prometheus "Install promtool: 'sudo apt-get install -y prometheus' (Debian/Ubuntu; no service needs to run) or 'brew install prometheus' (macOS)."
# deploy/systemd's unit is checked with systemd-analyze by tests/deploy.rs.
install_or_fail systemd-analyze systemd "Install systemd-analyze: 'sudo apt-get install -y systemd' (Debian/Ubuntu)."
command -v cargo >/dev/null 2>&1 || {
    echo "test.sh: cargo is not installed; install a Rust toolchain with rustup (https://rustup.rs)" >&2
    exit 1
}

# cargo prints one summary per test binary; the last line here adds them up.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
