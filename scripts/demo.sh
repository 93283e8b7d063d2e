#!/usr/bin/env bash
# Quick start: the whole path of a registry event, on this machine, in about ten seconds.
#
#   redis-cli PUBLISH hokusai:model_ready_queue:pubsub '<event>'
#     → redis-webhook-bridge run      (subscribes, keys, signs, POSTs, retries)
#     → redis-webhook-bridge receive  (verifies the signature, de-duplicates, prints)
#
# What it does:
#   1. builds the binary (cargo build --quiet);
#   2. starts a throwaway redis-server on a free port (no persistence, its own temp dir),
#      or, when REDIS_URL is set, uses that Redis with a unique key prefix and a unique
#      channel so it touches nothing else there (and deletes its keys again at the end);
#   3. starts the sample consumer `receive` (it answers the first request with 503, so the
#      demo also shows a retry) and the bridge `run` with a config written to the temp dir;
#   4. waits for /readyz, publishes three sample model-ready events, waits until the receiver
#      accepted all three, prints each verified delivery and a /status summary;
#   5. stops everything it started (trap on EXIT) and removes the temp dir.
#
# Needs: a Rust toolchain (with a C compiler and make), redis-server and redis-cli, python3,
# curl. Run as root on Debian/Ubuntu, it installs what is missing with apt-get; otherwise it
# stops and says how to install it (scripts/prerequisites.sh). Exit 0 on success, non-zero
# with a message otherwise.
#
# Environment: REDIS_URL (use that Redis instead of starting one), DEMO_KEEP_LOGS=DIR (copy
# the logs, the generated config and the receiver's output there before cleaning up).
set -euo pipefail

# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------
readonly DEMO_SECRET="demo-secret-not-for-production-0123456789"
readonly EVENTS=3
readonly READY_TIMEOUT=20     # seconds to wait for /readyz
readonly DELIVERY_TIMEOUT=30  # seconds to wait for the receiver to accept every event

say() { printf '%s\n' "$*"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
if [[ ! -t 1 ]]; then
    step() { printf '\n==> %s\n' "$*"; }
fi

# ---------------------------------------------------------------------------------------
# Cleanup: stop what we started, in reverse order, then remove the temp dir.
# ---------------------------------------------------------------------------------------
TMP=""
BRIDGE_PID=""
RECEIVER_PID=""
REDIS_PID=""
EXTERNAL_REDIS=""
KEY_PREFIX=""

# Stops one process we started: SIGTERM, wait up to ~10 s, then SIGKILL.
stop_pid() {
    local pid="$1" name="$2" i
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "demo: $name (pid $pid) did not stop on SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    stop_pid "$BRIDGE_PID" "bridge"
    stop_pid "$RECEIVER_PID" "receiver"
    if [[ -n "$EXTERNAL_REDIS" && -n "$KEY_PREFIX" ]]; then
        # Remove what the bridge wrote under its unique prefix (de-duplication keys, DLQ).
        rcli --scan --pattern "${KEY_PREFIX}:*" 2>/dev/null |
            while IFS= read -r key; do rcli DEL "$key" >/dev/null 2>&1; done
    fi
    stop_pid "$REDIS_PID" "redis-server"
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ -n "${DEMO_KEEP_LOGS:-}" ]]; then
            mkdir -p "$DEMO_KEEP_LOGS" &&
                find "$TMP" -maxdepth 1 -type f -exec cp {} "$DEMO_KEEP_LOGS"/ \; &&
                say "demo: logs, config and outputs copied to $DEMO_KEEP_LOGS"
        fi
        rm -rf -- "$TMP"
    fi
    if ((rc == 0)); then
        say ""
        say "demo: stopped everything it started and removed $TMP."
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints the message, the tail of every log we have, and exits 1.
fail() {
    say "" >&2
    say "demo FAILED: $*" >&2
    local f
    for f in bridge.log receiver.log receiver.out redis.log; do
        if [[ -n "$TMP" && -s "$TMP/$f" ]]; then
            say "--- last lines of $f ---" >&2
            tail -n 20 "$TMP/$f" >&2
        fi
    done
    exit 1
}

# ---------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly PROG="demo"
# shellcheck source=scripts/prerequisites.sh
source scripts/prerequisites.sh
demo_prerequisites

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

TMP="$(mktemp -d "${TMPDIR:-/tmp}/redis-webhook-bridge-demo.XXXXXX")"
chmod 700 "$TMP"

