"""Node connection figures: gitkube's SSH+Docker connect time and per-call latency on a warm connection, against
`ssh NODE docker version` run by the OpenSSH client (a new connection per call) as the baseline, same run.

Usage: sudo python bench/bench_ssh.py [--calls 50]   (brings up sandbox 8 with one node and removes it after)
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from gitkube.nodes.transport.docker_api import NodeDocker
from gitkube.nodes.inventory import load_inventory
from gitkube.sandbox.netns import Sandbox
from gitkube.nodes.transport.ssh import SSHConnection


def ms(xs):
    return f"median {statistics.median(xs) * 1000:.2f} ms, p90 {sorted(xs)[int(len(xs) * 0.9) - 1] * 1000:.2f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--id", type=int, default=8)
    a = ap.parse_args()
    sb = Sandbox(a.id)
    try:
        inv = sb.up(1, progress=lambda m: print(m, file=sys.stderr))
        node = load_inventory(inv)[0]
        connects = []
        for _ in range(10):
            t0 = time.perf_counter()
            ssh = SSHConnection(node.ssh_target())
            d = NodeDocker(ssh, node.docker_host)
            d.api.version()
            connects.append(time.perf_counter() - t0)
            ssh.close()
        ssh = SSHConnection(node.ssh_target())
        d = NodeDocker(ssh, node.docker_host)
        d.api.version()
        warm = []
        for _ in range(a.calls):
            t0 = time.perf_counter()
            d.api.version()
            warm.append(time.perf_counter() - t0)
        listing = []
        for _ in range(a.calls):
            t0 = time.perf_counter()
            d.api.containers(all=True, filters={"label": "io.gitkube.managed=true"})
            listing.append(time.perf_counter() - t0)
        base = []
        cmd = ["ssh", "-i", str(sb.key_file), "-o", f"UserKnownHostsFile={sb.known_hosts}", "-o", "StrictHostKeyChecking=yes",
               "-o", "BatchMode=yes", f"root@{node.host}", "docker", "version", "--format", "{{.Server.Version}}"]
        for _ in range(min(a.calls, 20)):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            base.append(time.perf_counter() - t0)
        print(f"gitkube connect (TCP+SSH handshake+host key check+auth+first API call): {ms(connects)}")
        print(f"gitkube warm call (GET /version on the open connection):                  {ms(warm)}")
        print(f"gitkube warm call (labelled container list):                              {ms(listing)}")
        print(f"baseline `ssh NODE docker version` (OpenSSH client, one connection per call): {ms(base)}")
        print(f"ratio warm call / baseline: {statistics.median(warm) / statistics.median(base):.3f} "
              f"({statistics.median(base) / statistics.median(warm):.0f}x faster); "
              f"connect / baseline: {statistics.median(connects) / statistics.median(base):.2f}; handshakes made for {a.calls * 2} warm calls: {ssh.connects}")
    finally:
        sb.down(progress=lambda m: None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
