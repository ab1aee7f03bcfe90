"""Two `serve`s on a real 3-member etcd cluster (Debian's etcd on loopback) and the sandbox fleet: one leads, one
stands by serving reads; kill -9 of the leader, a paused leader that resumes, a stopped etcd member. And the store's
fence itself, without a fleet: a write by a process whose lease is gone is refused by etcd."""
from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import SID, eventually, gk
from tests.integration.test_control_loops import WorkTree, all_containers, assert_fleet_empty, pod_yaml, rc_yaml
from tests.serveproc import ServeProcess

TTL = 3  # seconds: the leader's lease in these tests


class Controller(ServeProcess):
    """One `gitkube serve` on the shared etcd store: its own state dir, stderr kept with arrival times."""

    def __init__(self, name: str, tmp: Path, store: str, repo: Path, inventory: Path, verbose: bool = False):
        self.name, self.store, self.state = name, store, tmp / f"state-{name}"
        env = {**os.environ, "GITKUBE_SANDBOX_ID": str(SID)}
        env.pop("GITKUBE_STORE", None)
        super().__init__(["--state-dir", str(self.state), "--store", store, *(["-v"] if verbose else []), "serve",
                          "--repo", str(repo), "--inventory", str(inventory), "--lease-ttl", str(TTL),
                          "--resync", "2", "--api-listen", "127.0.0.1:0"], env=env)

    def log(self, since: float = 0) -> str:
        return "\n".join(f"[{self.name}] {l}" for t, l in self.lines if t >= since and "DEBUG" not in l)

    def first(self, pattern: str, since: float = 0) -> float | None:
        return next((t for t, _ in self.matching(pattern, since)), None)

    def api(self) -> str:
        return json.loads((self.state / "api" / "endpoint.json").read_text())["server"]

    def stop(self):
        return super().stop(resume=True)  # a SIGSTOPped leader must be resumed to exit


def pods(store: str, state: Path) -> list[dict]:
    r = gk("get", "pods", "-o", "json", state_dir=state, env={"GITKUBE_STORE": store}, timeout=60)
    return json.loads(r.stdout)["items"]


def running_pods(store: str, state: Path) -> list[dict]:
    return [p for p in pods(store, state) if (p.get("status") or {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
            and all(c.get("ready") for c in (p["status"].get("containerStatuses") or [{}]))]


def app_running(fleet, uids=None) -> dict[str, str]:
    """uid -> container id of every running app container on the fleet (the test's own view, from Docker), of the
    pods `uids` when given (other tests' leftovers are not this test's business)."""
    out = {}
    for c in all_containers(fleet):
        if c["container"] == "app" and c["state"] == "running" and (uids is None or c["uid"] in uids):
            assert c["uid"] not in out, f"pod {c['uid']} runs two app containers"
            out[c["uid"]] = c["id"]
    return out


def restarts(ps: list[dict]) -> dict[str, int]:
    return {p["metadata"]["name"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses") or [])
            for p in ps}


@pytest.fixture
def controllers():
    made: list[Controller] = []
    yield made
    for c in made:
        c.stop()


def _cleanup(fleet, wt: WorkTree, ctrls: list[Controller]):
    wt.commit({}, "remove everything")
    try:
        assert_fleet_empty(fleet, timeout=90)
    finally:
        for c in ctrls:
            c.stop()


# -- the fence, without a fleet -----------------------------------------------------------------------------
def test_a_write_after_the_lease_passed_is_refused_by_etcd_and_changes_nothing(etcd_cluster):
    from gitkube.store.etcd import EtcdStore, Fenced, Leadership

    url = etcd_cluster.url(f"fence-{os.getpid()}")
    a = EtcdStore(url, "", writer=True)
    b = EtcdStore(url, "", writer=True)
    la = Leadership(a.gw, a.prefix, "a", ttl=2)
    assert la.try_acquire()
    a.guard = la
    a.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "by-a"}})
    la._stop.set()  # a pauses: its keepalive stops, its lease runs out in etcd
    lb = Leadership(b.gw, b.prefix, "b", ttl=2)
    eventually(lambda: lb.holder() is None and lb.try_acquire(), timeout=10, interval=0.2, what="b takes over")
    b.guard = lb
    # a's own clock is fooled (as if it did not notice the pause): only etcd's compare stands in the way.
    la.valid_until = time.monotonic() + 60
    before = etcd_cluster_revision(a)
    with pytest.raises(Fenced, match="refused by etcd's fence"):
        a.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "late"}})
    with pytest.raises(Fenced):  # and it stays refused
        a.update_status("Namespace", "", "by-a", {"phase": "Terminating"})
    assert b.get("Namespace", "", "late") is None
    assert b.get("Namespace", "", "by-a")["status"] == {"phase": "Active"}
    assert etcd_cluster_revision(a) == before, "a refused transaction wrote nothing"
    # b writes; a's clock-based fence alone refuses without asking etcd once its lease time is over
    b.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "by-b"}})
    lc = Leadership(a.gw, a.prefix, "c", ttl=2)
    c = EtcdStore(url, "", writer=True, guard=lc)
    lb.resign()
    assert lc.try_acquire()
    lc._stop.set()
    time.sleep(2)
    calls = c.gw.calls
    with pytest.raises(Fenced, match="not the leader"):
        c.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "too-late"}})
    assert c.gw.calls == calls, "refused before any request"


