#!/usr/bin/env bash
# Near cache: GET of a near-cached hot key through the Nexus proxy vs Redis direct (same run),
# 50 clients, -P 1 and -P 16, and the invisibility window of direct writes on Redis (p50/p99).
#   benches/load/near_cache.sh                         # defaults: 200k (P1), 2M (P16), 3 rounds, 500 writes
#   benches/load/near_cache.sh --threads 2 --rounds 5
# Needs redis-server and redis-benchmark (apt-get install -y redis-server redis-tools).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --quiet --release --example cache_proxy --manifest-path "$root/Cargo.toml"
exec python3 "$root/benches/load/near_cache.py" --proxy-bin "$target/release/examples/cache_proxy" "$@"
