#!/usr/bin/env python3
"""Proxy CPU time per pipelined GET, policy off and on, for two builds.

Usage: policy_get_ab.py NEW_BIN BASE_BIN [--rounds 10] [--requests 2000000] [--pipeline 16]

Starts one redis-server and four cache_proxy processes on free loopback
ports (NEW_BIN and BASE_BIN, each without a policy and with the policy of
benches/load/proxy.py: a `hot` rule on every benchmark key), then runs
`redis-benchmark -c 50 -P PIPELINE -t get -n REQUESTS` against each, interleaved
(the order reversed every other round), and prints per target the median
ops/s and the median proxy CPU time (utime + stime from /proc) per GET.
The benchmark reads one key, so every GET takes the hot-key path to its end.

CPU per request hardly depends on what else the machine runs, unlike ops/s
on shared cores; compare within one run only. Run it under the bench lock:
  flock /work/notes/bench.lock nexus-cache/benches/policy_get_ab.py NEW BASE
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "benches", "load"))
from loadkit import bench_policy, cpu_seconds, free_port, stop, wait_port  # noqa: E402



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("new_bin")
    ap.add_argument("base_bin")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--requests", type=int, default=2_000_000)
    ap.add_argument("--pipeline", type=int, default=16)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="nexus-policy-ab-")
    policy = os.path.join(tmp, "policy.yaml")
    with open(policy, "w") as f:
        f.write(bench_policy())
    procs = []
    try:
        redis_port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp, "--logfile", os.path.join(tmp, "redis.log")])
        procs.append(redis)
        wait_port(redis_port, redis)
        targets = []
        for name, binary, extra in (("new", args.new_bin, []),
                                    ("new-on", args.new_bin, ["--policy", policy]),
                                    ("base", args.base_bin, []),
                                    ("base-on", args.base_bin, ["--policy", policy])):
            port = free_port()
            proc = subprocess.Popen(
                [binary, "--listen", f"127.0.0.1:{port}", "--upstream",
                 f"redis://127.0.0.1:{redis_port}", "--pool-size", "2", "--threads", "1", *extra],
                stderr=subprocess.DEVNULL)
            procs.append(proc)
            wait_port(port, proc)
            targets.append((name, port, proc.pid))
        # The key the GETs read exists (with the policy's TTL, as in proxy.py).
        subprocess.run(["redis-benchmark", "-p", str(targets[1][1]), "-t", "set", "-n", "1000",
                        "-q"], check=True, capture_output=True, timeout=60)
        runs = {name: [] for name, _, _ in targets}
        for i in range(args.rounds):
            for name, port, pid in (targets if i % 2 == 0 else targets[::-1]):
                before = cpu_seconds(pid)
                out = subprocess.run(
                    ["redis-benchmark", "-p", str(port), "-c", "50", "-P", str(args.pipeline), "-t", "get",
                     "-n", str(args.requests), "--csv"],
                    check=True, capture_output=True, text=True, timeout=300).stdout
                rps = float(out.strip().splitlines()[-1].split(",")[1].strip('"'))
                ns = (cpu_seconds(pid) - before) / args.requests * 1e9
                runs[name].append((rps, ns))
        med = {name: (statistics.median(r for r, _ in rows), statistics.median(c for _, c in rows))
               for name, rows in runs.items()}
        print(f"redis-benchmark -c 50 -P {args.pipeline} -t get -n {args.requests}; "
              f"{args.rounds} interleaved rounds")
        for name, rows in runs.items():
            print(f"{name:<8} ops/s median {med[name][0]:>10,.0f}  CPU ns/GET median {med[name][1]:5.0f}"
                  f"  (runs: {', '.join(f'{c:.0f}' for _, c in rows)})")
        for build in ("new", "base"):
            on, off = med[f"{build}-on"], med[build]
            print(f"{build}: policy on/off ops/s {on[0] / off[0]:.2f}x, CPU per GET {on[1] / off[1]:.2f}x"
                  f" (+{on[1] - off[1]:.0f} ns)")
        print(f"policy on, new / base CPU per GET: {med['new-on'][1] / med['base-on'][1]:.2f}x")
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
