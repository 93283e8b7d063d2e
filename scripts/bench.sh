#!/usr/bin/env bash
# The benchmark: `scripts/bench.sh [--only SCENARIO,…] [--strict] [--perf DIR] [--bin PATH]`.
#
# Builds the bridge and the benchmark in release mode, then runs examples/bench/, which
# starts its own redis-server (no persistence) on a free port and an HTTP sink on 127.0.0.1,
# runs the release binary `redis-webhook-bridge run` per scenario, and prints one table:
# throughput (durability redis/memory × 1/4 endpoints) against the direct-HTTP ceiling of the
# same run, publish → receipt latency at 1,000 msg/s, peak RSS, CPU per 1,000 messages, and
# RSS while a 200,000-message backlog grows. See docs/PERFORMANCE.md.
#
# Environment: BENCH_N (20000 messages per throughput scenario), BENCH_BACKLOG (200000),
# BENCH_LATENCY_RATE (1000 msg/s), BENCH_LATENCY_SECS (10), BENCH_REPEAT (3 runs per number),
# BENCH_SINK_DELAY_MS (0: how long the sink takes to answer), BENCH_QUIET_WAIT (0: seconds to
# wait for a quiet machine before each measurement). Works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    echo "bench.sh: redis-server is not installed, and the benchmark starts its own. Install Redis: 'sudo apt-get install -y redis-server' (Debian/Ubuntu), 'brew install redis' (macOS), or your platform's package of Redis. No Redis needs to be running." >&2
    exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "bench.sh: cargo is not installed; install a Rust toolchain with rustup (https://rustup.rs)" >&2
    exit 1
fi
if [[ ! -r /proc/self/status ]]; then
    echo "bench.sh: /proc is not available; the benchmark reads RSS and CPU time from /proc (Linux only)" >&2
    exit 1
fi

cargo build --release --bins --examples
if rev="$(git rev-parse --short HEAD 2>/dev/null)"; then
    git diff --quiet HEAD -- src examples Cargo.toml Cargo.lock 2>/dev/null || rev="$rev with uncommitted changes in src/, examples/ or Cargo.*"
    echo "source: $rev"
fi
target_dir="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
target_dir="${target_dir:-target}"
exec "$target_dir/release/examples/bench" --bin "$target_dir/release/redis-webhook-bridge" "$@"
