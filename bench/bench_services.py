"""Services data plane, both proxy modes in one run: requests/s and p50/p99 latency through a ClusterIP (the
kernel's NAT rules in iptables mode, the node's HAProxy in haproxy mode) against straight to the pod IP in the same
run, the ratio, and the time from an endpoint change to the new endpoint being routed.

Run (root): python bench/bench_services.py [--requests N] [--seconds S] [--rounds R] [--changes N] [--sandbox K] [--keep]
            (from any directory)

It brings up its own sandbox (`gitkube sandbox --id K up`, K from --sandbox, env GITKUBE_TEST_SANDBOX_ID, else 3;
nodes 198.18.K.11-13) and tears it down at the end (unless --keep), and removes its temp dir. The backend is
busybox httpd in a container on n1; the client is Python in node n2's network namespace (nsenter), one fresh TCP
connection per HTTP/1.0 request — the pod's path minus its veth hop. Each load loop is bounded by count and by time.
Targets (iptables mode): ClusterIP throughput >= 0.9x the pod IP's; endpoint change -> routed <= 100 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gitkube.api import parse_object  # noqa: E402
from gitkube.nodes.images import app as appimages  # noqa: E402
from gitkube.nodes.transport.fleet import Fleet  # noqa: E402
from gitkube.nodes.images.ship import ship  # noqa: E402
from gitkube.nodes.inventory import load_inventory  # noqa: E402
from gitkube.nodes.dataplane.proxy import sync_services  # noqa: E402
from gitkube.api.views import PodView  # noqa: E402
from gitkube.reconcile.endpoints import ServiceInfo, ServicePortInfo, compute_all_endpoints  # noqa: E402
from gitkube.reconcile.services import plan_dataplane  # noqa: E402
from tests.unit._pods import pod_view  # noqa: E402

SID = int(os.environ.get("GITKUBE_TEST_SANDBOX_ID", "3"))
MODES = ("iptables", "haproxy")
NODEPORT = 30090
LABEL = "gk-bench-svc"

# Runs inside a node's netns: N sequential HTTP/1.0 GETs (new connection each) within a time budget.
CLIENT = r"""
import json, socket, sys, time
host, port, n, budget, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
req = b"GET / HTTP/1.0\r\n\r\n"
def one():
    t = time.perf_counter()
    with socket.create_connection((host, port), timeout=2) as s:
        s.sendall(req)
        while s.recv(65536):
            pass
    return time.perf_counter() - t
import threading
lat, errors = [], [0]
stop = time.monotonic() + budget
lock = threading.Lock()
left = [n]
def worker():
    while time.monotonic() < stop:
        with lock:
            if left[0] <= 0:
                return
            left[0] -= 1
        try:
            d = one()
            with lock:
                lat.append(d)
        except OSError:
            with lock:
                errors[0] += 1
for _ in range(3):
    one()  # warm up
