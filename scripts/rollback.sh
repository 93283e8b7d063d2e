#!/usr/bin/env bash
# Roll the webhook path back, in one command, at any phase of the migration (MIGRATION.md).
#
#   scripts/rollback.sh [--config PATH] [--reason TEXT] pause    # the one-command rollback
#   scripts/rollback.sh [--config PATH] resume                   # undo it
#   scripts/rollback.sh [--config PATH] status                   # where things stand
#   scripts/rollback.sh [--config PATH] [--reason TEXT] stop     # pause, then how to stop
#
# A thin wrapper over the binary's own commands; it changes nothing the commands do not:
#
#   pause   `redis-webhook-bridge pause --reason "rollback"`: sets `<key_prefix>:paused` in
#           Redis; every replica stops starting delivery attempts within 1 s (attempts in
#           flight finish). Messages keep being received, journaled and queued in Redis, so
#           nothing is lost: they are delivered after `resume`. The registry and its Redis
#           consumers are untouched — they keep working as before the bridge existed.
#           Then prints `status`.
#   resume  `redis-webhook-bridge resume`: deletes the key; held messages are delivered.
#           Then prints `status`.
#   status  `redis-webhook-bridge status`: paused or not, live replicas, subscribers of each
#           source channel, queue depths, dead-letter count (read from Redis, so it covers
#           every replica and needs no admin port).
#   stop    pauses (so deliveries stop everywhere at once), then prints how to stop every
#           replica for good (systemd, Kubernetes). It does not stop processes itself. A
#           stopped bridge reads nothing: pub/sub messages published while it is down are
#           never delivered to webhooks (Redis pub/sub is at-most-once); list and stream
#           sources keep their items until it is back. Undo: start it again, then `resume`
#           (it starts paused while the key exists).
#
# Options:
#   -c, --config PATH   the bridge's TOML config (default: $BRIDGE_CONFIG; without either the
#                       binary uses its defaults and the environment, e.g. REDIS_URL)
#   --reason TEXT       reason stored with the pause, shown by `status` (default: rollback)
#   --json              `status` as JSON
#   -h, --help          this help
#
# The binary: $REDIS_WEBHOOK_BRIDGE_BIN if set, else target/release, else target/debug of this
# checkout ($CARGO_TARGET_DIR is honoured), else `redis-webhook-bridge` on PATH.
#
# Exit status: that of the binary's command (0 ok, 1 runtime failure such as Redis being
# unreachable, 2 usage, 78 configuration error). A `status` failing after a successful
# `pause`/`resume` is reported on stderr but does not change the exit status, since the
# pause or resume itself took effect.
set -euo pipefail

readonly PROG="${0##*/}"

# usage, die_usage, common_option, find_binary
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

config=()
reason="rollback"
json=()
command=""
while (($# > 0)); do
    common_option "$@"
    if ((consumed > 0)); then
        shift "$consumed"
        continue
    fi
    case "$1" in
    --reason)
        (($# >= 2)) || die_usage "--reason needs a TEXT"
        reason="$2"
        shift 2
        ;;
    --reason=*)
        reason="${1#--reason=}"
        shift
        ;;
    --json)
        json=(--json)
        shift
        ;;
    pause | resume | status | stop)
        [[ -z "$command" ]] || die_usage "one command only (got '$command' and '$1')"
        command="$1"
        shift
        ;;
    *)
        die_usage "unknown argument '$1' (commands: pause, resume, status, stop)"
        ;;
    esac
done
[[ -n "$command" ]] || die_usage "a command is required: pause, resume, status or stop"

BIN="$(find_binary)"
readonly BIN

# `${config[@]+…}`: an empty array is "unbound" under `set -u` in bash < 4.4.
bridge() {
    "$BIN" ${config[@]+"${config[@]}"} "$@"
}

# Runs `status` after a change; its failure is reported, not fatal (the change took effect).
show_status() {
    echo
    local rc=0
    bridge status ${json[@]+"${json[@]}"} || rc=$?
    if ((rc != 0)); then
        printf "%s: 'status' failed (exit %d); the %s above did take effect\n" "$PROG" "$rc" "$1" >&2
    fi
}

stop_instructions() {
    cat <<'EOF'

Deliveries are paused on every replica. To stop the bridge completely, stop every replica:

  systemd:     systemctl stop redis-webhook-bridge          (on each host)
  Kubernetes:  kubectl scale deployment/redis-webhook-bridge --replicas=0 [-n NAMESPACE]
  other:       send SIGTERM to each `redis-webhook-bridge run` process

Each replica stops reading, finishes in-flight attempts within delivery.shutdown_timeout and
exits 0; what is still queued stays in Redis. While it is stopped, pub/sub messages are not
seen by the bridge at all (the registry's Redis consumers still get them).

To undo: start the replicas again (systemctl start …, or scale back to the previous replica
count), then run `scripts/rollback.sh resume` — a bridge started while paused stays paused.
EOF
}

case "$command" in
pause)
    bridge pause --reason "$reason"
    show_status pause
    ;;
resume)
    bridge resume
    show_status resume
    ;;
status)
    bridge status ${json[@]+"${json[@]}"}
    ;;
stop)
    bridge pause --reason "$reason"
    show_status pause
    stop_instructions
    ;;
esac
