"""Scheduler throughput: 10,000 pods onto 1,000 simulated nodes, against a naive baseline.

Run: python bench/bench_scheduler.py [--pods N] [--nodes N] [--naive-sample N] [--seed S]

The pods are stored Kubernetes pods compiled once by `SchedulingRequest.from_pod` (timed separately, not part of
the scheduling figures). The fast path is `Scheduler.schedule_all` (incremental per-node aggregates, cached static
filters). It is timed twice: scoring every node (our default, percentage 100) and with
kube-scheduler's adaptive percentageOfNodesToScore (42% of 1,000 nodes).
The baseline is `schedule_naive` (filter-then-score over all nodes, usage rebuilt from the
bound pods for every pod); it is quadratic, so it is timed on a sample of pods scheduled
from the same starting cluster and extrapolated to the full run; the output says so.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gitkube.api.views import PodView  # noqa: E402
from gitkube.reconcile.scheduler import (  # noqa: E402
    NodeInfo,
    SchedulingRequest,
    Scheduler,
    SchedulerConfig,
    schedule_naive,
)


def make_cluster(num_nodes: int, num_pods: int, seed: int):
    rng = random.Random(seed)
    zones = ["a", "b", "c"]
    nodes = [
        NodeInfo(
            name=f"node-{i:04d}",
            labels={"kubernetes.io/hostname": f"node-{i:04d}", "zone": zones[i % 3],
                    **({"disk": "ssd"} if i % 4 == 0 else {})},
            cpu_millis=rng.choice([4000, 8000, 16000]),
            memory_bytes=rng.choice([8, 16, 32]) << 30,
            pods=110,
            ready=i % 97 != 0,  # a few nodes down
            unschedulable=i % 211 == 0,
        )
        for i in range(num_nodes)
    ]
    pods = []
    spread = []
    rcs = [f"rc:ns{i % 5}/app-{i}" for i in range(200)]
    for i in range(num_pods):
        rc = rcs[i % len(rcs)]
        ns = rc.split(":")[1].split("/")[0]
        kind = i % 20
        cpu, mem = rng.choice([None, "100m", "250m", "500m"]), rng.choice([None, "128Mi", "512Mi"])
        container = {"name": "app", "image": "app",
                     "resources": {"requests": {**({"cpu": cpu} if cpu else {}), **({"memory": mem} if mem else {})}}}
        spec = {"containers": [container]}
        if kind == 0:
            container["ports"] = [{"containerPort": 80, "hostPort": 8000 + i % 50, "protocol": "TCP"}]
        if kind == 1:
            container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
            spec["volumes"] = [{"name": "data", "hostPath": {"path": "/var/data/" + rc}}]
        if kind == 2:
            spec["nodeSelector"] = {"disk": "ssd"}
        pods.append({"apiVersion": "v1", "kind": "Pod", "spec": spec,
                     "metadata": {"name": f"{rc.split('/')[1]}-{i}", "namespace": ns, "uid": f"uid-{i:06d}",
                                  "labels": {"app": rc}}})
        spread.append(frozenset({rc} | ({f"svc:{ns}/front"} if i % 3 == 0 else set())))
    return nodes, pods, spread


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--nodes", type=int, default=1_000)
    ap.add_argument("--naive-sample", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    nodes, stored, spread = make_cluster(a.nodes, a.pods, a.seed)
    t = time.perf_counter()
    pods = [SchedulingRequest.from_pod(PodView(p), keys) for p, keys in zip(stored, spread)]
    dt = time.perf_counter() - t
    print(f"compiled {a.pods} stored pods into scheduling requests in {dt:.2f}s = {a.pods / dt:,.0f} pods/s")

    for label, pct in (("every node scored, the default", 100), ("adaptive percentageOfNodesToScore", 0)):
        t = time.perf_counter()
        results = Scheduler(SchedulerConfig(percentage_of_nodes_to_score=pct)).schedule_all(pods, nodes)
        dt = time.perf_counter() - t
        bound = sum(r.node is not None for r in results)
        print(f"fast ({label}): {a.pods} pods on {a.nodes} nodes in {dt:.2f}s = {a.pods / dt:,.0f} pods/s "
              f"({bound} bound, {a.pods - bound} unschedulable)")
        if pct == 100:
            fast_rate = a.pods / dt

    # Naive baseline: time `sample` pods on top of a cluster already holding half the pods, the
    # average load over the full run, and extrapolate linearly.
    half = Scheduler(SchedulerConfig(percentage_of_nodes_to_score=100)).schedule_all(pods[: a.pods // 2], nodes)
    bound = [replace(p, node_name=r.node) for p, r in zip(pods, half) if r.node]
    sample = pods[a.pods // 2: a.pods // 2 + a.naive_sample]
    t = time.perf_counter()
    schedule_naive(sample, nodes, bound)
    dt = time.perf_counter() - t
    naive_rate = len(sample) / dt
    print(f"naive filter-then-score (no aggregates): {len(sample)} pods sampled at half load in {dt:.2f}s "
          f"= {naive_rate:,.1f} pods/s, extrapolated full run ≈ {a.pods / naive_rate / 60:,.1f} min")
    print(f"ratio fast (every node scored) / naive: {fast_rate / naive_rate:,.0f}x")


if __name__ == "__main__":
    main()
