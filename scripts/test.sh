#!/usr/bin/env bash
# The test command: `scripts/test.sh [cargo test args…]`, e.g. `scripts/test.sh dlq`.
#
# Runs `cargo test` (library, binary, integration tests in tests/ and doctests). The
# integration tests start their own redis-server processes on free ports, cross-check
# signatures with python3, run the docs' Node snippet, check deploy/ with promtool and
# systemd-analyze, and signal processes with kill(1) (procps). When one is missing, this
# script installs it with apt-get if it runs as root on a Debian/Ubuntu machine, and
# otherwise stops and says how to install it (scripts/prerequisites.sh has the list).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly PROG="test.sh"
# shellcheck source=scripts/prerequisites.sh
source scripts/prerequisites.sh
test_prerequisites

# cargo prints one summary per test binary; the last line here adds them up.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# --no-fail-fast: every test binary runs even after one failed, so the summary counts all.
cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
