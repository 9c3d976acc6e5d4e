#!/usr/bin/env python3
"""Load comparison: Redis direct vs twemproxy (nutcracker) vs the Nexus cache proxy,
and the Nexus proxy with its cache policy on ("nexus-on": default TTL rewrite on every
SET, hot-key tracking and TTL extension rules on every GET; --on-singleflight adds
singleflight to the GETs) against the same proxy without a policy ("on/off" ratio).

Runs redis-benchmark (GET/SET, 50 clients) without pipelining and with -P 16 against
each target in one run, then prints ops/s, ratios, p99 and the proxy's peak RSS. A
`SET ... PX` sent by the clients to Redis and to the policy-off proxy measures the
policy-on proxy against the same work in Redis (the policy appends that TTL itself).
Usage: benches/load/proxy.sh [--requests N] [--pipelined-requests N] [--proxy-bin PATH]
                             [--baseline-bin PATH]
--baseline-bin adds a second Nexus build (policy off and on: "base", "base-on") to the
same interleaved rounds, for before/after comparisons that share the machine's load.
All servers listen on 127.0.0.1 on free ports and are stopped at exit.
"""

import argparse
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

from loadkit import bench_policy, cpu_seconds, free_port, stop, wait_port


def bench(port, pipeline, requests):
    """Returns {test: (rps, p50_ms, p99_ms)} for GET and SET."""
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
         "-n", str(requests), "-c", "50", "-P", str(pipeline), "--csv"],
        check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    return {r["test"]: (float(r["rps"]), float(r["p50_latency_ms"]), float(r["p99_latency_ms"])) for r in rows}


# The policy-on proxy appends `PX <1h ± jitter>` to every SET; this is the
# same write sent by the client, so that a policy-off proxy can be measured
# doing the same work in Redis.
SET_PX = ["SET", "key:__rand_int__", "xxx", "PX", "3600000"]


def bench_cmd(port, pipeline, requests, cmd):
    """Returns (rps, p50_ms, p99_ms) of one custom command."""
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(requests),
         "-c", "50", "-P", str(pipeline), "--csv", *cmd],
        check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    r = list(csv.DictReader(io.StringIO(out)))[0]
    return (float(r["rps"]), float(r["p50_latency_ms"]), float(r["p99_latency_ms"]))


BEHAVIOUR_INPUTS = [
    ("unsupported by twemproxy: MULTI", b"*1\r\n$5\r\nMULTI\r\n"),
    ("unsupported by twemproxy: SELECT 1", b"*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n"),
    ("bulk length not a number", b"*2\r\n$3\r\nGET\r\n$abc\r\n"),
    ("negative bulk length", b"*2\r\n$3\r\nGET\r\n$-7\r\n"),
    ("negative array length", b"*-3\r\n"),
    ("empty bulk length", b"*2\r\n$3\r\nGET\r\n$\r\n"),
    ("huge bulk length", b"*2\r\n$3\r\nGET\r\n$99999999999999999999\r\n"),
    ("array length not a number", b"*x\r\n"),
    ("payload longer than its length", b"*2\r\n$3\r\nGET\r\n$1\r\nkk\r\n"),
    ("CR without LF after a length", b"*2\r$3\r\nGET\r\n$1\r\nk\r\n"),
    ("length with a plus sign", b"*2\r\n$3\r\nGET\r\n$+1\r\nk\r\n"),
    ("length with trailing space", b"*2\r\n$3\r\nGET\r\n$1 \r\nk\r\n"),
]