def test_a_state_dir_whose_keys_are_gone_from_etcd_is_lost_and_keeps_its_cluster_id(etcd_cluster, tmp_path):
    """A writer whose state dir names an installation (cluster-id) that etcd no longer holds finds the state lost
    (its first pass rebuilds from the nodes: test_rebuild_state on etcd); a standby names it with the same id."""
    from gitkube.store import open_store

    fresh, known = tmp_path / "fresh", tmp_path / "known"
    known.mkdir()
    (known / "cluster-id").write_text("0123456789abcdef\n")
    with open_store(str(fresh), writer=True, url=etcd_cluster.url(f"lost-a-{os.getpid()}"), elect=False) as st:
        assert st.lost is None  # a new installation has nothing to lose
        assert len(st.cluster_id()) == 16
    url = etcd_cluster.url(f"lost-b-{os.getpid()}")
    with open_store(str(known), writer=True, url=url, elect=False) as st:  # a standby opens it first
        assert st.lost == f"etcd store {url} holds no state under /lost-b-{os.getpid()}/", st.lost
        assert st.cluster_id() == "0123456789abcdef"
    with open_store(str(known), writer=True, url=url) as st:  # the store names the installation now
        assert st.lost is None and st.cluster_id() == "0123456789abcdef"


def etcd_cluster_revision(st) -> int:
    return int(st.gw.range(st.prefix, prefix=True, count_only=True)["header"]["revision"])


# -- failover on the fleet ----------------------------------------------------------------------------------
def test_kill_9_of_the_leader_standby_takes_over_without_restarting_anything(fleet, etcd_cluster, tmp_path,
                                                                              controllers):
    store = etcd_cluster.url(f"ha-{os.getpid()}")
    wt = WorkTree(tmp_path / "work")
    base = {"ha.yaml": rc_yaml("ha", 30)}
    wt.commit(base, "ha x30")
    a = Controller("a", tmp_path, store, wt.path, fleet.inventory)
    controllers.append(a)
    eventually(lambda: a.first("leader now"), timeout=30, interval=0.2, what=f"a leads\n{a.log()}")
    b = Controller("b", tmp_path, store, wt.path, fleet.inventory)
    controllers.append(b)
    eventually(lambda: b.first("standby: the leader is"), timeout=30, interval=0.2, what=f"b stands by\n{b.log()}")
    try:
        eventually(lambda: len(running_pods(store, tmp_path)) == 30, timeout=240, interval=2,
                   what=f"30 pods Running\n{a.log()}")
        # The standby serves the read API from the shared store.
        with urllib.request.urlopen(f"{b.api()}/api/v1/namespaces/default/pods", timeout=10) as r:
            served = [p for p in json.load(r)["items"] if not p["metadata"].get("deletionTimestamp")]
        assert len(served) == 30, f"{len(served)} live pods served by the standby"
        ours = {p["metadata"]["uid"] for p in running_pods(store, tmp_path)}
        before = app_running(fleet, ours)
        assert len(before) == 30
        status = gk("status", "--repo", str(wt.path), "--inventory", str(fleet.inventory), state_dir=tmp_path,
                    env={"GITKUBE_STORE": store}, check=False).stdout
        assert re.search(rf"Leader: +\S+/{a.proc.pid} \(serve", status), status

        # kill -9 of the leader; a commit pushed right after; a container killed by hand during the failover.
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGKILL)
        wt.commit({**base, "after.yaml": pod_yaml("after-kill")}, "a pod after the kill")
        victim_uid, victim_id = sorted(before.items())[0]
        node = next(c["node"] for c in all_containers(fleet) if c["id"] == victim_id)
        assert fleet.docker(node, "kill", victim_id).returncode == 0
        took = eventually(lambda: b.first("leader now", t0), timeout=TTL + 10, interval=0.1,
                          what=f"b leads\n{b.log()}") - t0
        first_pass = eventually(lambda: b.passes_after(t0), timeout=60, interval=0.2, what=f"b's first pass\n{b.log()}")
        pass_s = float(re.search(r"\((\d+\.\d+)s\)", first_pass[0][1]).group(1))
        print(f"\nfailover: standby leads {took:.2f}s after kill -9 (lease TTL {TTL}s); its first pass took "
              f"{pass_s:.2f}s, done {first_pass[0][0] - t0:.2f}s after the kill")
        assert took <= TTL + 1.5, b.log()
        assert first_pass[0][0] - t0 <= TTL + 1.5 + pass_s + 0.5, b.log()

        def settled():
            ps = pods(store, tmp_path)
            after = next((p for p in ps if p["metadata"]["name"] == "after-kill"), None)
            victim = next((p for p in ps if p["metadata"]["uid"] == victim_uid), None)
            ok = (after and after["status"].get("phase") == "Running" and victim
                  and restarts([victim]).get(victim["metadata"]["name"]) == 1
                  and victim_uid in app_running(fleet))
            return ps if ok else None

        ps = eventually(settled, timeout=60, interval=1, what=f"after-kill Running, victim restarted\n{b.log()}")
        now = app_running(fleet)
        assert now[victim_uid] != victim_id, "the killed container was restarted as a new container"
        unchanged = {u: i for u, i in before.items() if u != victim_uid}
        assert {u: now[u] for u in unchanged} == unchanged, "the failover restarted or replaced containers"
        rs = restarts(ps)
        assert sum(rs.values()) == 1, f"only the container killed by hand restarted: {rs}"
        assert "write refused" not in b.log()
        status = gk("status", "--repo", str(wt.path), "--inventory", str(fleet.inventory), state_dir=tmp_path,
                    env={"GITKUBE_STORE": store}, check=False).stdout
        assert re.search(rf"Leader: +\S+/{b.proc.pid} \(serve", status), status

        # One etcd member stops: nothing visible changes (b still leads, a commit still applies, no restarts).
        t1 = time.monotonic()
        etcd_cluster.stop_member(0)
        try:
            wt.commit({**base, "after.yaml": pod_yaml("after-kill"), "more.yaml": pod_yaml("member-down")},
                      "a pod while one etcd member is down")
            eventually(lambda: any(p["metadata"]["name"] == "member-down" and p["status"].get("phase") == "Running"
                                   for p in pods(store, tmp_path)), timeout=60, interval=1,
                       what=f"member-down Running\n{b.log(t1)}")
            time.sleep(2 * TTL)
            assert b.first("standby now", t1) is None, b.log(t1)
            assert {u: app_running(fleet)[u] for u in unchanged} == unchanged
            assert sum(restarts(pods(store, tmp_path)).values()) == 1
        finally:
            etcd_cluster.restart_member(0)
    finally:
        _cleanup(fleet, wt, [b, a])


