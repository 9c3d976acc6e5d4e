"""Helpers shared by the load scripts in benches/load/ (and
nexus-cache/benches/policy_get_ab.py): loopback ports, waiting for a started
server to accept connections, a process's CPU time, the cache-policy file
the proxy benchmarks run with."""

import os
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"process {proc.args[0]} exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"port {port} not ready after {timeout}s")


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_policy(singleflight=False):
    """The policy of the "policy on" proxy: every redis-benchmark key
    (`key:__rand_int__`) matches, so each SET is rewritten with a jittered TTL
    and each GET is observed by the hot-key detector and checked against the
    hot rule."""
    return f"""rules:
  - name: bench-writes
    commands: [SET]
    keys: "key:*"
    ttl: 1h
    ttl_jitter: 1m
  - name: bench-reads
    commands: [GET]
    keys: "key:*"
    singleflight: {"true" if singleflight else "false"}
    hot: {{ threshold: 1000, window: 1s, extend_by: 10m, max_ttl: 2h }}
"""


def stop(procs):
    """Terminates the processes still running and waits for each (5 s, then
    kills it)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
