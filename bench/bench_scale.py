"""How gitkube's costs grow with the fleet: one sandbox grown to 3, 9, 18 and 32 nodes, 10 pods per node.

Run (root): python bench/bench_scale.py [--sizes 3,9,18,32] [--pods-per-node 10] [--passes 5] [--sandbox 9]
            (from any directory; everything it makes is removed at the end, the sandbox torn down)

For each size it prints:
- the sandbox's start time and memory per node (dockerd+containerd+sshd resident, plus the containers' cgroup);
- the no-op reconcile pass (in-process `Controller.reconcile()`, warm connections): median wall time of --passes
  passes, and Docker API calls per node (whole pass: heartbeat included);
- the time to deploy --pods-per-node more pods on every node (`gitkube apply --wait`, a new process);
- the pass time with the last node cut off: the first pass after the cut and the median of the later ones.
Target: a no-op pass at 32 nodes <= 2x the pass at 3 nodes (printed at the end). --budget bounds the run: no new
size starts after it; SIGTERM tears down as a normal end does. Pods are pinned to their node
(spec.nodeName) so every node holds the same count; every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._cli import git, gk, settle, timed_passes  # noqa: E402


def pods_yaml(nodes: int, per_node: int, prefix: str) -> str:
    docs = []
    for n in range(1, nodes + 1):
        for k in range(per_node):
            docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{prefix}-n{n}-{k}"},
                         "spec": {"nodeName": f"n{n}", "terminationGracePeriodSeconds": 0,
                                  "containers": [{"name": "app", "image": "gitkube/busybox:latest",
                                                  "imagePullPolicy": "Never", "command": ["sleep", "1000000"],
                                                  "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]}})
    return yaml.safe_dump_all(docs)


def per_node_calls(t) -> float:
    """A timed pass's Docker calls, per node."""
    return sum(t.calls.values()) / max(len(t.calls), 1)


def commit(work: Path, files: dict[str, str | None], message: str) -> None:
    d = work / "manifests"
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        if text is None:
            (d / name).unlink(missing_ok=True)
        else:
            (d / name).write_text(text)
    git(work, "add", "-A", "manifests")
    git(work, "commit", "-q", "--allow-empty", "-m", message)


def passes(state: Path, repo: Path, inventory: Path, count: int, cut=None) -> dict[str, list]:
    """`count` reconcile passes after a warm-up (with `cut()` called after the warm-up when given), each a
    bench._cli.TimedPass: as they run ("as run": quiet passes once nothing moves, see gitkube.controller.quiet)
    and, without a cut, planned in full too ("full": the baseline)."""
    from gitkube.controller import Controller, Source

    ctrl = Controller(str(state), Source(str(repo), None, "manifests", str(inventory)))
    out = {}
    try:
        rep = ctrl.reconcile()
        if rep.node_errors:
            print(f"    warm-up pass node errors: {rep.node_errors}")
        if cut is not None:
            cut()
        else:
            settle(ctrl)
        for mode in ("as run",) if cut is not None else ("as run", "full"):
            timed = timed_passes(ctrl, count, full=mode == "full")
            for t in timed:
                rep = t.report
                if cut is None and (rep.node_errors or any(rep.node_actions.values())):
                    print(f"    WARNING: not a no-op pass: {rep.summary()}")
            out[mode] = timed
            if mode == "as run" and cut is None:
                print(f"    {sum(t.report.quiet for t in timed)} of {count} passes were quiet", flush=True)
    finally:
        ctrl.close()
    return out


