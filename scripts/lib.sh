# shellcheck shell=bash
# Shared by scripts/rollback.sh and scripts/migrate-validate.sh (sourced, not run).
# Expects PROG (the calling script's name) and the caller's header comment ending at
# `set -euo pipefail`, which `usage` prints.

# Prints the calling script's header comment as its help text.
usage() {
    sed -n '2,/^set -euo pipefail$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

# Reports a usage error (exit 2).
die_usage() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    printf "Run '%s --help' for usage.\n" "$PROG" >&2
    exit 2
}

# Handles the options both scripts take: -h/--help, -c/--config PATH and --config=PATH.
# Sets the caller's `config` array and `consumed` (how many arguments were taken: 0 when $1
# is none of them, and the caller parses it itself).
common_option() {
    consumed=0
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    -c | --config)
        (($# >= 2)) || die_usage "$1 needs a PATH"
        config=(--config "$2")
        consumed=2
        ;;
    --config=*)
        config=(--config "${1#--config=}")
        consumed=1
        ;;
    esac
}

# Prints the path of the binary to use: $REDIS_WEBHOOK_BRIDGE_BIN, else target/release, else
# target/debug of this checkout ($CARGO_TARGET_DIR is honoured), else the one on PATH.
find_binary() {
    if [[ -n "${REDIS_WEBHOOK_BRIDGE_BIN:-}" ]]; then
        [[ -x "$REDIS_WEBHOOK_BRIDGE_BIN" ]] ||
            {
                printf '%s: REDIS_WEBHOOK_BRIDGE_BIN=%s is not an executable file\n' "$PROG" "$REDIS_WEBHOOK_BRIDGE_BIN" >&2
                exit 1
            }
        printf '%s\n' "$REDIS_WEBHOOK_BRIDGE_BIN"
        return
    fi
    local root target candidate
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    target="${CARGO_TARGET_DIR:-$root/target}"
    for candidate in "$target/release/redis-webhook-bridge" "$target/debug/redis-webhook-bridge"; do
        if [[ -x "$candidate" ]]; then
            printf '%s\n' "$candidate"
            return
        fi
    done
    if command -v redis-webhook-bridge >/dev/null 2>&1; then
        command -v redis-webhook-bridge
        return
    fi
    printf '%s: redis-webhook-bridge not found: build it (cargo build --release), put it on PATH, or set REDIS_WEBHOOK_BRIDGE_BIN\n' "$PROG" >&2
    exit 1
}
