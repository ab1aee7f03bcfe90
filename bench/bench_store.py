"""The store's cost, SQLite against etcd, in one run on a real 3-node sandbox (default id 9) and a 3-member etcd
cluster on loopback (Debian's etcd):

(a) a no-op reconcile pass at --pods pods (an RC, Running) on each store: the pass's wall time, the time spent in
    store calls and their number, and for etcd the HTTP requests it made. The pods are deployed once (SQLite,
    `apply --wait`), then the state DB is copied into etcd (objects with their uids, status and the controller's
    kv), so both stores drive the very same containers.
(b) failover: two `serve`s on the etcd store (lease TTL --ttl); kill -9 of the leader; the time until the standby
    holds the lease, and until its first pass is done.

Run (root): python bench/bench_store.py [--pods 300] [--passes 5] [--ttl 3] [--sandbox 9]
The sandbox and the etcd cluster are brought up at the start and torn down at the end, whatever happens.
"""
from __future__ import annotations

import argparse
import json
import os
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_control import commit, git, gk, rc_yaml  # noqa: E402


class TimedStore:
    """A store whose every public call is counted and timed."""

    def __init__(self, store):
        self._store = store
        self.calls = 0
        self.seconds = 0.0

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return attr(*a, **kw)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - t0

        return timed

    def __setattr__(self, name, value):
        if name in ("_store", "calls", "seconds"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._store, name, value)


