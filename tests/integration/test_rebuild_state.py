"""Nothing lost, nothing restarted (issue 10), on the real 3-node sandbox through the CLI only.

30 pods (an RC, a Deployment, two bare pods) and the Guestbook run; the state DB is then deleted, truncated and
zeroed in turn, and each time `apply --wait` rebuilds the state from the nodes: the same containers (0 restarted),
the same pod names and uids, the same ClusterIPs and NodePorts, and the Guestbook still serves the entry written
before. Then evictions: a one-shot `apply` with a node cut for longer than the grace period evicts nothing,
`apply --wait` stops waiting for the cut node's pods and names it, and `serve` evicts only after the grace period
counted from its own first observation. Last, a second state dir is refused by the fleet lock, and once it broke
the expired lock it deletes none of the first installation's containers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from tests.integration.conftest import SID, eventually, gk
from tests.integration.test_guestbook import REPO_ROOT, Cluster, guestbook_url, http_get, try_get

BUSYBOX = "gitkube/busybox:latest"
SLEEPER = {"terminationGracePeriodSeconds": 1,
           "containers": [{"name": "app", "image": BUSYBOX, "imagePullPolicy": "Never", "command": ["sleep", "100000"]}]}


def workload() -> dict[str, str]:
    """24 RC pods, 4 Deployment pods, 2 bare pods pinned to n1, and the Guestbook."""
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "fill"},
          "spec": {"replicas": 24, "selector": {"app": "fill"},
                   "template": {"metadata": {"labels": {"app": "fill"}}, "spec": SLEEPER}}}
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dep"},
           "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "dep"}},
                    "template": {"metadata": {"labels": {"app": "dep"}}, "spec": SLEEPER}}}
    bare = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bare-{i}", "labels": {"app": "bare"}},
             "spec": {**SLEEPER, "nodeName": "n1"}} for i in (1, 2)]
    files = {p.name: p.read_text() for p in sorted((REPO_ROOT / "manifests" / "guestbook").iterdir())
             if p.name.endswith((".yaml", ".yaml.age"))}  # its ConfigMap and its age-encrypted Secret too
    files["load.yaml"] = yaml.safe_dump_all([rc, dep, *bare], sort_keys=False)
    return files


def containers(fleet) -> dict[tuple[str, str], str]:
    """(node, container id) -> state of every gitkube container on the fleet, as Docker itself lists them."""
    out = {}
    for node in ("n1", "n2", "n3"):
        r = fleet.docker(node, "ps", "-a", "--filter", "label=io.gitkube.managed=true", "--format", "{{.ID}} {{.State}}")
        assert r.returncode == 0, r.stderr
        for line in r.stdout.split("\n"):
            if line.strip():
                cid, state = line.split()
                out[(node, cid)] = state
    return out


def pods(c: Cluster) -> dict[str, tuple[str, int]]:
    return {p["metadata"]["name"]: (p["metadata"]["uid"], sum(cs.get("restartCount", 0) for cs in
                                                              p["status"].get("containerStatuses") or []))
            for p in c.get("pods")["items"]}


def services(c: Cluster) -> dict[str, tuple]:
    return {s["metadata"]["name"]: (s["spec"].get("clusterIP"), tuple(p.get("nodePort") for p in s["spec"]["ports"]))
            for s in c.get("svc")["items"] if s["metadata"]["name"] != "kubernetes"}


def evictions(c: Cluster) -> list[str]:
    evs = json.loads(c.gk("events", "-A", "-o", "json").stdout)["items"]
    return [e["involvedObject"]["name"] for e in evs if e["reason"] == "NodeControllerEviction"]


AGE_IDENTITY = str(REPO_ROOT / "manifests" / "DEMO-ONLY-age-identity.txt")


def apply(c: Cluster, *extra, check=True, timeout=150):
    return c.gk("apply", *c.src(), "--age-identity", AGE_IDENTITY, *extra, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def running(fleet, tmp_path_factory):
    """The first installation with 30 pods and the Guestbook running, and an entry written to the Guestbook."""
    c = Cluster(fleet, tmp_path_factory.mktemp("rebuild"))
    for attempt in range(3):  # a loaded machine can time a node's engine out: the load is idempotent
        r = c.gk("images", "load", "redis", "guestbook-frontend", "haproxy", "dnsmasq", "--inventory",
                 str(fleet.inventory), timeout=300, check=attempt == 2)
        if r.returncode == 0:
            break
    c.commit(workload(), "30 pods and the Guestbook")
    t0 = time.monotonic()
    apply(c, "--wait", "--timeout", "300", timeout=400)
    print(f"\nrebuild e2e: 36 pods up in {time.monotonic() - t0:.1f}s")
    value = f"before-{uuid.uuid4().hex[:8]}"
    assert json.loads(http_get(guestbook_url(fleet, "n1", cmd="set", key="messages", value=value))) == {
        "message": "Updated"}
    eventually(lambda: all(json.loads(try_get(guestbook_url(fleet, "n3", cmd="get", key="messages")) or "{}")
                           .get("data") == value for _ in range(3)), timeout=30, what="the entry replicated")
    c.value = value
    c.last_pass = time.monotonic()
    yield c
    for n in ("n2", "n3"):
        gk("sandbox", "node", n, "heal", state_dir=fleet.state_dir, check=False)
    c.commit({}, "remove everything")
    apply(c, check=False, timeout=200)  # a one-shot apply finishes the terminations it starts


def _wipe_etcd(url: str) -> None:
    """Deletes every key under the store's prefix (etcd's data lost, or the prefix deleted by hand)."""
    from gitkube.store.etcd import gateway, parse_url

    endpoints, prefix = parse_url(url)
    r = gateway(endpoints).delete_range(prefix, prefix=True)
    assert int(r.get("deleted", 0)) > 36, r


def _damage(db: str, how: str) -> None:
    if how == "wiped":
        _wipe_etcd(os.environ["GITKUBE_STORE"])
    elif how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
    elif how == "truncated":
        os.truncate(db, os.path.getsize(db) // 2)
    else:  # pages after the header zeroed
        with open(db, "r+b") as f:
            f.seek(4096)
            f.write(b"\0" * 4096 * 3)


def test_lost_db_is_rebuilt_from_the_nodes_and_nothing_restarts(running, fleet):
    c = running
    before_containers, before_pods, before_svcs = containers(fleet), pods(c), services(c)
    assert len(before_pods) == 36 and all(n == 0 for _, n in before_pods.values())
    assert services(c)["frontend"][1] == (30001,)
    db = str(c.state / "state.db")
    damages = (("deleted", "is missing"), ("truncated", "is corrupt"), ("zeroed", "is corrupt"))
    if os.environ.get("GITKUBE_STORE"):  # an etcd store (GITKUBE_TEST_STORE=etcd): its keys are what is lost
        damages = (("wiped", "holds no state"),)
    for how, said in damages:
        _damage(db, how)
        if how not in ("deleted", "wiped"):
            r = c.gk("state", "check", check=False)
            assert r.returncode == 1 and "is corrupt" in r.stdout, r.stdout
        t0 = time.monotonic()
        r = apply(c, "--wait", "--timeout", "240", timeout=330)
        took = time.monotonic() - t0
        lost = [ln for ln in r.stderr.splitlines() if "rebuilding the state from the nodes" in ln]
        assert len(lost) == 1 and said in lost[0], r.stderr
        if how not in ("deleted", "wiped"):
            assert "moved aside to" in lost[0] and list(c.state.glob("state.db.corrupt-*"))
        rebuilt = next(ln for ln in r.stderr.splitlines() if ln.startswith("state rebuilt from the nodes"))
        assert "36 pod(s) adopted; 0 not wanted" in rebuilt, rebuilt
        after = containers(fleet)
        assert after == before_containers, f"{how}: containers changed: " \
            f"gone {set(before_containers) - set(after)}, new {set(after) - set(before_containers)}"
        assert pods(c) == before_pods, f"{how}: pod names, uids or restart counts changed"
        assert services(c) == before_svcs, f"{how}: ClusterIPs or NodePorts changed"
        for node in ("n1", "n2", "n3"):
            got = try_get(guestbook_url(fleet, node, cmd="get", key="messages"))
            assert got is not None and json.loads(got).get("data") == c.value, (how, node, got)
        assert c.gk("state", "check").returncode == 0
        print(f"\nrebuild e2e: DB {how}: apply --wait {took:.1f}s; {rebuilt}")
    c.last_pass = time.monotonic()


def test_evictions_count_from_this_process_own_observation(running, fleet):
    c = running
    bound = {n: [p["metadata"]["name"] for p in c.get("pods")["items"] if p["spec"].get("nodeName") == n]
             for n in ("n2", "n3")}
    cut = max(bound, key=lambda n: len(bound[n]))  # n1 keeps the bare pods
    cut_pods = bound[cut]
    assert cut_pods, bound
    gk("sandbox", "node", cut, "cut", state_dir=fleet.state_dir)
    try:
        # The controller has been stopped for longer than the grace period (20 s) when the next apply runs.
        t_cut = time.monotonic()
        time.sleep(max(0.0, c.last_pass + 21 - time.monotonic()))
        r = apply(c, timeout=120, check=False)  # exit 1: the fleet is Degraded (a node unreachable)
        t_apply = time.monotonic()
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr
        assert f"node {cut} not synced" in r.stderr, r.stderr
        assert evictions(c) == [] and not [p for p in c.get("pods")["items"]
                                           if p["metadata"].get("deletionTimestamp")], "a one-shot apply evicted"
        # --wait does not wait for the cut node's pods, and says which node and why.
        t0 = time.monotonic()
        r = apply(c, "--wait", "--timeout", "90", check=False)
        assert r.returncode == 1, r.stderr
        assert f"not waiting for the pods of node {cut}: " in r.stderr, r.stderr
        assert "198.18" in r.stderr and time.monotonic() - t0 < 60 and evictions(c) == []
        t_wait = time.monotonic()
        # serve: Unknown after 4 s, evicted 4 s later, counted from its own first heartbeat, not the stored one.
        t0 = time.time()
        srv = subprocess.Popen([sys.executable, "-m", "gitkube", "--state-dir", str(c.state), "serve", *c.src(),
                                "--age-identity", AGE_IDENTITY, "--resync", "1", "--node-grace", "4", "--eviction-timeout", "4", "--no-api"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "GITKUBE_SANDBOX_ID": str(SID)})
        try:
            evicted = eventually(lambda: evictions(c), timeout=45, interval=0.5, what="evictions by serve")
            first = time.time()
        finally:
            t_evicted = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            try:
                srv.wait(timeout=30)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait(timeout=10)
        print(f"\nrebuild e2e: cut->apply {t_apply - t_cut:.1f}s, apply --wait {t_wait - t_apply:.1f}s, "
              f"serve evicted after {t_evicted - t_wait:.1f}s, stopped after {time.monotonic() - t_evicted:.1f}s")
        assert first - t0 >= 8, f"evicted {first - t0:.1f}s after serve started, before grace + timeout"
        assert set(evicted) <= set(cut_pods)
        print(f"\nrebuild e2e: serve evicted {len(evicted)} pod(s) of the cut node {first - t0:.1f}s after it started")
    finally:
        gk("sandbox", "node", cut, "heal", state_dir=fleet.state_dir)


class OtherInstallation(Cluster):
    """A second installation: its own state dir, and on etcd its own store (another key prefix) too."""

    def gk(self, *args, **kw):
        store = os.environ.get("GITKUBE_STORE")
        env = {"GITKUBE_PROXY_MODE": self.proxy_mode, **({"GITKUBE_STORE": f"{store}-other"} if store else {})}
        return gk(*args, state_dir=self.state, env=env, **kw)


def test_second_installation_is_refused_and_deletes_nothing_of_the_first(running, fleet, tmp_path):
    first = running
    (tmp_path / "other").mkdir()
    other = OtherInstallation(fleet, tmp_path / "other")
    other.commit({"intruder.yaml": yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "intruder"},
                                                  "spec": SLEEPER})}, "another installation's pod")
    inv = ("--inventory", str(fleet.inventory))
    try:
        r = first.gk("lock", "acquire", "--reason", "maintenance by the first", "--ttl", "4", *inv)
        assert r.stdout.count("held by") == 3, r.stdout
        held = time.monotonic()
        r = apply(other, check=False)
        assert r.returncode == 2 and "locked by another gitkube installation" in r.stderr, r.stderr
        assert str(first.state) in r.stderr and "maintenance by the first" in r.stderr and "Traceback" not in r.stderr
        st = other.gk("lock", "status", *inv, check=False)
        assert st.returncode == 1 and "maintenance by the first" in st.stdout
        time.sleep(max(0.0, held + 5 - time.monotonic()))
        r = apply(other, check=False)
        assert r.returncode == 2 and "--break-expired" in r.stderr, r.stderr  # expired, still not broken unasked
        r = other.gk("lock", "acquire", "--break-expired", "--reason", "taking over", *inv)
        assert r.stdout.count("broke the expired lock") == 3, r.stdout
        mine = {k: v for k, v in containers(fleet).items()}
        r = apply(other, "--wait", "--timeout", "120", timeout=200)
        after = containers(fleet)
        assert {k: after.get(k) for k in mine} == mine, "the second installation touched the first one's containers"
        assert len(after) == len(mine) + 2  # the intruder's sandbox and app container, beside
        other.commit({}, "gone")
        apply(other, "--wait", "--timeout", "60")
        other.gk("lock", "release", *inv)
        assert containers(fleet) == mine
    finally:  # lock records outlive a failed test (they are files in the SSH user's home on the nodes)
        other.gk("lock", "release", *inv, check=False)
        first.gk("lock", "release", *inv, check=False)
    # The first installation manages its nodes again, its pods untouched.
    r = apply(first, "--wait", "--timeout", "120", check=False)
    assert "locked" not in r.stderr, r.stderr
