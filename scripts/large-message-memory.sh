#!/usr/bin/env bash
# Peak memory for one oversized message: `scripts/large-message-memory.sh [list|stream]`.
#
# Starts its own redis-server (no persistence) on a random port and the release binary
# (`cargo build --release` first) with one list or stream source, pushes one 50 MB item —
# far over security.max_payload_bytes, so it is dead-lettered as too large — and prints the
# bridge's VmHWM (peak RSS) and VmRSS from /proc before and after, then does the same after
# ten such items and runs `dlq list --json` over them under `/usr/bin/time -v`. The numbers
# in docs/OPERATIONS.md ("Memory for large messages") come from this script. Linux only.
set -euo pipefail

kind=${1:-list}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/target/release/redis-webhook-bridge"
[[ -x $bin ]] || { echo "build it first: cargo build --release" >&2; exit 2; }
dir=$(mktemp -d)
port=$((20000 + RANDOM % 10000))
admin=$((30000 + RANDOM % 10000))
bridge=""
cleanup() {
    [[ -n $bridge ]] && kill "$bridge" 2>/dev/null && wait "$bridge" 2>/dev/null
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

redis-server --port "$port" --save "" --appendonly no --dir "$dir" --daemonize yes \
    --logfile "$dir/redis.log"
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
cat >"$dir/config.toml" <<TOML
[redis]
url = "redis://127.0.0.1:$port"
key_prefix = "mem"
[security]
allow_http = true
allow_private_networks = true
[admin]
listen = "127.0.0.1:$admin"
[[sources]]
kind = "$kind"
key = "big"
[[endpoints]]
name = "site"
url = "http://127.0.0.1:9/hook"
secrets = ["memory-measurement-secret"]
TOML
"$bin" --config "$dir/config.toml" run 2>"$dir/bridge.log" &
bridge=$!
until curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null; do sleep 0.2; done

memory() { grep -E 'VmHWM|VmRSS' "/proc/$bridge/status" | tr -s ' \t' ' ' | tr '\n' ' '; }
push() {
    if [[ $kind == list ]]; then redis-cli -p "$port" -x LPUSH big <"$dir/big.json" >/dev/null
    else redis-cli -p "$port" -x XADD big '*' body <"$dir/big.json" >/dev/null; fi
}
# Until $1 entries are dead-lettered and the source acknowledged them (the list's processing
# list is empty, or the stream group has nothing pending).
wait_dlq() {
    until [[ $(redis-cli -p "$port" XLEN mem:dlq) == "$1" ]]; do sleep 0.2; done
    if [[ $kind == list ]]; then
        while :; do
            local left=0 key
            for key in $(redis-cli -p "$port" --scan --pattern 'mem:processing:*'); do
                left=$((left + $(redis-cli -p "$port" LLEN "$key")))
            done
            [[ $left == 0 ]] && break
            sleep 0.2
        done
    else
        until [[ $(redis-cli -p "$port" XPENDING big webhook-bridge | head -1) == 0 ]]; do
            sleep 0.2
        done
    fi
}

echo "idle:                  $(memory)"
python3 -c "import sys; sys.stdout.write('{\"event_type\":\"big\",\"pad\":\"' + 'x' * 50_000_000 + '\"}')" >"$dir/big.json"
push
wait_dlq 1
echo "one 50 MB $kind item:  $(memory)"
echo "DLQ stream in Redis:   $(redis-cli -p "$port" MEMORY USAGE mem:dlq) bytes"
for _ in $(seq 2 10); do push; done
wait_dlq 10
echo "ten 50 MB items:       $(memory)"
/usr/bin/time -v "$bin" --config "$dir/config.toml" dlq list --json >"$dir/list.out" 2>"$dir/time.out"
echo "dlq list --json (10):  $(grep 'Maximum resident' "$dir/time.out" | tr -s ' \t' ' ')"
