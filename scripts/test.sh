#!/usr/bin/env bash
# THE test command of the README and of CI (.ci/run calls exactly this).
#
# 1. scripts/setup.sh  installs redis-server/redis-cli, tansu and confluent-kafka if missing
# 2. cargo fmt --all --check
# 3. cargo clippy --workspace --all-targets -- -D warnings
# 4. tests: cargo nextest run --workspace + cargo test --workspace --doc
#    (plain `cargo test --workspace` when nextest is not installed)
#
# No global services are needed: every test starts its own redis-server, Tansu
# broker or HTTP upstream on a free loopback port through nexus-testkit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A CI run starts from an empty target/: incremental state would only cost time and disk.
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL=0
fi
started=$(date +%s)
log="$(mktemp)"
on_exit() {
    local rc=$?
    rm -f "$log"
    if [ "$rc" -ne 0 ] && [ -z "${finished:-}" ]; then
        echo
        echo "scripts/test.sh: FAILED at step: $current (exit $rc, after $(( $(date +%s) - started ))s)"
    fi
}
trap on_exit EXIT

current="start"
step() { current="$*"; printf '\n==> %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - started ))s"; }

step "bash scripts/setup.sh"
bash scripts/setup.sh

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings   ($(elapsed) so far)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# Count results from the runners' own summary lines.
passed=0
failed=0
count() {
    local pf
    # nextest: "Summary [  12.3s] 120 tests run: 118 passed, 2 failed, 0 skipped";
    # libtest: "test result: ok. 9 passed; 0 failed; ...". Sum whichever appears.
    pf=$(awk '
        / tests? run: / { for (i = 1; i <= NF; i++) {
                              if ($(i+1) ~ /^passed/) np = $i
                              if ($(i+1) ~ /^failed/) nf = $i } ; seen = 1 }
        /^test result: / { for (i = 1; i <= NF; i++) {
                              if ($(i+1) ~ /^passed/) lp += $i
                              if ($(i+1) ~ /^failed/) lf += $i } }
        END { if (seen) print np + 0, nf + 0; else print lp + 0, lf + 0 }' "$log")
    passed=$((passed + ${pf% *}))
    failed=$((failed + ${pf#* }))
    : >"$log"
}

status=0
if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace   ($(elapsed) so far)"
    cargo nextest run --workspace --no-fail-fast 2>&1 | tee "$log" || status=1
    count
    step "cargo test --workspace --doc   ($(elapsed) so far)"
    cargo test --workspace --doc --quiet 2>&1 | tee "$log" || status=1
    count
else
    step "cargo test --workspace   ($(elapsed) so far)"
    cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=1
    count
fi

if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1 # a build error or a crash: no summary line, but not a pass
fi
finished=1
echo
echo "scripts/test.sh: fmt ok, clippy ok, tests $([ "$status" -eq 0 ] && echo ok || echo FAILED) in $(elapsed)"
echo "$passed passed, $failed failed"
exit "$status"