t0 = time.perf_counter()
ts = [threading.Thread(target=worker) for _ in range(conc)]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps({"lat": lat, "errors": errors[0], "wall": time.perf_counter() - t0}))
"""


def sh(*argv, timeout=600, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed: {r.stderr.strip()}")
    return r


class Bench:
    def __init__(self, state: Path):
        self.state = state

    def gk(self, *args, timeout=600):
        return sh(sys.executable, "-m", "gitkube", "--state-dir", str(self.state), "sandbox", "--id", str(SID), *args,
                  timeout=timeout)

    def docker(self, node, *argv, check=True):
        return sh("docker", "-H", f"unix:///var/lib/gitkube/sandbox/gk{SID}/{node}/docker.sock", *argv, check=check)

    def backend(self, node: str) -> PodView:
        name = f"{LABEL}-{node}"
        self.docker(node, "rm", "-f", name, check=False)
        self.docker(node, "run", "-d", "--name", name, "--label", LABEL, "gitkube/busybox:latest", "sh", "-c",
                    f"echo {node} > /var/www/index.html && exec httpd -f -p 8080 -h /var/www")
        ip = self.docker(node, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()
        return pod_view(name, uid=name, labels={"app": "bench"}, ip=ip, node=node, ready=True, phase="Running")

    def client(self, node, host, port, n, budget, conc) -> dict:
        r = sh("nsenter", f"--net=/var/run/netns/gk{SID}-{node}", sys.executable, "-c", CLIENT, host, str(port), str(n),
               str(budget), str(conc), timeout=budget + 60)
        return json.loads(r.stdout)


def summary(res: dict) -> dict:
    lat = sorted(res["lat"])
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else lat * 99
    return {"n": len(lat), "errors": res["errors"], "rps": len(lat) / res["wall"], "p50": q[49] * 1000,
            "p99": q[98] * 1000}


def _probe(host: str, port: int, want: str, deadline: float, seen: list) -> None:
    """HTTP/1.0 GETs on fresh connections until one answers `want` (its time goes to `seen`) or the deadline."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as c:
                c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := c.recv(65536):
                    data += chunk
            if data.rsplit(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip() == want:
                seen.append(time.monotonic())
                return
        except OSError:
            pass
        time.sleep(0.002)


def measure(b: "Bench", mode: str, sync, p1, others: dict, args) -> dict:
    """One proxy mode: throughput and latency, ClusterIP against pod IP, then endpoint change -> routed."""
    t0 = time.monotonic()
    plan = sync([p1], mode)
    print(f"\n=== proxy mode {mode}: switched and synced on 3 nodes in {time.monotonic() - t0:.2f}s")
    t0 = time.monotonic()
    sync([p1], mode)
    print(f"unchanged sync of 3 nodes: {(time.monotonic() - t0) * 1000:.1f} ms")
    cip = plan.cluster_ips[0]
    time.sleep(0.5)
    label = "ClusterIP (kernel NAT)" if mode == "iptables" else "ClusterIP (HAProxy on n2)"
    print(f"client: Python in n2's netns, backend: busybox httpd on n1 ({p1.ip}), ClusterIP {cip}")
    print(f"{'path':28} {'conc':>4} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    rows, per_round = {}, {}
    for conc in (1, args.concurrency):
        # Interleaved rounds (pod IP, ClusterIP, pod IP, ...): a load spike from elsewhere on the machine hits both
        # paths alike instead of one whole measurement. The ratio is of all rounds' requests over all rounds' time (a
        # round is short, so its own ratio, printed too, swings with any spike).
        runs: dict[str, dict] = {}
        ratios = []
        for _ in range(args.rounds):
            rps = {}
            for name, host, port in (("pod IP (direct)", p1.ip, 8080), (label, cip, 80)):
                r = b.client("n2", host, port, max(1, args.requests // args.rounds), args.seconds / args.rounds, conc)
                acc = runs.setdefault(name, {"lat": [], "errors": 0, "wall": 0.0})
                acc["lat"] += r["lat"]
                acc["errors"] += r["errors"]
                acc["wall"] += r["wall"]
                rps[name] = len(r["lat"]) / r["wall"] if r["wall"] else 0.0
            ratios.append(rps[label] / rps["pod IP (direct)"] if rps["pod IP (direct)"] else 0.0)
        per_round[conc] = ratios
        for name in ("pod IP (direct)", label):
            s = summary(runs[name])
            rows[(name, conc)] = s
            print(f"{name:28} {conc:>4} {s['n']:>8} {s['errors']:>6} {s['rps']:>8.0f} {s['p50']:>7.2f} {s['p99']:>7.2f}")
    out = {}
    for conc in (1, args.concurrency):
        d, c = rows[("pod IP (direct)", conc)], rows[(label, conc)]
        out[conc] = c["rps"] / d["rps"]
        print(f"at concurrency {conc}: ClusterIP throughput {out[conc]:.2f}x the pod IP's (all rounds; each round: "
              f"{', '.join(f'{r:.2f}' for r in per_round[conc])}), p50 x{c['p50'] / d['p50']:.2f}, "
              f"p99 x{c['p99'] / d['p99']:.2f}")
    # Endpoint change -> routed: alternate the second backend between n3 and n2, timing from the start of the
    # sync until the NodePort on n1 answers from it. The NodePort is probed from the start, beside the sync (fresh
    # connections, one every ~2 ms): the kernel or HAProxy routes the new endpoint as soon as the node applied it,
    # which may be before the sync has seen every node confirm.
    times, sync_times = [], []
    for i in range(args.changes):
        node = "n3" if i % 2 == 0 else "n2"
        t0 = time.monotonic()
        seen: list[float] = []
        probe = threading.Thread(target=_probe, args=(f"198.18.{SID}.11", NODEPORT, node, t0 + 10, seen))
        probe.start()
        sync([p1, others[node]], mode)
        sync_times.append(time.monotonic() - t0)
        probe.join()
        if not seen:
            raise SystemExit(f"{mode}: change {i}: {node} not routed within 10 s")
        times.append(seen[0] - t0)
    med = statistics.median(times)
    print(f"endpoint change -> routed ({args.changes} changes, 3 nodes synced in parallel): "
          f"median {med * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
          f"(of which the sync call: median {statistics.median(sync_times) * 1000:.0f} ms)")
    return {"ratio": out, "routed": med}


def main() -> int:
    global SID
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests per measurement (default 3000)")
    ap.add_argument("--seconds", type=float, default=15.0, help="time budget per measurement (default 15)")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads for the throughput run (default 4)")
    ap.add_argument("--changes", type=int, default=5, help="endpoint changes to time (default 5)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds per path and concurrency, sharing --requests and --seconds (default 5)")
    ap.add_argument("--sandbox", type=int, default=SID, help=f"sandbox id (default {SID})")
    ap.add_argument("--modes", default=",".join(MODES), help="proxy modes to measure (default iptables,haproxy)")
    ap.add_argument("--keep", action="store_true", help="leave the sandbox up afterwards")
    args = ap.parse_args()
    SID = args.sandbox

    state = Path(tempfile.mkdtemp(prefix="gk-bench-svc-"))
    b = Bench(state)
    fleet = None
    try:
        t0 = time.monotonic()
        inv = Path(b.gk("up", "--nodes", "3").stdout.strip().splitlines()[-1])
        print(f"sandbox {SID} up in {time.monotonic() - t0:.1f}s")
        fleet = Fleet(load_inventory(inv))
        t0 = time.monotonic()
        ship(fleet, [appimages.build(n) for n in appimages.SYSTEM_IMAGES], progress=lambda m: None)
        print(f"proxy, iptables and dns images shipped in {time.monotonic() - t0:.1f}s")
        svc = parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench", "namespace": "default"},
                            "spec": {"type": "NodePort", "selector": {"app": "bench"},
                                     "ports": [{"port": 80, "targetPort": 8080, "nodePort": NODEPORT}]}})
        info = [ServiceInfo("default", "bench", {"app": "bench"}, (ServicePortInfo(80, target_port=8080),))]
        alloc = None

        def sync(pods, mode):
            nonlocal alloc
            plan = plan_dataplane([svc], compute_all_endpoints(info, pods), alloc)
            alloc = plan.allocation
            res = fleet.map(lambda h: sync_services(h, list(plan.cluster_ips), plan.haproxy_cfg, plan.dns_hosts,
                                                    plan.dns_ip, mode, plan.iptables_rules), timeout=120)
            bad = {n: r for n, r in res.items() if isinstance(r, Exception)}
            if bad:
                raise SystemExit(f"sync failed: {bad}")
            return plan

        p1 = b.backend("n1")
        others = {"n3": b.backend("n3"), "n2": b.backend("n2")}
        results = {mode: measure(b, mode, sync, p1, others, args) for mode in args.modes.split(",")}
        print("\nsummary")
        for mode, r in results.items():
            ratios = ", ".join(f"{v:.2f}x at concurrency {c}" for c, v in r["ratio"].items())
            print(f"  {mode:8}: ClusterIP throughput {ratios} the pod IP's; endpoint change -> routed "
                  f"{r['routed'] * 1000:.0f} ms")
        if "iptables" in results:
            r = results["iptables"]
            worst = min(r["ratio"].values())
            print(f"  targets (iptables): throughput >= 0.9x: {worst:.2f}x {'met' if worst >= 0.9 else 'MISSED'}; "
                  f"routed <= 100 ms: {r['routed'] * 1000:.0f} ms {'met' if r['routed'] <= 0.1 else 'MISSED'}")
    finally:
        if fleet is not None:
            fleet.close()
        if not args.keep:
            t0 = time.monotonic()
            b.gk("down", timeout=300)
            print(f"sandbox {SID} down in {time.monotonic() - t0:.1f}s")
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
