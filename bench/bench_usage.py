"""Usage sampling cost: Docker API calls and wall time of one sample of 300 pods on 3 nodes, and what sampling adds
to a no-op reconcile pass (on against off, same run). On its own sandbox fleet (id 7 by default).

Run (root): python bench/bench_usage.py [--pods 300] [--passes 5] [--sandbox-id 7]

1. `--pods` pods (one `sleep` container each, spread by the scheduler) brought up by in-process controller passes.
2. In-process, with the controller's fleet (one SSH connection per node): samples as `serve` takes them
   (gitkube.controller.usage.UsageSampler: per node one list call + one one-shot stats call per running container,
   infra containers skipped), at stats concurrency 4, 16 (the default) and 32: Docker calls per node and wall time
   per sample. The Engine API has no bulk stats endpoint, so the calls grow with the containers.
3. No-op passes timed with sampling off, then with a sampler running back to back in a thread (the worst case:
   `serve` samples every 15 s, a sample takes a fraction of that), then off again; the ratio of the mean pass
   time on/off. Not a timed test: it prints figures. The sandbox is torn down at the end (also on failure).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_pods import Bench  # noqa: E402


def sample_costs(ctrl, concurrency: int, samples: int = 3) -> dict:
    from gitkube.controller.usage import UsageSampler

    s = UsageSampler(ctrl, interval=15.0, concurrency=concurrency)
    out = []
    for _ in range(samples):
        before = {n: ctrl.fleet[n].docker.calls for n in ctrl.fleet.names()}
        t = time.monotonic()
        snap = s.sample()
        wall = time.monotonic() - t
        calls = {n: ctrl.fleet[n].docker.calls - before[n] for n in ctrl.fleet.names()}
        out.append((wall, calls, len(snap["pods"]), sum(1 for p in snap["pods"].values() if p["complete"])))
    return {"concurrency": concurrency, "samples": out}


def bring_up(ctrl, n: int, deadline: float) -> int:
    """Passes until the n pods run (or `deadline` seconds pass); how many run."""
    t0 = time.monotonic()
    running = 0
    while time.monotonic() - t0 < deadline:
        try:
            ctrl.reconcile()
        except Exception as e:  # noqa: BLE001 - a pass that fails on a loaded machine is retried
            print(f"  (pass failed: {e})")
        running = sum(1 for p in ctrl.store.list("Pod", namespace="*") if (p.get("status") or {}).get("phase") == "Running")
        if running >= n:
            break
    ctrl.reconcile()  # one no-op pass: caches warm
    return running


def timed_passes(ctrl, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.monotonic()
        rep = ctrl.reconcile()
        out.append(time.monotonic() - t)
        if rep.node_errors:
            print(f"  (pass with node errors: {rep.node_errors})")
    return out


def main() -> int:
    """The bench as one straight script (bring up, measure, print, tear down): longer than 60 lines because the
    steps share the sandbox and the controller and read best in order."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=300)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--up-timeout", type=float, default=1500.0, metavar="S",
                    help="measure after S seconds of passes even if not every pod runs yet (a loaded machine)")
    ap.add_argument("--sandbox-id", type=int, default=int(os.environ.get("GITKUBE_SANDBOX_ID", "7")))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_usage needs root (the sandbox fleet)")
    from gitkube.controller import Controller, Source
    from gitkube.controller.usage import UsageSampler

    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-usage-") as tmp:
        b = Bench(args.sandbox_id, Path(tmp))
        try:
            b.up()
            b.set_pods("u", args.pods)
            ctrl = Controller(str(b.state), Source(str(b.repo), None, "manifests", str(b.inventory)),
                              grace_period=120.0, eviction_timeout=600.0)
            try:
                t = time.monotonic()
                running = bring_up(ctrl, args.pods, deadline=args.up_timeout)
                print(f"{running}/{args.pods} pods Running on 3 nodes after {time.monotonic() - t:.0f} s of passes "
                      "(in-process controller: its connections outlive a slow node)")
                print("one usage sample of every node (list + one-shot stats per running container, infra skipped):")
                for conc in (4, 16, 32):
                    r = sample_costs(ctrl, conc)
                    for i, (wall, calls, pods, complete) in enumerate(r["samples"]):
                        print(f"  concurrency {conc} sample {i + 1}: {wall:6.2f} s wall; Docker calls per node "
                              f"{dict(sorted(calls.items()))} (total {sum(calls.values())}); {pods} pods, "
                              f"{complete} with a CPU figure")
                off1 = timed_passes(ctrl, args.passes)
                stop = threading.Event()
                sampler = UsageSampler(ctrl, interval=15.0)
                count = [0]

                def loop():
                    while not stop.is_set():
                        sampler.sample()
                        count[0] += 1

                th = threading.Thread(target=loop, daemon=True)
                th.start()
                time.sleep(0.5)
                on, t_on = [], time.monotonic()
                while (count[0] < 2 or len(on) < args.passes) and time.monotonic() - t_on < 120 and len(on) < 200:
                    on += timed_passes(ctrl, 1)  # passes while at least two whole samples run beside them (bounded)
                stop.set()
                th.join(timeout=120)
                off2 = timed_passes(ctrl, args.passes)
            finally:
                ctrl.close()
            off = off1 + off2
            m_off, m_on = statistics.mean(off), statistics.mean(on)
            print(f"no-op pass with {args.pods} pods: sampling off {m_off:.2f} s (median {statistics.median(off):.2f}, "
                  f"{len(off)} passes), sampling on back to back {m_on:.2f} s (median {statistics.median(on):.2f}, "
                  f"{len(on)} passes, {count[0]} samples meanwhile)")
            print(f"  added time {m_on - m_off:+.2f} s per pass; ratio on/off {m_on / m_off:.2f} "
                  f"(worst case; at the default 15 s interval a sample overlaps few passes)")
        finally:
            b.down()
    print(f"bench wall time {time.monotonic() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
