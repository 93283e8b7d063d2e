#!/usr/bin/env bash
# Parity check of the migration: did every message the registry published on Redis reach
# every webhook endpoint? A thin wrapper over `redis-webhook-bridge migrate validate`.
#
#   scripts/migrate-validate.sh [--config PATH] [--duration 10m] [--grace 30s]
#                               [--format text|json] [--windows N] [--allow-dead-lettered]
#                               [-- EXTRA-ARGS…]
#
# Each window runs `migrate validate --duration D --grace G --format F`: it subscribes to the
# config's pub/sub source channels for D, then checks the bridge's delivery ledger in Redis
# (`<key_prefix>:ledger:<endpoint>:{queued,delivered,dead}`), waiting at most G for every
# observed message to be delivered or dead-lettered. Per endpoint it counts four states:
# delivered, dead-lettered, still pending (journaled, not delivered when G ended) and MISSING
# (never reached the bridge's queues: no replica was subscribed when it was published, or it
# was lost). Every message not delivered is named by state, idempotency key, channel and
# event. The window PASSes only when every observed message was delivered to every matching
# endpoint; dead-lettered ones (and messages the bridge cannot ingest) pass only with
# --allow-dead-lettered. Entries added to stream sources during the window are checked too
# (read with XRANGE, the bridge's group untouched). List sources cannot be observed: they are
# named as NOT CHECKED (a config with only list sources is refused). The bridge must run with
# durability = "redis" (the default).
#
# Options:
#   -c, --config PATH   the bridge's TOML config (default: $BRIDGE_CONFIG). Use the same
#                       config as the running bridge: the endpoints and filters decide
#                       which messages each endpoint must have received.
#   --duration D        how long each window observes (default: 10m). Keep it well under
#                       6 h: the ledger forgets older keys.
#   --grace G           how long to wait for deliveries to settle after a window (default: 30s)
#   --format F          text (default) or json: one report per window on stdout
#   --allow-dead-lettered
#                       accept dead-lettered messages (still counted and listed)
#   --windows N         run N windows back to back (default: 1); e.g. --duration 1h
#                       --windows 24 for a day. Windows do not overlap: messages published
#                       while a window settles (at most G, usually under a second) are not
#                       checked.
#   -- EXTRA-ARGS…      passed on to the binary (e.g. -- --redis-url redis://…)
#   -h, --help          this help
#
# The binary: $REDIS_WEBHOOK_BRIDGE_BIN if set, else target/release, else target/debug of this
# checkout ($CARGO_TARGET_DIR is honoured), else `redis-webhook-bridge` on PATH.
#
# Exit status: that of `migrate validate` — 0 PASS, 1 a message not delivered (or a runtime
# failure such as Redis being unreachable), 2 usage, 78 configuration error. With --windows N: 0 if every
# window passed, else the status of the last window that did not; a usage or configuration
# error stops at once. A one-line summary per window goes to stderr.
#
# Note: while a window observes, `migrate validate` is itself a subscriber of the source
# channels, so `bridge_legacy_subscribers` counts it (one more) for that time.
set -euo pipefail

readonly PROG="${0##*/}"

# usage, die_usage, common_option, find_binary
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

config=()
duration="10m"
grace="30s"
format="text"
windows=1
allow=()
extra=()
while (($# > 0)); do
    common_option "$@"
    if ((consumed > 0)); then
        shift "$consumed"
        continue
    fi
    case "$1" in
    --duration | --grace | --format | --windows)
        (($# >= 2)) || die_usage "$1 needs a value"
        case "$1" in
        --duration) duration="$2" ;;
        --grace) grace="$2" ;;
        --format) format="$2" ;;
        --windows) windows="$2" ;;
        esac
        shift 2
        ;;
    --allow-dead-lettered)
        allow=(--allow-dead-lettered)
        shift
        ;;
    --duration=*) duration="${1#*=}" && shift ;;
    --grace=*) grace="${1#*=}" && shift ;;
    --format=*) format="${1#*=}" && shift ;;
    --windows=*) windows="${1#*=}" && shift ;;
    --)
        shift
        extra=("$@")
        break
        ;;
    *)
        die_usage "unknown argument '$1' (pass binary flags after --)"
        ;;
    esac
done
[[ "$windows" =~ ^[1-9][0-9]*$ ]] || die_usage "--windows must be a positive integer, got '$windows'"
# --duration, --grace and --format are checked by the binary itself (exit 2 on a bad value).

BIN="$(find_binary)"
readonly BIN

final=0
for ((w = 1; w <= windows; w++)); do
    if ((windows > 1)); then
        printf '%s: window %d/%d (%s, grace %s)\n' "$PROG" "$w" "$windows" "$duration" "$grace" >&2
    fi
    rc=0
    "$BIN" ${config[@]+"${config[@]}"} migrate validate \
        --duration "$duration" --grace "$grace" --format "$format" \
        ${allow[@]+"${allow[@]}"} ${extra[@]+"${extra[@]}"} || rc=$?
    case "$rc" in
    0) verdict="PASS" ;;
    1) verdict="FAIL (a message not delivered, or a runtime failure, see above)" ;;
    2) verdict="usage error" ;;
    78) verdict="configuration error" ;;
    *) verdict="exit $rc" ;;
    esac
    printf '%s: window %d/%d: %s\n' "$PROG" "$w" "$windows" "$verdict" >&2
    if ((rc == 2 || rc == 78)); then
        exit "$rc"
    fi
    if ((rc != 0)); then
        final=$rc
    fi
done
exit "$final"