def copy_store(state: Path, url: str) -> int:
    """Copies the SQLite state DB's objects (uids, status kept) and kv into the etcd store; returns objects copied."""
    from gitkube.store import Store, open_store

    src = Store.open(str(state))
    dst = open_store(str(state), writer=True, url=url)
    try:
        objs = src.list()
        for o in objs:
            row = src._conn.execute("SELECT origin FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                                    (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])).fetchone()
            dst.put(o, origin=row[0])
        for key, value in src._conn.execute("SELECT key, value FROM kv").fetchall():
            if key not in ("resourceVersion", "changesFrom"):
                dst.kv_set(key, json.loads(value))
        return len(objs)
    finally:
        dst.close()
        src.close()


def noop_passes(label: str, state: Path, repo: Path, inventory: Path, passes: int, url: str | None) -> dict:
    from gitkube.controller import Controller, Source

    ctrl = Controller(str(state), Source(str(repo), None, "manifests", str(inventory)), store_url=url)
    timed = TimedStore(ctrl.store)
    ctrl.store = timed
    gw = getattr(timed._store, "gw", None)
    try:
        rep = ctrl.reconcile()  # warm: SSH connections, inspect caches and the store's mirror
        print(f"  [{label}] warm-up pass: {rep.seconds:.3f}s ({rep.summary()})")
        walls, store_s, store_calls, http = [], [], [], []
        for _ in range(passes):
            c0, s0, h0 = timed.calls, timed.seconds, gw.calls if gw else 0
            t0 = time.perf_counter()
            rep = ctrl.reconcile()
            walls.append(time.perf_counter() - t0)
            store_s.append(timed.seconds - s0)
            store_calls.append(timed.calls - c0)
            http.append((gw.calls - h0) if gw else 0)
            if sum(len(a) for a in rep.node_actions.values()) or rep.node_errors:
                print(f"  [{label}] WARNING: pass was not a no-op: {rep.summary()}")
        pods = len(ctrl.store.list("Pod", namespace="*"))
    finally:
        ctrl.close()
    med = statistics.median
    out = {"pods": pods, "wall": med(walls), "store": med(store_s), "calls": med(store_calls), "http": med(http)}
    print(f"  [{label}] {pods} pods: pass {out['wall']:.3f}s (median of {passes}), store calls {out['calls']:.0f} "
          f"taking {out['store']:.3f}s ({100 * out['store'] / out['wall']:.0f}% of the pass)"
          + (f", {out['http']:.0f} HTTP requests to etcd" if gw else ""))
    return out


class Serve:
    def __init__(self, name: str, base: Path, url: str, repo: Path, inventory: Path, ttl: int):
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gitkube", "--state-dir", str(base / f"serve-{name}"), "--store", url, "serve",
             "--repo", str(repo), "--inventory", str(inventory), "--lease-ttl", str(ttl), "--resync", "5",
             "--no-api"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip()))

    def first(self, pattern: str, since: float = 0.0, timeout: float = 120) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = next(((t, l) for t, l in list(self.lines) if t >= since and re.search(pattern, l)), None)
            if hit:
                return hit
            time.sleep(0.05)
        raise SystemExit(f"no {pattern!r} within {timeout}s:\n" + "\n".join(l for _, l in self.lines[-30:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def failover(base: Path, url: str, repo: Path, inventory: Path, ttl: int) -> None:
    a = Serve("a", base, url, repo, inventory, ttl)
    b = None
    try:
        a.first("leader now", timeout=60)
        a.first(r"pass \d+ at", timeout=300)
        b = Serve("b", base, url, repo, inventory, ttl)
        b.first("standby: the leader is", timeout=60)
        time.sleep(ttl)
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGKILL)
        t_lead, _ = b.first("leader now", since=t0, timeout=ttl + 30)
        t_pass, line = b.first(r"pass \d+ at", since=t0, timeout=300)
        print(f"(b) failover (lease TTL {ttl}s): kill -9 of the leader -> standby holds the lease in "
              f"{t_lead - t0:.2f}s; its first pass done {t_pass - t0:.2f}s after the kill ({line.split(': ', 1)[-1]})")
    finally:
        for s in (a, b):
            if s is not None:
                s.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=300)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--ttl", type=int, default=3)
    ap.add_argument("--sandbox", type=int, default=9)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (the sandbox is network namespaces with their own dockerd)")
    from gitkube.sandbox.etcd import EtcdCluster

    os.environ["GITKUBE_SANDBOX_ID"] = str(args.sandbox)
    os.environ.pop("GITKUBE_STORE", None)
    base = Path(tempfile.mkdtemp(prefix="bench-store-"))
    fleet_state = base / "fleet"
    etcd = EtcdCluster(base / "etcd", size=3)
    t_start = time.monotonic()
    try:
        etcd.start()
        out = gk(fleet_state, "sandbox", "--id", str(args.sandbox), "up", timeout=600)
        inventory = Path(out.stdout.strip().splitlines()[-1])
        work = base / "work"
        work.mkdir()
        git(work, "init", "-q", "-b", "main")
        commit(work, {"bench.yaml": rc_yaml("bench", args.pods)}, f"bench x{args.pods}")
        state = base / "state"
        t0 = time.monotonic()
        gk(state, "apply", "--repo", str(work), "--inventory", str(inventory), "--wait", "--timeout", "900",
           timeout=1200)
        print(f"deployed {args.pods} pods with `apply --wait` (SQLite) in {time.monotonic() - t0:.1f}s")
        url = etcd.url("bench")
        t0 = time.monotonic()
        n = copy_store(state, url)
        print(f"copied {n} objects into etcd in {time.monotonic() - t0:.1f}s")
        print(f"(a) no-op reconcile pass at {args.pods} pods, SQLite against etcd (3 members on loopback):")
        sq = noop_passes("sqlite", state, work, inventory, args.passes, None)
        et = noop_passes("etcd", state, work, inventory, args.passes, url)
        print(f"  etcd/SQLite: pass {et['wall'] / sq['wall']:.2f}x, store time {et['store'] / max(sq['store'], 1e-9):.1f}x "
              f"({et['store'] * 1000:.0f} ms vs {sq['store'] * 1000:.0f} ms per pass)")
        failover(base, url, work, inventory, args.ttl)
        commit(work, {}, "remove everything")
        gk(state, "apply", "--repo", str(work), "--inventory", str(inventory), "--wait", "--timeout", "600",
           timeout=900, check=False)
    finally:
        etcd.stop()
        gk(fleet_state, "sandbox", "--id", str(args.sandbox), "down", timeout=600, check=False)
        shutil.rmtree(base, ignore_errors=True)
        print(f"total {time.monotonic() - t_start:.0f}s; sandbox {args.sandbox} and the etcd cluster torn down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
