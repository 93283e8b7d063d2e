# shellcheck shell=bash
# What scripts/test.sh, scripts/demo.sh and .ci/run need on the machine, and how they get
# it (sourced, not run). Expects PROG, the calling script's name, for messages.
#
# A missing tool is installed with apt-get when the script runs as root on Debian/Ubuntu;
# otherwise the script stops and says how to install it. The README's "What they need"
# table lists the same tools: keep both in step.

_apt_updated=""

# apt-get install that does not start services: a packaged redis-server would try to start
# on port 6379 (maybe taken) and fail the install; the tests and the demo start their own.
apt_install() {
    local made_policy="" rc=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    # Another apt-get may hold the dpkg lock for a while (a parallel install): wait for it.
    local wait_lock=(-o DPkg::Lock::Timeout=600)
    if [[ -z "$_apt_updated" ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get "${wait_lock[@]}" update || rc=$?
        _apt_updated=1
    fi
    if ((rc == 0)); then
        DEBIAN_FRONTEND=noninteractive apt-get "${wait_lock[@]}" install -y --no-install-recommends "$@" || rc=$?
    fi
    if [[ -n "$made_policy" ]]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    return "$rc"
}

# need_tool COMMAND PACKAGE HOW-TO: makes sure the program COMMAND is on PATH (a file, not a
# shell builtin: the tests run `kill` as a program), installing the Debian PACKAGE as root.
need_tool() {
    local cmd="$1" package="$2" howto="$3"
    type -P "$cmd" >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" == 0 ]] && type -P apt-get >/dev/null 2>&1; then
        echo "$PROG: $cmd is missing; installing the Debian package $package" >&2
        apt_install "$package" || {
            echo "$PROG: apt-get install $package failed" >&2
            exit 1
        }
        type -P "$cmd" >/dev/null 2>&1 && return 0
        echo "$PROG: installed $package but $cmd is still not on PATH" >&2
        exit 1
    fi
    echo "$PROG: $cmd is not installed. $howto" >&2
    exit 1
}

need_cargo() {
    type -P cargo >/dev/null 2>&1 || {
        echo "$PROG: cargo is not installed; install a Rust toolchain with rustup (https://rustup.rs)" >&2
        exit 1
    }
    # ring (rustls' crypto provider) compiles C and jemalloc's build runs make.
    need_tool cc build-essential "Install a C compiler and make: 'sudo apt-get install -y build-essential' (Debian/Ubuntu) or 'xcode-select --install' (macOS)."
    need_tool make build-essential "Install make: 'sudo apt-get install -y build-essential' (Debian/Ubuntu) or 'xcode-select --install' (macOS)."
}

_redis_howto="Install Redis (6.2 or newer): 'sudo apt-get install -y redis-server' (Debian/Ubuntu) or 'brew install redis' (macOS). No Redis needs to be running: a throwaway redis-server is started."

# Everything `cargo test` needs besides the Rust toolchain.
test_prerequisites() {
    need_cargo
    # The integration tests start their own redis-server processes on free ports.
    need_tool redis-server redis-server "$_redis_howto"
    # Signatures are cross-checked with Python's hmac; the registry's key rule with uuid5.
    need_tool python3 python3 "Install Python 3: 'sudo apt-get install -y python3' (Debian/Ubuntu) or 'brew install python' (macOS)."
    # docs/INTEGRATION.md's Node snippet is run by tests/docs_snippets.rs.
    need_tool node nodejs "Install Node.js: 'sudo apt-get install -y nodejs' (Debian/Ubuntu) or 'brew install node' (macOS)."
    # deploy/prometheus/alerts.yml is checked with promtool by tests/deploy.rs.
    need_tool promtool prometheus "Install promtool: 'sudo apt-get install -y prometheus' (Debian/Ubuntu; no service needs to run) or 'brew install prometheus' (macOS)."
    # deploy/systemd's unit is checked with systemd-analyze by tests/deploy.rs.
    need_tool systemd-analyze systemd "Install systemd-analyze: 'sudo apt-get install -y systemd' (Debian/Ubuntu)."
    # The tests send SIGTERM/SIGHUP with kill(1); minimal images have no procps.
    need_tool kill procps "Install kill(1): 'sudo apt-get install -y procps' (Debian/Ubuntu)."
}

# Everything scripts/demo.sh needs besides the Rust toolchain.
demo_prerequisites() {
    need_cargo
    need_tool python3 python3 "Install Python 3: 'sudo apt-get install -y python3' (Debian/Ubuntu) or 'brew install python' (macOS)."
    need_tool curl curl "Install curl: 'sudo apt-get install -y curl' (Debian/Ubuntu)."
    need_tool redis-cli redis-tools "$_redis_howto"
    if [[ -z "${REDIS_URL:-}" ]]; then
        need_tool redis-server redis-server "$_redis_howto Or set REDIS_URL to use a running one."
    fi
}