def test_a_paused_leader_resumes_fenced_and_repeats_nothing(fleet, etcd_cluster, tmp_path, controllers):
    store = etcd_cluster.url(f"pause-{os.getpid()}")
    wt = WorkTree(tmp_path / "work")
    wt.commit({"f.yaml": rc_yaml("fence", 6)}, "fence x6")
    foreign = {c["id"] for c in all_containers(fleet)}  # left by other tests, if any
    a = Controller("a", tmp_path, store, wt.path, fleet.inventory, verbose=True)
    controllers.append(a)
    eventually(lambda: a.first("leader now"), timeout=30, interval=0.2, what=f"a leads\n{a.log()}")
    b = Controller("b", tmp_path, store, wt.path, fleet.inventory)
    controllers.append(b)
    eventually(lambda: b.first("standby: the leader is"), timeout=30, interval=0.2, what="b stands by")
    try:
        eventually(lambda: len(running_pods(store, tmp_path)) == 6, timeout=120, interval=1, what="6 pods Running")
        # Scale to 12 and pause the leader in the middle of the pass that carries it out.
        t0 = time.monotonic()
        wt.commit({"f.yaml": rc_yaml("fence", 12)}, "fence x12")
        eventually(lambda: a.first(r"pass \d+ starting", t0), timeout=15, interval=0.01, what=f"a's pass\n{a.log(t0)}")
        a.proc.send_signal(signal.SIGSTOP)
        t_stop = time.monotonic()
        eventually(lambda: b.first("leader now", t_stop), timeout=TTL + 10, interval=0.1, what=f"b leads\n{b.log()}")
        ps = eventually(lambda: (lambda r: r if len(r) == 12 else None)(running_pods(store, tmp_path)),
                        timeout=120, interval=1, what=f"12 pods Running under b\n{b.log(t0)}")
        uids = sorted(p["metadata"]["uid"] for p in ps)
        snapshot = app_running(fleet, set(uids))
        assert sorted(snapshot) == uids
        time.sleep(max(0.0, t_stop + TTL + 3 - time.monotonic()))
        t_cont = time.monotonic()
        a.proc.send_signal(signal.SIGCONT)
        eventually(lambda: a.first("standby now", t_cont), timeout=15, interval=0.1, what=f"a stands by\n{a.log(t0)}")
        time.sleep(2 * 2 + 1)  # two of b's resync passes
        late = a.log(t_cont)
        print(f"\nthe paused leader after SIGCONT:\n{late}")
        assert re.search(r"refused|not the leader", late), late
        ps2 = [p for p in pods(store, tmp_path) if not p["metadata"].get("deletionTimestamp")]
        assert sorted(p["metadata"]["uid"] for p in ps2) == uids, "a pod was created or deleted twice"
        assert app_running(fleet, set(uids)) == snapshot, "a container was started, stopped or replaced twice"
        assert not [c for c in all_containers(fleet) if c["uid"] not in uids and c["id"] not in foreign], \
            "containers of pods the store does not know"
        assert sum(restarts(ps2).values()) == 0
        assert b.first("standby now", t0) is None, b.log(t0)
    finally:
        _cleanup(fleet, wt, [b, a])
