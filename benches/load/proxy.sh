#!/usr/bin/env bash
# Redis direct vs twemproxy vs the Nexus cache proxy under redis-benchmark load.
#   benches/load/proxy.sh                      # defaults: 100k requests (P1), 1M (P16), 3 rounds
#   benches/load/proxy.sh --requests 50000 --pipelined-requests 500000
# Needs redis-server, redis-benchmark and nutcracker (apt-get install -y redis-server redis-tools nutcracker).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --quiet --release --features cache --example cache_proxy --manifest-path "$root/Cargo.toml"
exec python3 "$root/benches/load/proxy.py" --proxy-bin "$target/release/examples/cache_proxy" "$@"
