#!/usr/bin/env bash
# Load comparison: mock upstream direct vs nginx (keep-alive reverse proxy) vs the
# Nexus gateway (full layer stack, valid token, quota high enough not to interfere),
# JSON wrap off and on. Prints req/s, p50/p99, the proxy's CPU time per request
# (user + system of nginx's or the gateway's processes during the wrk run, from
# /proc; steadier than req/s on a shared machine) and the ratios; everything runs on
# 127.0.0.1 and every run is bounded (DURATION seconds each).
#
# Latency is measured twice per target: at saturation (the req/s run, where every
# target's p99 is mostly queueing behind the load generator on the shared cores) and
# paced: the same connections, each waiting PACE_MS (default 5-15 ms, 10 ms mean)
# before every request, i.e. about CONNECTIONS * 100 req/s, far below every target's
# capacity. The added p99 over direct is taken from the paced run.
#
# A third reference, `hyper floor` (examples/hyper_floor.rs), is a bare hyper reverse
# proxy with the gateway's server and client set-up and none of its layers: its CPU
# per request is what the HTTP libraries alone cost, so gateway minus floor is what
# the layer stack costs and floor minus nginx is what the libraries cost over nginx.
#
#   bash benches/load/gateway.sh                  # defaults: 10 s per run, 50 connections
#   DURATION=5 CONNECTIONS=100 THREADS=2 bash benches/load/gateway.sh
#   SKIP_BUILD=1 bash benches/load/gateway.sh    # reuse built binaries
#   GW_WORKERS=0 bash benches/load/gateway.sh    # gateway on one multi-thread runtime
#   BASELINE_BIN=/path/to/old/gateway bash benches/load/gateway.sh
#                                                # also runs an older gateway binary (wrap off
#                                                # and on) in the same session, for before/after
#   SKIP_H2=1 bash benches/load/gateway.sh       # skip the HTTP/2-upstream row
#   SKIP_PACED=1 bash benches/load/gateway.sh    # skip the paced latency runs
#   SKIP_FLOOR=1 bash benches/load/gateway.sh    # skip the bare-hyper reference row
#   PACE_MS=2:8 bash benches/load/gateway.sh     # pace range (ms) between requests per connection
#
# The gateway runs like nginx: GW_WORKERS (default: one per core, as nginx's
# `worker_processes auto`) current-thread runtimes on SO_REUSEPORT listeners.
#
# Needs: wrk, nginx (Debian: apt-get install -y wrk nginx), curl, python3, cargo.
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
GW_WORKERS=${GW_WORKERS:-$(nproc)}
GW_ARGS=()
if [ "$GW_WORKERS" != 0 ]; then GW_ARGS=(--workers "$GW_WORKERS"); fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/examples

for tool in wrk nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx curl python3" >&2; exit 1; }
done

if [ -z "${SKIP_BUILD:-}" ]; then # SKIP_BUILD=1 reuses binaries already in $TARGET/release/examples
  echo "building release examples (target: $TARGET)..." >&2
  (cd "$ROOT" && cargo build --release --quiet --features gateway --example gateway --example mock_upstream --example hyper_floor)
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
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & NGINX_PID=$!; PIDS+=($NGINX_PID)
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