def run(args, tmp: Path) -> None:
    from gitkube.sandbox.netns import Sandbox

    state, fleet_state, work = tmp / "state", tmp / "fleet", tmp / "repo"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    sb = Sandbox(args.sandbox)
    rows = []
    started = time.monotonic()
    for n in args.sizes:
        if time.monotonic() - started > args.budget:
            print(f"== {n} nodes: skipped, the time budget ({args.budget:.0f}s) is spent")
            break
        print(f"== {n} nodes", flush=True)
        t0 = time.monotonic()
        out = gk(fleet_state, "sandbox", "--id", str(args.sandbox), "up", "--nodes", str(n))
        inventory = Path(out.stdout.strip().splitlines()[-1])
        up = time.monotonic() - t0
        print(f"  sandbox up (grown to {n} nodes): {up:.1f}s; {out.stderr.strip().splitlines()[-1]}", flush=True)
        commit(work, {"base.yaml": pods_yaml(n, args.pods_per_node, "p"), "more.yaml": None}, f"{n} nodes")
        t0 = time.monotonic()
        for attempt in (1, 2, 3):  # on this 2-core machine the engines of 32 nodes drop calls at load ~250
            r = gk(state, "apply", "--repo", str(work), "--inventory", str(inventory), "--wait", "--timeout", "1500",
                   timeout=1600, check=attempt == 3)
            if r.returncode == 0:
                break
            print(f"  base deploy attempt {attempt} failed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}; "
                  "applying again", flush=True)
        base = time.monotonic() - t0
        mem = sb.memory()
        per_node = sum(mem.values()) / len(mem) / 2**20
        runs = passes(state, work, inventory, args.passes)
        walls = [t.wall for t in runs["as run"]]
        calls = [per_node_calls(t) for t in runs["as run"]]
        noop, full = statistics.median(walls), statistics.median(t.wall for t in runs["full"])
        noop_cpu = statistics.median(t.cpu for t in runs["as run"])
        print(f"  base deploy of {args.pods_per_node}/node: {base:.1f}s; memory per node {per_node:.0f} MiB")
        print(f"  no-op pass: median {noop:.4f}s (min {min(walls):.4f}, max {max(walls):.4f}; CPU of the pass "
              f"thread {noop_cpu * 1000:.2f} ms); "
              f"Docker calls per node {statistics.median(calls):.1f}; planned in full: median {full:.3f}s, "
              f"Docker calls per node {statistics.median(per_node_calls(t) for t in runs['full']):.1f}")
        commit(work, {"more.yaml": pods_yaml(n, args.pods_per_node, "q")}, "10 more per node")
        t0 = time.monotonic()
        r = gk(state, "apply", "--repo", str(work), "--inventory", str(inventory), "--wait", "--timeout", "1500",
               timeout=1600, check=False)
        more = time.monotonic() - t0
        if r.returncode == 0:
            print(f"  deploy {args.pods_per_node} more pods per node ({n * args.pods_per_node} pods): {more:.1f}s "
                  f"({more / (n * args.pods_per_node) * 1000:.0f} ms per pod)")
        else:
            print(f"  deploy {args.pods_per_node} more pods per node FAILED after {more:.1f}s (exit {r.returncode}): "
                  f"{r.stderr.strip().splitlines()[-3:]}")
            more = float("nan")
        commit(work, {"more.yaml": None}, "back to 10 per node")
        gk(state, "apply", "--repo", str(work), "--inventory", str(inventory), "--wait", "--timeout", "1500",
           timeout=1600)
        victim = f"n{n}"

        def cut(victim=victim):
            gk(fleet_state, "sandbox", "--id", str(args.sandbox), "node", victim, "cut")

        try:
            cut_runs = passes(state, work, inventory, 6, cut=cut)["as run"]
        finally:
            gk(fleet_state, "sandbox", "--id", str(args.sandbox), "node", victim, "heal")
        cut_walls = [t.wall for t in cut_runs]
        seen = next((i for i, t in enumerate(cut_runs) if t.report.node_errors), len(cut_walls) - 1)
        later = cut_walls[seen + 1:] or [float("nan")]
        print(f"  pass with {victim} cut: {seen} pass(es) on the last heartbeat (under 1 s old), then the pass that "
              f"saw the cut {cut_walls[seen]:.3f}s (waits for the heartbeat), later median {statistics.median(later):.3f}s")
        rows.append((n, up, per_node, noop, statistics.median(calls), more, cut_walls[seen],
                     statistics.median(later), full, noop_cpu))
    print("\nnodes  up(s)  MiB/node  no-op(s)  no-op CPU(ms)  calls/node  full(s)  +10/node(s)  cut seen(s)  cut later(s)")
    for r in rows:
        print(f"{r[0]:>5}  {r[1]:>5.1f}  {r[2]:>8.0f}  {r[3]:>8.4f}  {r[9] * 1000:>13.2f}  {r[4]:>10.1f}  {r[8]:>7.3f}  "
              f"{r[5]:>11.1f}  {r[6]:>12.3f}  {r[7]:>12.3f}")
    if len(rows) > 1:
        ratio = rows[-1][3] / rows[0][3]
        print(f"no-op pass at {rows[-1][0]} nodes = {ratio:.2f}x the pass at {rows[0][0]} "
              f"(target <= 2x: {'met' if ratio <= 2 else 'MISSED'}); its CPU: {rows[-1][9] / rows[0][9]:.2f}x; "
              f"planned in full: {rows[-1][8] / rows[0][8]:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[3, 9, 18, 32],
                    help="fleet sizes, grown in this order (default 3,9,18,32)")
    ap.add_argument("--pods-per-node", type=int, default=10)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--budget", type=float, default=3600.0,
                    help="start no new fleet size after this many seconds (default 3600)")
    ap.add_argument("--sandbox", type=int, default=int(os.environ.get("GITKUBE_TEST_SANDBOX_ID", "9")),
                    help="sandbox id (default: env GITKUBE_TEST_SANDBOX_ID, else 9)")
    args = ap.parse_args()
    # SIGTERM (a `timeout` around the bench) ends it through the same teardown as a normal end.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="gk-bench-scale-"))
    try:
        run(args, tmp)
    finally:
        t0 = time.monotonic()
        gk(tmp / "fleet", "sandbox", "--id", str(args.sandbox), "down", timeout=900, check=False)
        print(f"sandbox {args.sandbox} down in {time.monotonic() - t0:.1f}s")
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
