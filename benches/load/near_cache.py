#!/usr/bin/env python3
"""Near cache: GET of one near-cached hot key through the Nexus proxy vs Redis direct,
in the same run, and the invisibility window of a direct write on Redis.

1. Throughput: redis-benchmark, 50 clients, `GET n:hot` (a 64-byte value), without
   pipelining and with -P 16, alternating Redis direct and the proxy for --rounds rounds;
   prints each round, the best ops/s of each target and the ratio proxy/direct.
2. Invisibility window: --writes times, SET n:w <i> directly on Redis, then GET n:w
   through the proxy in a tight loop until it returns <i>; the window is the time from
   the SET's acknowledgement to the first proxy read of the new value (p50/p99/max, ms).
   Measured idle, then with the pipelined GET load running against the proxy.

Usage: benches/load/near_cache.sh [--requests N] [--pipelined-requests N] [--rounds N]
       [--writes N] [--threads N] [--proxy-bin PATH]
All servers listen on 127.0.0.1 on free ports and are stopped at exit.
"""

import argparse
import csv
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from loadkit import cpu_seconds, free_port, wait_port

POLICY = """rules:
  - commands: [GET]
    keys: "n:*"
    near_cache: { ttl: 10s, max_entries: 10000, max_bytes: 16MiB }
"""



def bench(port, pipeline, requests):
    """(rps, p50_ms, p99_ms) of `GET n:hot` with 50 clients."""
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(requests),
         "-c", "50", "-P", str(pipeline), "--csv", "GET", "n:hot"],
        check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    row = list(csv.DictReader(io.StringIO(out)))[0]
    return float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"])


class Conn:
    """A minimal RESP client: one command, one reply (bulk, simple, integer, error)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self.reply()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self.line()
        if line[:1] == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(65536)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if line[:1] == b"*":
            return [self.reply() for _ in range(int(line[1:]))]
        return line


def stats(port):
    r = Conn(port).call("NEXUS.STATS")
    return {r[i].decode(): int(r[i + 1][1:]) for i in range(0, len(r), 2)}


def window(redis_port, proxy_port, writes, timeout=2.0):
    """Invisibility windows (ms) of `writes` direct writes, read through the proxy."""
    direct, proxied = Conn(redis_port), Conn(proxy_port)
    direct.call("SET", "n:w", "0")
    out = []
    for i in range(1, writes + 1):
        # Make sure the old value is near-cached before the write.
        for _ in range(3):
            proxied.call("GET", "n:w")
        want = str(i).encode()
        direct.call("SET", "n:w", want)
        t0 = time.perf_counter()
        while True:
            got = proxied.call("GET", "n:w")
            t = time.perf_counter() - t0
            if got == want:
                out.append(t * 1000.0)
                break
            if got != str(i - 1).encode():
                sys.exit(f"unexpected value {got!r} (want {want!r} or the previous)")
            if t > timeout:
                sys.exit(f"write {i} invisible after {timeout}s")
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200_000, help="requests per non-pipelined test")
    ap.add_argument("--pipelined-requests", type=int, default=2_000_000, help="requests per -P 16 test")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writes", type=int, default=500, help="direct writes for the window")
    ap.add_argument("--threads", default="1", help="proxy runtime worker threads")
    ap.add_argument("--pool-size", default="2")
    ap.add_argument("--proxy-bin", required=True)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="nexus-near-bench-")
    procs = []

    def cleanup(*_):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *a: (cleanup(), sys.exit(1)))
    try:
        redis_port, proxy_port = free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL))
        wait_port(redis_port, procs[-1])
        policy = os.path.join(tmp, "policy.yaml")
        with open(policy, "w") as f:
            f.write(POLICY)
        procs.append(subprocess.Popen(
            [args.proxy_bin, "--listen", f"127.0.0.1:{proxy_port}",
             "--upstream", f"redis://127.0.0.1:{redis_port}", "--pool-size", args.pool_size,
             "--threads", args.threads, "--policy", policy],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(proxy_port, procs[-1])
        Conn(redis_port).call("SET", "n:hot", "v" * 64)
        deadline = time.time() + 10
        while stats(proxy_port)["near_cache_tracking_now"] != 1:
            if time.time() > deadline:
                sys.exit("tracking link never came up")
            time.sleep(0.05)
        c = Conn(proxy_port)
        for _ in range(10):
            c.call("GET", "n:hot")

        print(f"GET n:hot (64-byte value), 50 clients; proxy --threads {args.threads} --pool-size {args.pool_size}")
        best, cpu, ratios = {}, {}, {1: [], 16: []}
        pids = {"redis": procs[0].pid, "nexus-near": procs[1].pid}
        for rnd in range(1, args.rounds + 1):
            for pipeline, n in ((1, args.requests), (16, args.pipelined_requests)):
                got = {}
                for name, port in (("redis", redis_port), ("nexus-near", proxy_port)):
                    c0 = cpu_seconds(pids[name])
                    rps, p50, p99 = bench(port, pipeline, n)
                    us = (cpu_seconds(pids[name]) - c0) * 1e6 / n
                    got[name] = rps
                    cpu.setdefault((pipeline, name), []).append(us)
                    print(f"  round {rnd} P{pipeline:<2} {name:<11} {rps:>12,.0f} ops/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms  server CPU {us:.2f} us/op", flush=True)
                    key = (pipeline, name)
                    if rps > best.get(key, (0,))[0]:
                        best[key] = (rps, p50, p99)
                ratios[pipeline].append(got["nexus-near"] / got["redis"])
        print("best of rounds, and the median of the per-round ratios (each round runs both back to back):")
        for pipeline in (1, 16):
            r, n = best[(pipeline, "redis")], best[(pipeline, "nexus-near")]
            med = sorted(ratios[pipeline])[len(ratios[pipeline]) // 2]
            cr = sorted(cpu[(pipeline, "redis")])[len(cpu[(pipeline, "redis")]) // 2]
            cn = sorted(cpu[(pipeline, "nexus-near")])[len(cpu[(pipeline, "nexus-near")]) // 2]
            print(f"  P{pipeline:<2} redis {r[0]:>12,.0f}  nexus-near {n[0]:>12,.0f}  best/best {n[0] / r[0]:.2f}x  "
                  f"median round ratio {med:.2f}x  server CPU us/op (median) redis {cr:.2f} nexus {cn:.2f}")
        s = stats(proxy_port)
        print("proxy near_cache_hits %d near_cache_misses %d (forwarded %d commands to Redis)"
              % (s["near_cache_hits"], s["near_cache_misses"], s["forwarded"]))

        w = window(redis_port, proxy_port, args.writes)
        print(f"invisibility window, idle, {len(w)} direct writes: "
              f"p50 {pct(w, 50):.3f} ms  p99 {pct(w, 99):.3f} ms  max {max(w):.3f} ms")
        load = subprocess.Popen(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(proxy_port), "-n", "100000000",
             "-c", "50", "-P", "16", "-q", "GET", "n:hot"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(load)
        time.sleep(0.5)
        w = window(redis_port, proxy_port, args.writes)
        print(f"invisibility window, under the P16 GET load, {len(w)} direct writes: "
              f"p50 {pct(w, 50):.3f} ms  p99 {pct(w, 99):.3f} ms  max {max(w):.3f} ms")
        load.kill()
    finally:
        cleanup()


if __name__ == "__main__":
    main()