# ---------------------------------------------------------------------------------------
# 1. Build
# ---------------------------------------------------------------------------------------
step "Building redis-webhook-bridge (cargo build)"
cargo build --quiet || fail "cargo build failed (see the compiler output above)"
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/debug/redis-webhook-bridge"
[[ -x "$BIN" ]] || fail "the build did not produce $BIN"
say "binary: $BIN"

# ---------------------------------------------------------------------------------------
# 2. Redis
# ---------------------------------------------------------------------------------------
RUN_ID="$(python3 -c 'import uuid; print(uuid.uuid4().hex[:10])')"
if [[ -n "${REDIS_URL:-}" ]]; then
    EXTERNAL_REDIS=1
    DEMO_REDIS_URL="$REDIS_URL"
    # Our own key prefix and channel: nothing else on that Redis sees the demo.
    KEY_PREFIX="webhook-bridge-demo-$RUN_ID"
    CHANNEL="$KEY_PREFIX:hokusai:model_ready_queue:pubsub"
    REDIS_CLI=(redis-cli --no-auth-warning -u "$DEMO_REDIS_URL")
    if [[ "$DEMO_REDIS_URL" == rediss://* ]]; then
        REDIS_CLI+=(--tls)
    fi
    rcli() { "${REDIS_CLI[@]}" "$@"; }
    step "Using the Redis at REDIS_URL (key prefix $KEY_PREFIX)"
    say "the demo publishes to its own channel $CHANNEL, not the registry's"
    [[ "$(rcli PING 2>&1)" == "PONG" ]] ||
        fail "the Redis at REDIS_URL does not answer PING: $(rcli PING 2>&1 | head -n 1)"
else
    KEY_PREFIX="webhook-bridge-demo"
    CHANNEL="hokusai:model_ready_queue:pubsub"
    REDIS_PORT="$(free_port)"
    DEMO_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    REDIS_CLI=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
    rcli() { "${REDIS_CLI[@]}" "$@"; }
    step "Starting a throwaway redis-server on 127.0.0.1:$REDIS_PORT"
    mkdir -p "$TMP/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$TMP/redis" --logfile "$TMP/redis.log" --daemonize no >/dev/null 2>&1 &
    REDIS_PID=$!
    for ((i = 0; i < 50; i++)); do
        [[ "$(rcli PING 2>/dev/null)" == "PONG" ]] && break
        kill -0 "$REDIS_PID" 2>/dev/null || fail "redis-server exited at start"
        sleep 0.1
    done
    [[ "$(rcli PING 2>/dev/null)" == "PONG" ]] || fail "redis-server did not answer PING within 5 s"
    say "redis-server pid $REDIS_PID, no persistence, data dir $TMP/redis"
fi

# ---------------------------------------------------------------------------------------
# 3. Receiver and bridge
# ---------------------------------------------------------------------------------------
RECEIVER_PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
ADMIN="http://127.0.0.1:$ADMIN_PORT"
CONFIG="$TMP/bridge.toml"

# The bridge's environment: only what the demo sets. Variables from the caller's shell
# (WEBHOOK_*, REDIS_*, ENABLE_REDIS_FALLBACK, BRIDGE_*) would otherwise layer over the demo
# config; the bridge also runs in the temp dir so that no .env in this repo is read.
for var in $(compgen -e); do
    case "$var" in
        BRIDGE_* | WEBHOOK_* | REDIS_* | ENABLE_REDIS_FALLBACK) unset "$var" ;;
    esac
done
export DEMO_WEBHOOK_SECRET="$DEMO_SECRET"
export BRIDGE_REDIS__KEY_PREFIX="$KEY_PREFIX"

cat >"$CONFIG" <<EOF
# Written by scripts/demo.sh; removed when the demo ends.
[redis]
url = "$DEMO_REDIS_URL"
key_prefix = "$KEY_PREFIX"          # BRIDGE_REDIS__KEY_PREFIX (set by the demo) wins anyway

[[sources]]
kind = "pubsub"
name = "registry"
channels = ["$CHANNEL"]

[delivery]
# durability: not set, so the built-in default applies (see README, Configuration).
shutdown_timeout = "5s"

[[endpoints]]
name = "demo-receiver"
url = "http://127.0.0.1:$RECEIVER_PORT/hooks/model-ready"
secrets = ["env:DEMO_WEBHOOK_SECRET"]   # a reference: the secret itself is not in this file
signature = "hokusai-v2"
retry_delay = "1s"                      # the demo's receiver fails the first request once
max_retries = 5

[security]
allow_http = true                       # local receiver over plain HTTP
allow_private_networks = true           # ... on 127.0.0.1

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[log]
format = "text"
level = "info"
EOF
chmod 600 "$CONFIG"

(cd "$TMP" && exec "$BIN" --config "$CONFIG" check-config >"$TMP/effective-config.toml" 2>"$TMP/check-config.err") ||
    fail "check-config rejected the demo config: $(cat "$TMP/check-config.err")"

step "Starting the sample consumer: receive --listen 127.0.0.1:$RECEIVER_PORT --fail-first 1"
(cd "$TMP" && exec "$BIN" receive --listen "127.0.0.1:$RECEIVER_PORT" \
    --secret env:DEMO_WEBHOOK_SECRET --fail-first 1 \
    >"$TMP/receiver.out" 2>"$TMP/receiver.log") &
RECEIVER_PID=$!
for ((i = 0; i < 50; i++)); do
    grep -q "listening on" "$TMP/receiver.log" 2>/dev/null && break
    kill -0 "$RECEIVER_PID" 2>/dev/null || fail "receive exited at start"
    sleep 0.1
done
grep -q "listening on" "$TMP/receiver.log" || fail "receive did not start listening within 5 s"
say "$(head -n 1 "$TMP/receiver.log")"

step "Starting the bridge: run --config $CONFIG"
say "endpoint demo-receiver → http://127.0.0.1:$RECEIVER_PORT/hooks/model-ready (hokusai-v2)"
say "source   registry      ← SUBSCRIBE $CHANNEL"
say "admin    $ADMIN   log $TMP/bridge.log"
say "delivery durability = $(sed -n 's/^durability = "\(.*\)"$/\1/p' "$TMP/effective-config.toml") (the default; from check-config)"
(cd "$TMP" && exec "$BIN" --config "$CONFIG" run >"$TMP/bridge.out" 2>"$TMP/bridge.log") &
BRIDGE_PID=$!

deadline=$((SECONDS + READY_TIMEOUT))
ready=""
while ((SECONDS < deadline)); do
    kill -0 "$BRIDGE_PID" 2>/dev/null || fail "the bridge exited at start"
    if curl -fsS --max-time 2 "$ADMIN/readyz" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.2
done
[[ -n "$ready" ]] || fail "the bridge was not ready within ${READY_TIMEOUT} s ($ADMIN/readyz: $(curl -sS --max-time 2 "$ADMIN/readyz" 2>&1 | head -n 1))"
say "GET /readyz → $(curl -fsS --max-time 2 "$ADMIN/readyz")"

# ---------------------------------------------------------------------------------------
# 4. Publish, exactly as the registry does
# ---------------------------------------------------------------------------------------
NOW="$(date -u +%Y-%m-%dT%H:%M:%S)"
MESSAGES=(
    '{"model_id":"model-7f3a","token_symbol":"demo-token","metric_name":"accuracy","baseline_value":0.812,"current_value":0.861,"model_name":"sentiment-classifier","model_version":"3","mlflow_run_id":"9b1c2d3e4f","improvement_percentage":6.03,"contributor_address":"0x1234567890abcdef1234567890abcdef12345678","experiment_name":"sentiment","tags":{"team":"nlp"},"timestamp":"'"$NOW"'","message_version":"1.0"}'
    '{"model_id":"model-2b91","token_symbol":"fraud-token","metric_name":"f1_score","baseline_value":0.74,"current_value":0.79,"model_name":"fraud-detector","model_version":"7","mlflow_run_id":"a1b2c3d4e5","improvement_percentage":6.76,"contributor_address":"0xabcdefabcdefabcdefabcdefabcdefabcdefabcd","experiment_name":"fraud","tags":{"team":"risk"},"timestamp":"'"$NOW"'","message_version":"1.0"}'
    '{"model_id":"model-c4d2","token_symbol":"churn-token","metric_name":"auroc","baseline_value":0.881,"current_value":0.902,"model_name":"churn-predictor","model_version":"12","mlflow_run_id":"5e6f7a8b9c","improvement_percentage":2.38,"contributor_address":"0x00112233445566778899aabbccddeeff00112233","experiment_name":"churn","tags":{"team":"growth"},"timestamp":"'"$NOW"'","message_version":"1.0"}'
)
((${#MESSAGES[@]} == EVENTS)) || fail "internal: expected $EVENTS sample messages"

step "Publishing $EVENTS model-ready events (redis-cli PUBLISH $CHANNEL '<json>')"
for msg in "${MESSAGES[@]}"; do
    subscribers="$(rcli PUBLISH "$CHANNEL" "$msg")" || fail "redis-cli PUBLISH failed"
    model="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["model_id"])' "$msg")"
    say "PUBLISH $model → $subscribers subscriber(s)"
    if [[ ! "$subscribers" =~ ^[0-9]+$ ]] || ((subscribers < 1)); then
        fail "no subscriber got the message; the bridge is not subscribed to $CHANNEL"
    fi
done

# ---------------------------------------------------------------------------------------
# 5. Wait for the receiver, then show what it verified
# ---------------------------------------------------------------------------------------
step "Waiting for the receiver to accept $EVENTS events (the first request is answered 503)"
deadline=$((SECONDS + DELIVERY_TIMEOUT))
accepted=0
while ((SECONDS < deadline)); do
    accepted="$(grep -c . "$TMP/receiver.out" 2>/dev/null || true)"
    ((accepted >= EVENTS)) && break
    kill -0 "$BRIDGE_PID" 2>/dev/null || fail "the bridge exited while delivering"
    kill -0 "$RECEIVER_PID" 2>/dev/null || fail "the receiver exited while receiving"
    sleep 0.2
done
((accepted >= EVENTS)) || fail "the receiver accepted $accepted of $EVENTS events within ${DELIVERY_TIMEOUT} s"

say "receiver: $(grep -m 1 'drilled failure' "$TMP/receiver.log" || say '(no drilled failure logged)')"
retry_line="$(grep -m 1 'will retry' "$TMP/bridge.log" |
    sed -E 's/^[^ ]+ +//; s/redis_webhook_bridge::[a-z_:]+: //; s/ error=.* retry_in_ms=/ retry_in_ms=/' || true)"
if [[ -n "$retry_line" ]]; then
    say "bridge:   $retry_line"
fi

step "Verified deliveries (signature checked by receive; one JSON line each on its stdout)"
python3 - "$TMP/receiver.out" <<'PY' || fail "cannot read the receiver's output"
import json
import sys
import uuid

for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    event = json.loads(line)
    body = event["body"]
    # The registry's Python publisher keys a message by uuid5 over these four fields.
    expected = str(uuid.uuid5(uuid.NAMESPACE_DNS, "{model_id}:{token_symbol}:{mlflow_run_id}:{model_version}".format(**body)))
    same = "same key as the registry's publisher" if event["idempotency_key"] == expected else "KEY DIFFERS from the registry's uuid5"
    print(f"#{n} {body['model_id']:<11} {body['model_name']} v{body['model_version']}  "
          f"{body['metric_name']} {body['baseline_value']} → {body['current_value']} (+{body['improvement_percentage']} %)")
    print(f"   idempotency key  {event['idempotency_key']}  ({same})")
    print(f"   event type       {event['event_type']}")
    print(f"   attempt          {event['attempt']}   scheme {event['scheme']}   path {event['path']}   at {event['received_at']}")
PY

# The receiver prints before it answers: give the bridge a moment to count the last 200 and
# to acknowledge it in its queue (until then it counts as not delivered).
delivered=0
for ((i = 0; i < 25; i++)); do
    delivered="$(curl -fsS --max-time 2 "$ADMIN/status" |
        python3 -c 'import json, sys; e = json.load(sys.stdin)["endpoints"]; print(sum(x["delivered"] for x in e) if sum(x["not_delivered"] for x in e) == 0 else 0)' 2>/dev/null ||
        echo 0)"
    ((delivered >= EVENTS)) && break
    sleep 0.2
done

step "GET $ADMIN/status (summary)"
curl -fsS --max-time 2 "$ADMIN/status" >"$TMP/status.json" || fail "GET /status failed"
python3 - "$TMP/status.json" <<'PY' || fail "cannot read /status"
import json
import sys

s = json.load(open(sys.argv[1], encoding="utf-8"))
b = json.dumps
print(f"version {s['version']}  paused {b(s['paused'] is not None)}  dual {b(s['dual'])}  config_version {s['config_version']}")
for src in s["sources"]:
    print(f"source   {src['name']:<14} kind {src['kind']:<7} connected {b(src['connected'])}  received {src['received']}")
for e in s["endpoints"]:
    print(f"endpoint {e['name']:<14} circuit {e['circuit']:<7} delivered {e['delivered']}  failed attempts {e['failed']}  "
          f"dead-lettered {e['dead_lettered']}  not delivered {e['not_delivered']}  in flight {e['in_flight']}")
    if e.get("last_error"):
        print(f"         last error: {e['last_error'][:120]}")
PY
((delivered >= EVENTS)) || fail "/status counts $delivered delivered, expected $EVENTS"

say ""
say "demo OK: $EVENTS events published to Redis, signed, retried once, verified and accepted by the receiver."
