#!/usr/bin/env bash
# Load comparison: mock upstream direct vs nginx (keep-alive reverse proxy) vs the
# Nexus gateway (full layer stack, valid token, quota high enough not to interfere),
# JSON wrap off and on. Prints req/s, p50/p99 and the ratios; everything runs on
# 127.0.0.1 and every run is bounded (DURATION seconds each).
#
#   bash benches/load/gateway.sh                  # defaults: 10 s per run, 50 connections
#   DURATION=5 CONNECTIONS=100 THREADS=2 bash benches/load/gateway.sh
#   SKIP_BUILD=1 bash benches/load/gateway.sh    # reuse built binaries
#
# Needs: wrk, nginx (Debian: apt-get install -y wrk nginx), curl, python3, cargo.
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/examples

for tool in wrk nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx curl python3" >&2; exit 1; }
done

if [ -z "${SKIP_BUILD:-}" ]; then # SKIP_BUILD=1 reuses binaries already in $TARGET/release/examples
  echo "building release examples (target: $TARGET)..." >&2
  (cd "$ROOT" && cargo build --release --quiet --features gateway --example gateway --example mock_upstream)
fi

WORK=$(mktemp -d /tmp/nexus-gw-load.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2; return 1
}

UP_PORT=$(free_port); NGINX_PORT=$(free_port); GW_PORT=$(free_port)

"$BIN/mock_upstream" --port "$UP_PORT" > "$WORK/upstream.log" 2>&1 & PIDS+=($!)
wait_port "$UP_PORT"

# nginx: keep-alive pool to the upstream, no access log, as many workers as cores.
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  upstream mock { server 127.0.0.1:$UP_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /api/ {
      proxy_pass http://mock/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & PIDS+=($!)
wait_port "$NGINX_PORT"

SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
CLIENT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
CLIENT_HASH=$(printf %s "$CLIENT_SECRET" | sha256sum | cut -d' ' -f1)
printf '{"services":[{"url":"http://127.0.0.1:%s","weight":1}]}\n' "$UP_PORT" > "$WORK/services.json"

gateway_config() { # $1 = wrap_json (true/false), $2 = HTTP/2 to the upstream (true/false)
  cat <<EOF
listen: 127.0.0.1:$GW_PORT
auth:
  signing_secret_env: NEXUS_BENCH_JWT_SECRET
  clients:
    - id: bench
      secret_sha256: $CLIENT_HASH
rate_limit:
  capacity: 100000000
  refill_per_sec: 100000000
proxy:
  services_file: $WORK/services.json
  http2: $2
transform:
  wrap_json: $1
EOF
}

declare -A RPS P50 P99 RSS
run_wrk() { # name url [header]
  local name=$1 url=$2 out="$WORK/wrk-$1.txt"
  if [ $# -ge 3 ]; then
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$3" "$url" > "$out"
  else
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" > "$out"
  fi
  RPS[$name]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  P50[$name]=$(awk '$1=="50%" {print $2}' "$out")
  P99[$name]=$(awk '$1=="99%" {print $2}' "$out")
  if grep -q "Non-2xx" "$out"; then echo "WARNING: $name had non-2xx responses: $(grep Non-2xx "$out")" >&2; fi
}

echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on $(nproc) cores" >&2
curl -sf "http://127.0.0.1:$UP_PORT/products" > /dev/null
run_wrk direct "http://127.0.0.1:$UP_PORT/products"
curl -sf "http://127.0.0.1:$NGINX_PORT/api/products" > /dev/null
run_wrk nginx "http://127.0.0.1:$NGINX_PORT/api/products"

for variant in false:false true:false false:true; do
  wrap=${variant%%:*}; h2=${variant##*:}
  gateway_config "$wrap" "$h2" > "$WORK/gateway-$variant.yaml"
  NEXUS_BENCH_JWT_SECRET=$SECRET RUST_LOG=${RUST_LOG:-warn} \
    "$BIN/gateway" --config "$WORK/gateway-$variant.yaml" > "$WORK/gateway-$variant.log" 2>&1 &
  GW_PID=$!; PIDS+=($GW_PID)
  wait_port "$GW_PORT"
  TOKEN=$(curl -sf -X POST "http://127.0.0.1:$GW_PORT/auth/token" -H 'content-type: application/json' \
    -d "{\"client_id\":\"bench\",\"client_secret\":\"$CLIENT_SECRET\"}" | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
  curl -sf "http://127.0.0.1:$GW_PORT/api/products" -H "authorization: Bearer $TOKEN" > /dev/null
  name="gateway_wrap_$wrap"; [ "$h2" = true ] && name="gateway_h2"
  run_wrk "$name" "http://127.0.0.1:$GW_PORT/api/products" "authorization: Bearer $TOKEN"
  RSS[$name]=$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
done

python3 - "$DURATION" "$CONNECTIONS" <<EOF
import sys
def ms(v):
    v = v.strip()
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
rps = {"direct": ${RPS[direct]}, "nginx": ${RPS[nginx]}, "off": ${RPS[gateway_wrap_false]}, "on": ${RPS[gateway_wrap_true]}, "h2": ${RPS[gateway_h2]}}
p50 = {"direct": ms("${P50[direct]}"), "nginx": ms("${P50[nginx]}"), "off": ms("${P50[gateway_wrap_false]}"), "on": ms("${P50[gateway_wrap_true]}"), "h2": ms("${P50[gateway_h2]}")}
p99 = {"direct": ms("${P99[direct]}"), "nginx": ms("${P99[nginx]}"), "off": ms("${P99[gateway_wrap_false]}"), "on": ms("${P99[gateway_wrap_true]}"), "h2": ms("${P99[gateway_h2]}")}
rss = {"off": ${RSS[gateway_wrap_false]} / 1024, "on": ${RSS[gateway_wrap_true]} / 1024, "h2": ${RSS[gateway_h2]} / 1024}
print(f"| target | req/s | p50 ms | p99 ms | peak RSS MiB |")
print(f"|---|---:|---:|---:|---:|")
for k, label in (("direct", "mock upstream direct"), ("nginx", "nginx keep-alive proxy"), ("off", "gateway, wrap off"), ("on", "gateway, wrap on"), ("h2", "gateway, wrap off, HTTP/2 upstream")):
    r = f"{rss[k]:.1f}" if k in rss else "-"
    print(f"| {label} | {rps[k]:.0f} | {p50[k]:.3f} | {p99[k]:.3f} | {r} |")
print()
print(f"gateway wrap off / nginx req/s: {rps['off']/rps['nginx']:.2f}x (target >= 1.0x)")
print(f"gateway wrap on  / nginx req/s: {rps['on']/rps['nginx']:.2f}x (target >= 0.7x)")
print(f"gateway wrap off, HTTP/2 upstream / nginx req/s: {rps['h2']/rps['nginx']:.2f}x")
print(f"added p99 over direct, wrap off: {p99['off']-p99['direct']:.3f} ms (target <= 1 ms at 50 connections)")
print(f"added p99 over direct, nginx:    {p99['nginx']-p99['direct']:.3f} ms")
print(f"gateway peak RSS: {max(rss.values()):.1f} MiB (target < 50 MiB)")
EOF
