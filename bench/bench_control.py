"""Control loop figures on a real 3-node sandbox (sandbox 7): a no-op reconcile pass at 500 pods, and push→pass
latency with `serve` watching a bare repository. Scheduler throughput is bench/bench_scheduler.py.

Run (root): python bench/bench_control.py [--pods 500] [--passes 5] [--pushes 5] [--sandbox 7]

(a) An RC of --pods replicas is applied and waited for; then --passes in-process `Controller.reconcile()` passes
    with nothing to do are timed, twice: as they run (quiet passes: nothing moved since a pass that changed
    nothing, so nothing is planned; gitkube.controller.quiet), and planned in full (the baseline, what a pass costs
    when an input moved). Per node: the container lists of the pod sync (`PassReport.api_calls`; none while the
    node's event stream reports no change) and the Docker calls of the whole pass (`NodeDocker.calls`: the
    heartbeat's ping included, and info+version every 10 s).
(b) `gitkube serve --resync 60` on a bare repo holding those pods; --pushes times a `git push` adding one pod,
    measured from the start of the push to (1) serve's log line for the pass at the pushed commit (written when
    that pass ends, after it started the pod), (2) the new pod
    in the state DB, (3) that pod Running. The long resync means only the watch on the refs can explain a quick pass.
(d) --passes passes with every node answering, then node n2 cut off: the first pass after the cut, and the
    later ones (a node known down is waited for 0.5 s, not the heartbeat timeout).
The sandbox is brought up at the start and torn down at the end, whatever happens.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._cli import git, gk, settle, timed_passes  # noqa: E402


def pod_spec() -> dict:
    return {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "gitkube/busybox:latest", "imagePullPolicy": "Never",
                            "command": ["sleep", "100000"], "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]}


def rc_yaml(name: str, replicas: int) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
                           "spec": {"replicas": replicas, "selector": {"app": name},
                                    "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec()}}})


def pod_yaml(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec()})


def commit(work: Path, files: dict[str, str], message: str) -> str:
    d = work / "manifests"
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    git(work, "add", "-A", "manifests")
    git(work, "commit", "-q", "-m", message)
    return git(work, "rev-parse", "HEAD")


def with_room(inventory: Path, base: Path, pods: int) -> Path:
    """The sandbox's inventory with room for `pods` on its nodes (a node takes 110 pods unless told otherwise)."""
    inv = yaml.safe_load(inventory.read_text())
    per_node = -(-pods // len(inv["nodes"])) + 10
    if per_node <= 110:
        return inventory
    for n in inv["nodes"]:
        n["capacity"] = {"pods": per_node}
    out = base / "inventory.yaml"
    out.write_text(yaml.safe_dump(inv))
    return out


def fmt(xs: list[float]) -> str:
    return (f"median {statistics.median(xs):.3f}s  min {min(xs):.3f}s  max {max(xs):.3f}s" if xs else "n/a")


def noop_passes(state: Path, repo: Path, inventory: Path, passes: int) -> None:
    from gitkube.controller import Controller, Source

    ctrl = Controller(str(state), Source(str(repo), None, "manifests", str(inventory)))
    try:
        rep = ctrl.reconcile()  # warm: SSH connections and the inspect caches, as in a long-running serve
        print(f"  warm-up pass: {rep.seconds:.3f}s ({rep.summary()})")
        settle(ctrl)
        runs = {}
        for mode in ("quiet", "full"):
            timed = timed_passes(ctrl, passes, full=mode == "full")
            for t in timed:
                rep = t.report
                if any(rep.node_actions.values()) or rep.node_errors:
                    print(f"  WARNING: pass was not a no-op: {rep.summary()}")
            runs[mode] = ([t.wall for t in timed], [dict(t.report.api_calls) for t in timed],
                          [t.calls for t in timed], [t.report.quiet for t in timed])
        pods = len(ctrl.store.list("Pod", namespace="*"))
        prof = cProfile.Profile()  # one more no-op pass, profiled: where its time goes
        prof.enable()
        ctrl.reconcile()
        prof.disable()
    finally:
        ctrl.close()
    walls, sync_calls, all_calls, kinds = runs["quiet"]
    full = runs["full"][0]
    print(f"(a) no-op reconcile pass, {pods} pods on {len(sync_calls[0])} nodes, {passes} passes each:")
    print(f"  quiet pass (nothing moved; {sum(kinds)}/{len(kinds)} were quiet): {fmt(walls)} "
          f"(target at 500 pods: median <= 0.050s)")
    print(f"  full pass (planned anyway, the baseline): {fmt(full)}; quiet/full = "
          f"{statistics.median(walls) / statistics.median(full):.3f}")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(5)
    top = [ln for ln in out.getvalue().splitlines() if re.match(r"\s*\d", ln) and "function calls" not in ln][:5]
    print("  profile of one more no-op pass, top five by own time (ncalls tottime percall cumtime percall where):")
    for ln in top:
        print(f"    {ln.strip()}")
    for n in sorted(sync_calls[0]):
        s = sorted({c[n] for c in sync_calls})
        a = sorted({c[n] for c in all_calls})
        f = sorted({c[n] for c in runs["full"][2]})
        print(f"  {n}: Docker API calls of a quiet pass: container lists {s}, whole pass incl. heartbeat {a}; "
              f"of a full pass {f} (a list only when the node's event stream reported a change)")


def cut_node_passes(state: Path, repo: Path, inventory: Path, fleet_state: Path, sandbox: int, passes: int) -> None:
    """(d) Pass wall time while a node is cut off: the first pass waits the heartbeat timeout for it; later passes
    must not (its reconnect runs in the background), or every push would wait for a dead node."""
    from gitkube.controller import Controller, Source

    ctrl = Controller(str(state), Source(str(repo), None, "manifests", str(inventory)))
    try:
        ctrl.reconcile()
        healthy = []
        for _ in range(passes):
            t0 = time.perf_counter()
            ctrl.reconcile()
            healthy.append(time.perf_counter() - t0)
        gk(fleet_state, "sandbox", "--id", str(sandbox), "node", "n2", "cut")
        t_cut = time.monotonic()
        try:
            cut = []  # (seconds since the cut, wall time of the pass, whether it saw n2 down)
            for _ in range(passes + 3):
                t0 = time.perf_counter()
                rep = ctrl.reconcile()
                cut.append((time.monotonic() - t_cut, time.perf_counter() - t0, "n2" in rep.node_errors))
                time.sleep(0.2)
        finally:
            gk(fleet_state, "sandbox", "--id", str(sandbox), "node", "n2", "heal")
        errs = ", ".join(f"{n}: {e[:60]}" for n, e in sorted(rep.node_errors.items())) or "none"
    finally:
        ctrl.close()
    seen = next((i for i, c in enumerate(cut) if c[2]), None)
    print(f"(d) passes with node n2 cut off (heartbeat timeout {ctrl.probe_timeout:.0f}s, shared for 1 s):")
    print(f"  healthy fleet: {fmt(healthy)}")
    if seen is None:
        print(f"  the cut was never seen in {len(cut)} passes")
        return
    later = [c[1] for c in cut[seen + 1:]]
    print(f"  passes before the cut was seen: {seen} (on the last heartbeat, under 1 s old)")
    print(f"  the pass that saw it, {cut[seen][0]:.2f}s after the cut: {cut[seen][1]:.3f}s (waits for the heartbeat)")
    print(f"  later passes: {fmt(later)} (a node known down is waited for 0.5 s) -> "
          f"{statistics.median(later) / statistics.median(healthy):.2f}x a healthy pass; node errors: {errs}")


def push_latency(state: Path, base: Path, work: Path, bare: Path, inventory: Path, pushes: int, live_pods: int) -> None:
    from gitkube.store import Store

    proc = subprocess.Popen([sys.executable, "-m", "gitkube", "--state-dir", str(state), "serve", "--repo", str(bare),
                             "--inventory", str(inventory), "--resync", "60"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []

    def read():
        for line in proc.stderr:
            lines.append((time.monotonic(), line.rstrip()))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    to_log, to_store, to_running = [], [], []
    try:
        deadline = time.monotonic() + 120
        while not any(re.search(r"pass \d+ at", ln) for _, ln in lines):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("serve made no first pass:\n" + "\n".join(ln for _, ln in lines))
            time.sleep(0.1)
        store = Store.open(str(state), writer=False)
        try:
            for i in range(pushes):
                time.sleep(1.0)  # let the previous pass end: each push measured from an idle loop
                name = f"lat-{i}"
                sha = commit(work, {f"{name}.yaml": pod_yaml(name)}, f"add {name}")
                t0 = time.monotonic()
                git(work, "push", "-q", "origin", "main")
                got_log = got_store = got_run = None
                end = t0 + 30
                while time.monotonic() < end and (got_run is None or got_log is None):
                    now = time.monotonic()
                    if got_log is None and any(ts >= t0 and f"at {sha[:12]}:" in ln and "1 added" in ln for ts, ln in lines):
                        got_log = next(ts for ts, ln in lines if ts >= t0 and f"at {sha[:12]}:" in ln)
                    p = store.get("Pod", "default", name)
                    if p is not None and got_store is None:
                        got_store = now
                    if p is not None and (p.get("status") or {}).get("phase") == "Running":
                        got_run = now
                    time.sleep(0.02)
                for xs, v in ((to_log, got_log), (to_store, got_store), (to_running, got_run)):
                    if v is not None:
                        xs.append(v - t0)
                print(f"  push {i + 1}: pass log line {got_log - t0 if got_log else float('nan'):.3f}s, "
                      f"pod in store {got_store - t0 if got_store else float('nan'):.3f}s, "
                      f"Running {got_run - t0 if got_run else float('nan'):.3f}s")
        finally:
            store.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        t.join(timeout=5)
    print(f"(b) push -> pass with serve watching a bare repo ({live_pods} pods already running), {pushes} pushes:")
    print(f"  push -> end of the pass (its log line): {fmt(to_log)}")
    print(f"  push -> new pod in the state DB: {fmt(to_store)}")
    print(f"  push -> new pod Running: {fmt(to_running)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=500)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--pushes", type=int, default=5)
    ap.add_argument("--sandbox", type=int, default=7)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (the sandbox is network namespaces with their own dockerd)")
    os.environ["GITKUBE_SANDBOX_ID"] = str(args.sandbox)
    base = Path(tempfile.mkdtemp(prefix="bench-control-"))
    fleet_state = base / "fleet"
    t_start = time.monotonic()
    try:
        out = gk(fleet_state, "sandbox", "--id", str(args.sandbox), "up", timeout=600)
        inventory = with_room(Path(out.stdout.strip().splitlines()[-1]), base, args.pods)
        bare = base / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, timeout=30)
        work = base / "work"
        git(base, "clone", "-q", str(bare), str(work))
        git(work, "checkout", "-q", "-B", "main")
        commit(work, {"bench.yaml": rc_yaml("bench", args.pods)}, f"bench x{args.pods}")
        git(work, "push", "-q", "origin", "main")
        state = base / "state"
        t0 = time.monotonic()
        gk(state, "apply", "--repo", str(bare), "--inventory", str(inventory), "--wait", "--timeout", "600", timeout=900)
        print(f"deployed {args.pods} pods with `apply --wait` in {time.monotonic() - t0:.1f}s")
        noop_passes(state, bare, inventory, args.passes)
        push_latency(state, base, work, bare, inventory, args.pushes, args.pods)
        cut_node_passes(state, bare, inventory, fleet_state, args.sandbox, args.passes)
        print("(c) scheduler throughput: see bench/bench_scheduler.py")
    finally:
        gk(fleet_state, "sandbox", "--id", str(args.sandbox), "down", timeout=600, check=False)
        shutil.rmtree(base, ignore_errors=True)
        print(f"total {time.monotonic() - t_start:.0f}s; sandbox {args.sandbox} torn down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
