#!/usr/bin/env bash
# THE main command of the README: run the whole Nexus system on this machine.
#
# 1. scripts/setup.sh installs redis-server, tansu and confluent-kafka if missing.
# 2. If nothing answers on 127.0.0.1:6379 (Redis) or 127.0.0.1:9092 (Kafka),
#    starts redis-server / a Tansu broker there, and stops them on exit.
#    To use your own servers instead, set NEXUS_REDIS_ADDR=host:port and/or
#    NEXUS_KAFKA_BOOTSTRAP=host:port: nothing is started for what you set.
# 3. cargo run --release --example full_stack -- --redis ADDR --kafka ADDR [your args]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH"
say() { printf '[full_stack] %s\n' "$*"; }

bash scripts/setup.sh

run_dir="$(mktemp -d -t nexus-full-stack-XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# answers HOST PORT: true when a TCP connection succeeds within 1 s.
answers() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# wait_for NAME HOST PORT SECONDS LOG
wait_for() {
    local deadline=$((SECONDS + $4))
    until answers "$2" "$3"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "$1 did not answer on $2:$3 within $4 s; its log:"
            cat "$5" >&2
            exit 1
        fi
        sleep 0.1
    done
}

if [ -n "${NEXUS_REDIS_ADDR:-}" ]; then
    redis_addr="$NEXUS_REDIS_ADDR"
    say "using your Redis at $redis_addr (NEXUS_REDIS_ADDR)"
else
    redis_addr="127.0.0.1:6379"
    if answers 127.0.0.1 6379; then
        say "something already listens on $redis_addr: using it as Redis"
    else
        say "starting redis-server on $redis_addr (no persistence, log: $run_dir/redis.log)"
        # setsid: ctrl-c reaches full_stack only; Redis and the broker keep
        # serving while it shuts down, and cleanup stops them afterwards.
        setsid redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$run_dir" >"$run_dir/redis.log" 2>&1 &
        pids+=($!)
        wait_for redis-server 127.0.0.1 6379 10 "$run_dir/redis.log"
    fi
fi

if [ -n "${NEXUS_KAFKA_BOOTSTRAP:-}" ]; then
    kafka_addr="$NEXUS_KAFKA_BOOTSTRAP"
    say "using your Kafka at $kafka_addr (NEXUS_KAFKA_BOOTSTRAP)"
else
    kafka_addr="127.0.0.1:9092"
    if answers 127.0.0.1 9092; then
        say "something already listens on $kafka_addr: using it as the Kafka broker"
    else
        say "starting the Tansu Kafka broker on $kafka_addr (memory storage, log: $run_dir/tansu.log)"
        setsid tansu broker --listener-url tcp://127.0.0.1:9092 \
            --advertised-listener-url tcp://127.0.0.1:9092 \
            --storage-engine memory://tansu/ >"$run_dir/tansu.log" 2>&1 &
        pids+=($!)
        wait_for tansu 127.0.0.1 9092 20 "$run_dir/tansu.log"
    fi
fi

say "cargo run --release --example full_stack -- --redis $redis_addr --kafka $kafka_addr $*"
cargo run --release --quiet --example full_stack -- --redis "$redis_addr" --kafka "$kafka_addr" "$@"