def probe(port, payload, timeout=2.0):
    """Sends payload; returns the first reply line, 'closed, no reply' or 'HANGS'."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        try:
            data = s.recv(4096)
        except socket.timeout:
            return "HANGS (no reply, not closed, 2 s)"
        except ConnectionResetError:
            return "connection reset, no reply"
        if not data:
            return "closed, no reply"
        return data.split(b"\r\n")[0].decode(errors="replace")[:70]


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000, help="requests per non-pipelined test")
    ap.add_argument("--pipelined-requests", type=int, default=1_000_000, help="requests per -P 16 test")
    ap.add_argument("--proxy-bin", required=True)
    ap.add_argument("--baseline-bin", help="an older cache_proxy build, measured in the same rounds")
    ap.add_argument("--pool-size", default="2")
    ap.add_argument("--threads", default="1", help="proxy runtime worker threads")
    ap.add_argument("--on-singleflight", action="store_true",
                    help="the nexus-on policy also enables singleflight for the benchmark's GETs")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs per target, interleaved; the median is reported (shared machines are noisy)")
    args = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark", "nutcracker"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y redis-server redis-tools nutcracker")

    procs = []
    tmp = tempfile.mkdtemp(prefix="nexus-load-")

    def cleanup(*_):
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(1)))
    try:
        redis_port, tw_port, tw_stats, nexus_port = free_port(), free_port(), free_port(), free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp, "--logfile", os.path.join(tmp, "redis.log")])
        procs.append(redis)
        wait_port(redis_port, redis)

        conf = os.path.join(tmp, "nutcracker.yml")
        with open(conf, "w") as f:
            f.write(f"""bench:
  listen: 127.0.0.1:{tw_port}
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  server_connections: 1
  servers:
   - 127.0.0.1:{redis_port}:1
