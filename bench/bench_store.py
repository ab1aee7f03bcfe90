"""The store's cost, SQLite against etcd, in one run on a real 3-node sandbox (default id 9) and a 3-member etcd
cluster on loopback (Debian's etcd):

(a) a no-op reconcile pass at --pods pods (an RC, Running) on each store, the two alternated: the pass's wall time,
    the time spent in store calls and their number, and for etcd the HTTP requests it made. The pods are deployed
    once (SQLite, `apply --wait`), then the state DB is copied into etcd (objects with their uids, status and the
    controller's kv, and the events), so both stores drive the very same containers.
(b) failover: two `serve`s on the etcd store (lease TTL --ttl); kill -9 of the leader; the time until the standby
    holds the lease, and until its first pass is done.

(a') and (b') with --no-fleet, when no sandbox can be had: (a') the store I/O of a no-op pass (the controller's
    observe.read_store: every object, the revision-sync index, the controller's records; then the writes a no-op pass
    makes: heartbeats, three Node statuses) at --pods stored pods, on each store; (b') the failover with an inventory
    whose nodes refuse connections (the lease and the first pass, without node work).

Run (root): python bench/bench_store.py [--pods 300] [--passes 5] [--ttl 3] [--sandbox 9] [--no-fleet]
The sandbox and the etcd cluster are brought up at the start and torn down at the end, whatever happens.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_control import commit, git, gk, rc_yaml  # noqa: E402
from tests.serveproc import ServeProcess  # noqa: E402


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
        events = src.events()  # a store after a deploy holds several events per pod: etcd keeps them beside the objects
        for e in events:
            src_ = e.get("source") or {}
            dst.record_event(e["involvedObject"], e["reason"], e["message"], e["type"],
                             component=src_.get("component", "gitkube"), host=src_.get("host", ""),
                             now=e["lastTimestamp"])
        print(f"  ({len(events)} events copied too)")
        return len(objs)
    finally:
        dst.close()
        src.close()


class PassTimer:
    """One controller on one store, its no-op passes measured: wall time, store calls and their time, HTTP requests."""

    def __init__(self, label: str, state: Path, repo: Path, inventory: Path, url: str | None):
        from gitkube.controller import Controller, Source

        self.label = label
        self.ctrl = Controller(str(state), Source(str(repo), None, "manifests", str(inventory)), store_url=url)
        self.timed = TimedStore(self.ctrl.store)
        self.ctrl.store = self.timed
        self.gw = getattr(self.timed._store, "gw", None)
        self.walls, self.store_s, self.calls, self.http = [], [], [], []
        rep = self.ctrl.reconcile()  # warm: SSH connections, inspect caches and the store's mirror
        print(f"  [{label}] warm-up pass: {rep.seconds:.3f}s ({rep.summary()})")

    def one(self) -> None:
        c0, s0, h0 = self.timed.calls, self.timed.seconds, self.gw.calls if self.gw else 0
        t0 = time.perf_counter()
        rep = self.ctrl.reconcile()
        self.walls.append(time.perf_counter() - t0)
        self.store_s.append(self.timed.seconds - s0)
        self.calls.append(self.timed.calls - c0)
        self.http.append((self.gw.calls - h0) if self.gw else 0)
        if sum(len(a) for a in rep.node_actions.values()) or rep.node_errors:
            print(f"  [{self.label}] WARNING: pass was not a no-op: {rep.summary()}")

    def report(self) -> dict:
        med = statistics.median
        pods = len(self.ctrl.store.list("Pod", namespace="*"))
        out = {"pods": pods, "wall": med(self.walls), "store": med(self.store_s), "calls": med(self.calls),
               "http": med(self.http)}
        print(f"  [{self.label}] {pods} pods: pass {out['wall']:.3f}s (median of {len(self.walls)}), store calls "
              f"{out['calls']:.0f} taking {out['store']:.3f}s ({100 * out['store'] / out['wall']:.0f}% of the pass)"
              + (f", {out['http']:.0f} HTTP requests to etcd" if self.gw else ""))
        return out

    def close(self) -> None:
        self.ctrl.close()


def noop_passes(state: Path, repo: Path, inventory: Path, passes: int, url: str) -> tuple[dict, dict]:
    """The same no-op pass on SQLite and on etcd, alternated (a machine whose load drifts favours neither)."""
    timers = []
    try:
        timers.append(PassTimer("sqlite", state, repo, inventory, None))
        timers.append(PassTimer("etcd", state, repo, inventory, url))
        for _ in range(passes):
            for t in timers:
                t.one()
        return timers[0].report(), timers[1].report()
    finally:
        for t in timers:
            t.close()


class Serve(ServeProcess):
    def __init__(self, name: str, base: Path, url: str, repo: Path, inventory: Path, ttl: int):
        super().__init__(["--state-dir", str(base / f"serve-{name}"), "--store", url, "serve", "--repo", str(repo),
                          "--inventory", str(inventory), "--lease-ttl", str(ttl), "--resync", "5", "--no-api"],
                         cwd=ROOT)

    def first(self, pattern: str, since: float = 0.0, timeout: float = 120) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = self.matching(pattern, since)
            if hits:
                return hits[0]
            time.sleep(0.05)
        raise SystemExit(f"no {pattern!r} within {timeout}s:\n" + "\n".join(l for _, l in self.lines[-30:]))


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


def synthetic(state: Path, pods: int) -> None:
    """A SQLite state DB holding an RC of `pods` Running pods bound to 3 nodes, as a pass would have written it."""
    from gitkube.store import Store

    with Store.open(str(state), writer=True) as st:
        rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "bench", "namespace": "default"},
              "spec": {"replicas": pods, "selector": {"app": "bench"}, "template": {"metadata": {"labels": {"app": "bench"}},
                       "spec": {"containers": [{"name": "app", "image": "gitkube/busybox:latest"}]}}}}
        st.sync_revision("0" * 40, [rc])
        for n in ("n1", "n2", "n3"):
            st.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        for i in range(pods):
            st.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-{i:05d}", "namespace": "default",
                    "labels": {"app": "bench"}}, "spec": {"nodeName": f"n{i % 3 + 1}", "containers": [
                    {"name": "app", "image": "gitkube/busybox:latest", "command": ["sleep", "100000"]}]},
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                               "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0}]}})
        st.kv_set("heartbeats", {n: {"last_success": time.time()} for n in ("n1", "n2", "n3")})


def store_io(label: str, state: Path, url: str | None, passes: int) -> float:
    from gitkube.controller.observe import read_store
    from gitkube.store import open_store

    st = open_store(str(state), writer=True, url=url)
    gw = getattr(st, "gw", None)
    try:
        times, reqs = [], []
        for i in range(passes + 1):
            h0 = gw.calls if gw else 0
            t0 = time.perf_counter()
            stored, _index, kv = read_store(st)
            hb = dict(kv.get("heartbeats") or {})
            for n in hb:
                hb[n] = {**hb[n], "last_attempt": time.time()}
            st.kv_set("heartbeats", hb)
            for node in stored.get("Node", ()):
                st.update_status("Node", "", node["metadata"]["name"], {**node["status"], "tick": i})
            if i:  # the first is the warm-up (the etcd mirror's initial list)
                times.append(time.perf_counter() - t0)
                reqs.append((gw.calls - h0) if gw else 0)
        pods = len(stored.get("Pod", ()))
    finally:
        st.close()
    med = statistics.median(times)
    print(f"  [{label}] {pods} pods: a no-op pass's store I/O {med * 1000:.1f} ms (median of {passes})"
          + (f", {statistics.median(reqs):.0f} requests to etcd" if gw else ""))
    return med


def no_fleet(args, base: Path, etcd) -> None:
    state = base / "state"
    synthetic(state, args.pods)
    url = etcd.url("bench")
    copy_store(state, url)
    print(f"(a') the store I/O of a no-op pass at {args.pods} pods, SQLite against etcd (3 members on loopback):")
    sq = store_io("sqlite", state, None, args.passes)
    et = store_io("etcd", state, url, args.passes)
    print(f"  etcd/SQLite: {et / sq:.1f}x")
    inv = base / "inventory.yaml"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "id")], check=True, timeout=30)
    key = " ".join((base / "id.pub").read_text().split()[:2])  # any pinned key: no connection gets that far
    (base / "known_hosts").write_text(f"[127.0.0.1]:1 {key}\n")
    inv.write_text(f"apiVersion: gitkube/v1\nkind: Inventory\ndefaults: {{user: root, identityFile: {base / 'id'}, "
                   f"knownHostsFile: {base / 'known_hosts'}}}\nnodes:\n" + "".join(
                       f"- name: n{i}\n  address: {{host: 127.0.0.1, port: 1}}\n  podCIDR: 198.18.{100 + i}.0/24\n"
                       for i in (1, 2, 3)))
    work = base / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    commit(work, {"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n"}, "a namespace")
    print("(b') failover with nodes that refuse connections (lease and first pass only):")
    failover(base, etcd.url("failover"), work, inv, args.ttl)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=300)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--ttl", type=int, default=3)
    ap.add_argument("--sandbox", type=int, default=9)
    ap.add_argument("--no-fleet", action="store_true", help="no sandbox: (a') and (b') only")
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
        if args.no_fleet:
            no_fleet(args, base, etcd)
            return 0
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
        sq, et = noop_passes(state, work, inventory, args.passes, url)
        print(f"  etcd/SQLite: pass {et['wall'] / sq['wall']:.2f}x, store time {et['store'] / max(sq['store'], 1e-9):.1f}x "
              f"({et['store'] * 1000:.0f} ms vs {sq['store'] * 1000:.0f} ms per pass)")
        failover(base, url, work, inventory, args.ttl)
        (work / "manifests" / "bench.yaml").unlink()
        git(work, "add", "-A", "manifests")
        git(work, "commit", "-q", "-m", "remove everything")
        gk(state, "apply", "--repo", str(work), "--inventory", str(inventory), "--wait", "--timeout", "600",
           timeout=900, check=False)
    finally:
        etcd.stop()
        if not args.no_fleet:
            gk(fleet_state, "sandbox", "--id", str(args.sandbox), "down", timeout=600, check=False)
        shutil.rmtree(base, ignore_errors=True)
        print(f"total {time.monotonic() - t_start:.0f}s; "
              f"{'' if args.no_fleet else f'sandbox {args.sandbox} and '}the etcd cluster torn down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
