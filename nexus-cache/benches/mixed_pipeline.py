#!/usr/bin/env python3
"""CPU time of the cache proxy per pipeline of [LRANGE big 0 -1, GET k].

Usage: mixed_pipeline.py PROXY_BIN REDIS_PORT PROXY_PORT ROUNDS ITERATIONS
Needs a Redis on 127.0.0.1:REDIS_PORT holding a 10,000-item list `big`
(items `item-00000`..) and `k` = `v` (see docs/benchmarks/cache-admin.md).
Starts PROXY_BIN (examples/cache_proxy) on PROXY_PORT, sends the pipeline
ITERATIONS times per round, and prints the proxy's CPU time (utime + stime
from /proc) and the wall time per pipeline.
"""
import socket, subprocess, sys, time, os
proxy_bin, redis_port, proxy_port, rounds, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def cmd(*a):
    out = b"*%d\r\n" % len(a)
    for x in a:
        x = x if isinstance(x, bytes) else x.encode()
        out += b"$%d\r\n%s\r\n" % (len(x), x)
    return out
p = subprocess.Popen([proxy_bin, "--listen", f"127.0.0.1:{proxy_port}", "--upstream", f"redis://127.0.0.1:{redis_port}", "--pool-size", "2", "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", proxy_port)); break
        except OSError:
            time.sleep(0.05)
    pipe = cmd("LRANGE", "big", "0", "-1") + cmd("GET", "k")
    # reply sizes: read until we got the GET reply after the big array
    def roundtrip():
        s.sendall(pipe)
        buf = b""
        while not (buf.endswith(b"$1\r\nv\r\n") and len(buf) > 100000):
            buf += s.recv(1 << 20)
    roundtrip()
    for r in range(rounds):
        c0 = cpu(p.pid); t0 = time.time()
        for _ in range(iters):
            roundtrip()
        c1 = cpu(p.pid); t1 = time.time()
        print(f"round {r}: proxy CPU {1e6*(c1-c0)/iters:.0f} us/pipeline, wall {1e6*(t1-t0)/iters:.0f} us/pipeline")
finally:
    p.terminate(); p.wait()