declare -A RPS P50 P99 RSS CPU PP50 PP99 PRPS
PACE_MS=${PACE_MS:-5:15}
# wrk's delay() hook: each connection waits a random PACE_MS before each request, so
# requests arrive spread out at a fixed mean rate instead of back to back.
echo "function delay() return math.random(${PACE_MS%%:*}, ${PACE_MS##*:}) end" > "$WORK/pace.lua"
# CPU ticks (user + system, all threads) of the given processes, from /proc.
cpu_ticks() {
  local t=0 f
  for p in "$@"; do
    for f in /proc/"$p"/task/*/stat; do
      t=$((t + $(awk '{print $14 + $15}' "$f" 2>/dev/null || echo 0)))
    done
  done
  echo "$t"
}
CPU_PIDS=() # processes whose CPU per request run_wrk reports (empty: none)
run_wrk() { # name url [header]
  local name=$1 url=$2 out="$WORK/wrk-$1.txt"
  local before=0; [ ${#CPU_PIDS[@]} -gt 0 ] && before=$(cpu_ticks "${CPU_PIDS[@]}")
  if [ $# -ge 3 ]; then
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$3" "$url" > "$out"
  else
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" > "$out"
  fi
  RPS[$name]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  if [ ${#CPU_PIDS[@]} -gt 0 ]; then # microseconds of proxy CPU per request
    local n; n=$(awk '/requests in/ {print $1}' "$out")
    CPU[$name]=$(( ($(cpu_ticks "${CPU_PIDS[@]}") - before) * 1000000 / $(getconf CLK_TCK) * 10 / n ))
  fi
  P50[$name]=$(awk '$1=="50%" {print $2}' "$out")
  P99[$name]=$(awk '$1=="99%" {print $2}' "$out")
  if grep -q "Non-2xx" "$out"; then echo "WARNING: $name had non-2xx responses: $(grep Non-2xx "$out")" >&2; fi
  [ -n "${SKIP_PACED:-}" ] && return 0
  out="$WORK/wrk-$1-paced.txt"
  local header=(); [ $# -ge 3 ] && header=(-H "$3")
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/pace.lua" ${header[@]+"${header[@]}"} "$url" > "$out"
  PRPS[$name]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  PP50[$name]=$(awk '$1=="50%" {print $2}' "$out")
  PP99[$name]=$(awk '$1=="99%" {print $2}' "$out")
  if grep -q "Non-2xx" "$out"; then echo "WARNING: $name (paced) had non-2xx responses: $(grep Non-2xx "$out")" >&2; fi
  return 0
}

echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on $(nproc) cores; gateway workers: $GW_WORKERS (0 = multi-thread runtime)" >&2
echo "before: $(uptime)" >&2
curl -sf "http://127.0.0.1:$UP_PORT/products" > /dev/null
run_wrk direct "http://127.0.0.1:$UP_PORT/products"
curl -sf "http://127.0.0.1:$NGINX_PORT/api/products" > /dev/null
CPU_PIDS=($NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' '))
run_wrk nginx "http://127.0.0.1:$NGINX_PORT/api/products"

if [ -z "${SKIP_FLOOR:-}" ]; then
  FLOOR_PORT=$(free_port)
  "$BIN/hyper_floor" --port "$FLOOR_PORT" --upstream "http://127.0.0.1:$UP_PORT" ${GW_ARGS[@]+--workers "$GW_WORKERS"} \
    > "$WORK/hyper_floor.log" 2>&1 & FLOOR_PID=$!; PIDS+=($FLOOR_PID)
  wait_port "$FLOOR_PORT"
  curl -sf "http://127.0.0.1:$FLOOR_PORT/api/products" > /dev/null
  CPU_PIDS=($FLOOR_PID)
  run_wrk floor "http://127.0.0.1:$FLOOR_PORT/api/products"
  kill "$FLOOR_PID"; wait "$FLOOR_PID" 2>/dev/null || true
fi

VARIANTS=(new:false:false new:true:false)
[ -z "${SKIP_H2:-}" ] && VARIANTS+=(new:false:true)
# The baseline binary runs interleaved with the new one (old off, new off, old on, new on)
# so that drift of the machine's load hits both alike.
if [ -n "${BASELINE_BIN:-}" ]; then
  VARIANTS=(base:false:false new:false:false base:true:false new:true:false)
  [ -z "${SKIP_H2:-}" ] && VARIANTS+=(new:false:true)
fi
for variant in "${VARIANTS[@]}"; do
  which=${variant%%:*}; rest=${variant#*:}
  wrap=${rest%%:*}; h2=${rest##*:}
  gw_bin=$BIN/gateway; [ "$which" = base ] && gw_bin=$BASELINE_BIN
  gateway_config "$wrap" "$h2" > "$WORK/gateway-$variant.yaml"
  NEXUS_BENCH_JWT_SECRET=$SECRET RUST_LOG=${RUST_LOG:-warn} \
    "$gw_bin" --config "$WORK/gateway-$variant.yaml" ${GW_ARGS[@]+"${GW_ARGS[@]}"} > "$WORK/gateway-$variant.log" 2>&1 &
  GW_PID=$!; PIDS+=($GW_PID)
  wait_port "$GW_PORT"
  TOKEN=$(curl -sf -X POST "http://127.0.0.1:$GW_PORT/auth/token" -H 'content-type: application/json' \
    -d "{\"client_id\":\"bench\",\"client_secret\":\"$CLIENT_SECRET\"}" | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
  curl -sf "http://127.0.0.1:$GW_PORT/api/products" -H "authorization: Bearer $TOKEN" > /dev/null
  name="gateway_wrap_$wrap"; [ "$h2" = true ] && name="gateway_h2"
  [ "$which" = base ] && name="base_wrap_$wrap"
  CPU_PIDS=($GW_PID)
  run_wrk "$name" "http://127.0.0.1:$GW_PORT/api/products" "authorization: Bearer $TOKEN"
  RSS[$name]=$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
done

echo "after: $(uptime)" >&2
python3 - "$DURATION" "$CONNECTIONS" <<EOF
import sys
def ms(v):
    v = v.strip()
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
raw = {
$(for k in "${!RPS[@]}"; do echo "  \"$k\": (${RPS[$k]}, \"${P50[$k]}\", \"${P99[$k]}\", ${RSS[$k]:-None}, ${CPU[$k]:-None}),"; done)
}
paced = {
$(for k in "${!PRPS[@]}"; do echo "  \"$k\": (${PRPS[$k]}, \"${PP50[$k]}\", \"${PP99[$k]}\"),"; done)
}
alias = {"direct": "direct", "nginx": "nginx", "floor": "floor", "gateway_wrap_false": "off", "gateway_wrap_true": "on",
         "gateway_h2": "h2", "base_wrap_false": "base_off", "base_wrap_true": "base_on"}
rps = {alias[k]: v[0] for k, v in raw.items()}
p50 = {alias[k]: ms(v[1]) for k, v in raw.items()}
p99 = {alias[k]: ms(v[2]) for k, v in raw.items()}
rss = {alias[k]: v[3] / 1024 for k, v in raw.items() if v[3] is not None}
cpu = {alias[k]: v[4] / 10 for k, v in raw.items() if v[4] is not None}
print(f"| target | req/s | p50 ms | p99 ms | proxy CPU us/req | peak RSS MiB |")
print(f"|---|---:|---:|---:|---:|---:|")
rows = (("direct", "mock upstream direct"), ("nginx", "nginx keep-alive proxy"),
        ("floor", "hyper floor (bare hyper proxy, no layers)"),
        ("base_off", "baseline gateway, wrap off"), ("off", "gateway, wrap off"),
        ("base_on", "baseline gateway, wrap on"), ("on", "gateway, wrap on"),
        ("h2", "gateway, wrap off, HTTP/2 upstream"))
for k, label in rows:
    if k not in rps:
        continue
    r = f"{rss[k]:.1f}" if k in rss else "-"
    c = f"{cpu[k]:.1f}" if k in cpu else "-"
    print(f"| {label} | {rps[k]:.0f} | {p50[k]:.3f} | {p99[k]:.3f} | {c} | {r} |")
print()
if "base_off" in rps:
    print(f"baseline wrap off / nginx req/s: {rps['base_off']/rps['nginx']:.2f}x")
    print(f"baseline wrap on  / nginx req/s: {rps['base_on']/rps['nginx']:.2f}x")
print(f"gateway wrap off / nginx req/s: {rps['off']/rps['nginx']:.2f}x (target >= 1.0x)")
print(f"gateway wrap on  / nginx req/s: {rps['on']/rps['nginx']:.2f}x (target >= 0.7x)")
if "floor" in rps:
    print(f"hyper floor / nginx req/s: {rps['floor']/rps['nginx']:.2f}x (the libraries alone, no layers)")
if "h2" in rps:
    print(f"gateway wrap off, HTTP/2 upstream / nginx req/s: {rps['h2']/rps['nginx']:.2f}x")
for k in ("floor", "base_off", "off", "on"):
    if k in cpu and "nginx" in cpu:
        print(f"proxy CPU per request, {k} / nginx: {cpu[k]:.1f} / {cpu['nginx']:.1f} us = {cpu[k]/cpu['nginx']:.2f}x")
if paced:
    prps = {alias[k]: v[0] for k, v in paced.items()}
    pp50 = {alias[k]: ms(v[1]) for k, v in paced.items()}
    pp99 = {alias[k]: ms(v[2]) for k, v in paced.items()}
    print()
    print(f"paced latency ({sys.argv[2]} connections, each waiting $PACE_MS ms before every request):")
    print("| target | req/s | p50 ms | p99 ms | added p99 over direct ms |")
    print("|---|---:|---:|---:|---:|")
    for k, label in rows:
        if k in prps:
            print(f"| {label} | {prps[k]:.0f} | {pp50[k]:.3f} | {pp99[k]:.3f} | {pp99[k]-pp99['direct']:.3f} |")
    print()
    print(f"added p99 over direct (paced), wrap off: {pp99['off']-pp99['direct']:.3f} ms (target <= 1 ms at {sys.argv[2]} connections)")
    print(f"added p99 over direct (paced), wrap on:  {pp99['on']-pp99['direct']:.3f} ms")
    print(f"added p99 over direct (paced), nginx:    {pp99['nginx']-pp99['direct']:.3f} ms")
print(f"added p99 over direct at saturation, wrap off: {p99['off']-p99['direct']:.3f} ms (queueing-dominated, see header)")
print(f"added p99 over direct at saturation, nginx:    {p99['nginx']-p99['direct']:.3f} ms")
print(f"gateway peak RSS: {max(v for k, v in rss.items() if not k.startswith('base')):.1f} MiB (target < 50 MiB)")
EOF