""")
        tw = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(tw_stats), "-a", "127.0.0.1",
                               "-o", os.path.join(tmp, "nutcracker.log")])
        procs.append(tw)
        wait_port(tw_port, tw)

        nexus = subprocess.Popen([args.proxy_bin, "--listen", f"127.0.0.1:{nexus_port}",
                                  "--upstream", f"redis://127.0.0.1:{redis_port}",
                                  "--pool-size", args.pool_size, "--threads", args.threads],
                                 stderr=open(os.path.join(tmp, "nexus.log"), "w"))
        procs.append(nexus)
        wait_port(nexus_port, nexus)

        policy = os.path.join(tmp, "policy.yaml")
        with open(policy, "w") as f:
            f.write(bench_policy(args.on_singleflight))
        on_port = free_port()
        nexus_on = subprocess.Popen([args.proxy_bin, "--listen", f"127.0.0.1:{on_port}",
                                     "--upstream", f"redis://127.0.0.1:{redis_port}",
                                     "--pool-size", args.pool_size, "--threads", args.threads,
                                     "--policy", policy],
                                    stderr=open(os.path.join(tmp, "nexus-on.log"), "w"))
        procs.append(nexus_on)
        wait_port(on_port, nexus_on)

        targets = [("redis", redis_port), ("twemproxy", tw_port), ("nexus", nexus_port),
                   ("nexus-on", on_port)]
        base_pid = None
        pids = {"nexus": nexus.pid, "nexus-on": nexus_on.pid}
        if args.baseline_bin:
            for name, extra in (("base", []), ("base-on", ["--policy", policy])):
                port = free_port()
                proc = subprocess.Popen([args.baseline_bin, "--listen", f"127.0.0.1:{port}",
                                         "--upstream", f"redis://127.0.0.1:{redis_port}",
                                         "--pool-size", args.pool_size, "--threads", args.threads,
                                         *extra],
                                        stderr=open(os.path.join(tmp, f"{name}.log"), "w"))
                procs.append(proc)
                wait_port(port, proc)
                targets.append((name, port))
                pids[name] = proc.pid
                base_pid = base_pid or proc.pid
        runs = {}
        for _ in range(args.rounds):
            for pipeline, n in ((1, args.requests), (16, args.pipelined_requests)):
                for name, port in targets:
                    for test, row in bench(port, pipeline, n).items():
                        runs.setdefault((name, pipeline, test), []).append(row)
                    if name in ("redis", "nexus", "base"):
                        row = bench_cmd(port, pipeline, n, SET_PX)
                        runs.setdefault((name, pipeline, "SET PX"), []).append(row)
        # Median run by ops/s, per target, pipeline and test.
        results = {}
        for (name, pipeline, test), rows in runs.items():
            rows.sort(key=lambda r: r[0])
            results.setdefault((name, pipeline), {})[test] = rows[len(rows) // 2]
        peak = rss_kib(nexus.pid, "VmHWM")
        now = rss_kib(nexus.pid, "VmRSS")

        print(f"redis-benchmark -c 50 -t get,set; -n {args.requests} (P1), -n {args.pipelined_requests} (P16); "
              f"nexus pool size {args.pool_size}, threads {args.threads}; median of {args.rounds} interleaved rounds")
        print(f"load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'test':<6}{'P':>3}  {'target':<10}{'ops/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'vs redis':>10}{'vs twem':>9}")
        for pipeline in (1, 16):
            for test in ("SET", "GET"):
                base = results[("redis", pipeline)][test][0]
                tw_rps = results[("twemproxy", pipeline)][test][0]
                for name, _ in targets:
                    rps, p50, p99 = results[(name, pipeline)][test]
                    print(f"{test:<6}{pipeline:>3}  {name:<10}{rps:>12,.0f}{p50:>9.3f}{p99:>9.3f}"
                          f"{rps / base:>10.2f}{rps / tw_rps:>9.2f}")
        for pipeline in (1, 16):
            for test in ("SET", "GET"):
                ratio = results[("nexus-on", pipeline)][test][0] / results[("nexus", pipeline)][test][0]
                print(f"policy on/off, {test} P{pipeline}: {ratio:.2f}x (target >= 0.9x)")
        for pipeline in (1, 16):
            on = results[("nexus-on", pipeline)]["SET"][0]
            off_px = results[("nexus", pipeline)]["SET PX"][0]
            redis_px = results[("redis", pipeline)]["SET PX"][0] / results[("redis", pipeline)]["SET"][0]
            print(f"policy on/off with the same Redis work (off: clients send SET ... PX), SET P{pipeline}: "
                  f"{on / off_px:.2f}x (Redis direct: SET PX runs at {redis_px:.2f}x of plain SET)")
        for test in ("SET", "GET"):
            added = results[("nexus", 1)][test][2] - results[("redis", 1)][test][2]
            print(f"p99 added by nexus over direct, {test} P1: {added:.3f} ms")
        if args.baseline_bin:
            for test in ("SET", "GET"):
                added = results[("base", 1)][test][2] - results[("redis", 1)][test][2]
                print(f"p99 added by base over direct, {test} P1: {added:.3f} ms")
            for pipeline in (1, 16):
                for test in ("SET", "GET"):
                    new = results[("nexus", pipeline)][test][0] / results[("base", pipeline)][test][0]
                    new_on = (results[("nexus-on", pipeline)][test][0]
                              / results[("base-on", pipeline)][test][0])
                    base_onoff = (results[("base-on", pipeline)][test][0]
                                  / results[("base", pipeline)][test][0])
                    print(f"nexus / base, {test} P{pipeline}: {new:.2f}x (policy on: {new_on:.2f}x); "
                          f"base policy on/off {base_onoff:.2f}x")
            print(f"base RSS: peak {rss_kib(base_pid, 'VmHWM') / 1024:.1f} MiB")
        # Every proxy served the same requests, so CPU totals compare directly
        # (and, unlike ops/s, hardly depend on what else the machine runs).
        print("proxy CPU over all rounds (user + system): " + ", ".join(
            f"{name} {cpu_seconds(pid):.2f} s" for name, pid in pids.items()))
        print(f"nexus RSS: peak {peak / 1024:.1f} MiB, now {now / 1024:.1f} MiB")
        print("\nprotocol behaviour (first reply line):")
        for label, payload in BEHAVIOUR_INPUTS:
            print(f"  {label}")
            print(f"    twemproxy: {probe(tw_port, payload)}")
            print(f"    nexus:     {probe(nexus_port, payload)}")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
