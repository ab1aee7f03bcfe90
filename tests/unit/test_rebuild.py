"""Rebuilding a lost state: which pods the containers' labels and Git say to adopt, and which are not wanted;
the state DB found missing, empty or corrupt; the fleet lock's rules."""
from __future__ import annotations

import os
import sqlite3

import pytest

from gitkube.api import parse_object, to_k8s
from gitkube.reconcile.fleetlock import LockRecord, decide_lock
from gitkube.reconcile.podlabels import CLUSTER, pod_labels, read_labels
from gitkube.reconcile.rebuild import ListedContainer, plan_rebuild
from gitkube.store import Store, StoreCorrupt, integrity_report

RC = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web", "namespace": "default"},
      "spec": {"replicas": 2, "selector": {"app": "web"},
               "template": {"metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}}
BARE = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}}
DESIRED = [to_k8s(parse_object(RC)), to_k8s(parse_object(BARE))]


def pod_containers(node, name, uid, owner=None, cluster="c1", state="running", created=1000.0, restart=0):
    """A pod's sandbox and app container as a list call shows them, labelled as the runtime labels them."""
    meta = {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ReplicationController", "name": owner[0],
                                    "uid": owner[1], "controller": True}]
    model = parse_object({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                          "spec": {"containers": [{"name": "app", "image": "busybox"}]}})
    out = []
    for cname, r in (("POD", 0), ("app", restart)):
        labels = pod_labels(model, uid, node, cname, "h", r, cluster, "sha1")
        out.append(ListedContainer(node, f"{uid}-{cname}-{node}", state, labels, created, "busybox", "sha256:x",
                                   "172.17.0.2" if cname == "POD" else None))
    return out


def test_labels_carry_what_rebuilds_the_pod():
    (infra, _) = pod_containers("n1", "web-abcde", "u1", owner=("web", "rc-uid"))
    i = read_labels(infra.labels)
    assert (i.uid, i.namespace, i.name, i.node, i.owner_kind, i.owner_name, i.owner_uid, i.revision, i.cluster) == (
        "u1", "default", "web-abcde", "n1", "ReplicationController", "web", "rc-uid", "sha1", "c1")
    assert i.created == "2026-01-01T00:00:00Z" and i.spec_hash


def test_running_pods_git_still_wants_are_adopted_with_their_names_and_uids():
    cs = (pod_containers("n1", "web-abcde", "u1", ("web", "rc-uid")) + pod_containers("n2", "web-fghij", "u2", ("web", "rc-uid"))
          + pod_containers("n3", "solo", "u3", restart=2))
    plan = plan_rebuild(DESIRED, cs, "c1")
    assert [(p["metadata"]["name"], p["metadata"]["uid"], p["spec"]["nodeName"]) for p in plan.pods] == [
        ("solo", "u3", "n3"), ("web-abcde", "u1", "n1"), ("web-fghij", "u2", "n2")]
    assert plan.unwanted == [] and plan.bindings == {"u1": "n1", "u2": "n2", "u3": "n3"}
    assert plan.uids == {("ReplicationController", "default", "web"): "rc-uid", ("Pod", "default", "solo"): "u3"}
    web = plan.pods[1]
    assert web["metadata"]["ownerReferences"][0]["uid"] == "rc-uid" and web["metadata"]["labels"] == {"app": "web"}
    assert web["metadata"]["generateName"] == "web-" and web["metadata"]["creationTimestamp"] == "2026-01-01T00:00:00Z"
    st = plan.pods[0]["status"]
    assert st["phase"] == "Running" and st["podIP"] == "172.17.0.2"
    assert st["containerStatuses"][0]["restartCount"] == 2 and "running" in st["containerStatuses"][0]["state"]


def test_only_what_can_be_shown_unwanted_is_unwanted():
    gone_rc = [ListedContainer(c.node, c.id, c.state, {**c.labels, "io.gitkube.pod.owner.name": "old"}, c.created)
               for c in pod_containers("n1", "old-xxxxx", "u9", ("old", "x"))]
    cs = (gone_rc + pod_containers("n2", "gone", "u8")
          + pod_containers("n1", "solo", "u3") + pod_containers("n2", "solo", "u3", state="exited")  # same uid twice
          + pod_containers("n3", "solo", "u7", created=2000.0))  # a second uid for one bare pod
    plan = plan_rebuild(DESIRED, cs, "c1")
    assert [p["metadata"]["uid"] for p in plan.pods] == ["u3"] and plan.pods[0]["spec"]["nodeName"] == "n1"
    why = {(u.node, u.pod_uid): u.why for u in plan.unwanted}
    assert why[("n1", "u9")] == "its ReplicationController default/old is gone from Git"
    assert why[("n2", "u8")] == "pod default/gone is gone from Git"
    assert why[("n2", "u3")] == "duplicates pod u3 that runs on n1"
    assert why[("n3", "u7")] == "duplicates pod default/solo (u3) that runs on n1"


def test_another_installations_containers_are_counted_never_planned():
    cs = pod_containers("n1", "solo", "u3", cluster="other") + pod_containers("n2", "web-abcde", "u1", ("web", "r"), cluster="other")
    plan = plan_rebuild(DESIRED, cs, "c1")
    assert plan.pods == [] and plan.unwanted == [] and plan.foreign == {"n1": 2, "n2": 2}
    # Containers made before cluster ids existed (no label) are taken as this installation's.
    legacy = [ListedContainer(c.node, c.id, c.state, {k: v for k, v in c.labels.items() if k != CLUSTER}, c.created)
              for c in pod_containers("n1", "solo", "u3")]
    assert [p["metadata"]["uid"] for p in plan_rebuild(DESIRED, legacy, "c1").pods] == ["u3"]


# -- the state DB: missing, empty, corrupt ----------------------------------------------------------------
@pytest.fixture
def state(tmp_path):
    with Store.open(tmp_path, writer=True) as s:
        assert s.lost is None
        cid = s.cluster_id()
        for i in range(200):
            s.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "namespace": "default"},
                   "spec": {"containers": [{"name": "c", "image": "busybox", "args": ["x" * 200]}]}})
    return tmp_path, cid


def _corrupt_page(db, page=3):
    with open(db, "r+b") as f:
        f.seek(4096 * (page - 1))
        f.write(b"\0" * 4096)


@pytest.mark.parametrize("damage,words,aside", [
    ("missing", "is missing", False),
    ("empty", "is empty (0 bytes)", False),
    ("truncated", "is corrupt", True),
    ("zeroed", "is corrupt", True),
    ("header", "is corrupt", True),
])
def test_a_lost_db_is_said_in_one_line_moved_aside_and_started_afresh(state, damage, words, aside):
    d, cid = state
    db = d / "state.db"
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if damage == "missing":
        db.unlink()
    elif damage == "empty":
        db.write_bytes(b"")
    elif damage == "truncated":
        os.truncate(db, os.path.getsize(db) // 2)
    elif damage == "zeroed":
        _corrupt_page(db)
    else:
        _corrupt_page(db, 1)
    if aside:
        with pytest.raises(StoreCorrupt, match="state rebuild"):
            Store.open(d)  # a reader says so and changes nothing
        assert not integrity_report(str(d))[0]
    with Store.open(d, writer=True) as s:
        assert words in s.lost and "\n" not in s.lost
        assert s.list("Pod") == [] and s.cluster_id() == cid  # the identity survives the DB
    assert bool(list(d.glob("state.db.corrupt-*"))) is aside
    assert integrity_report(str(d)) == (True, f"state DB {db}: integrity check ok")


def test_a_new_state_dir_is_not_a_lost_one(tmp_path):
    with Store.open(tmp_path / "new", writer=True) as s:
        assert s.lost is None and len(s.cluster_id()) == 16


# -- the fleet lock ----------------------------------------------------------------------------------------
def test_fleet_lock_rules():
    mine = decide_lock("n1", None, False, "c1", "me@h:/s1", "gitkube apply", now=100)
    assert mine.record == LockRecord("c1", "me@h:/s1", 100, "gitkube apply", 900) and not mine.refused
    held = LockRecord("c1", "me@h:/s1", 100, "deploy freeze", 60)
    again = decide_lock("n1", held, False, "c1", "me@h:/s1 (pid 2)", "gitkube apply", now=130)
    assert again.record == LockRecord("c1", "me@h:/s1", 130, "deploy freeze", 60)  # refreshed, reason kept
    other = decide_lock("n1", held, False, "c2", "you@h:/s2", "gitkube apply", now=150)
    assert other.record is None
    assert other.refused.startswith("node n1 is locked by another gitkube installation: held by me@h:/s1 (cluster c1)")
    assert "deploy freeze" in other.refused and "expired" not in other.refused
    late = decide_lock("n1", held, False, "c2", "you@h:/s2", "gitkube apply", now=200)
    assert late.record is None and "--break-expired" in late.refused  # expired, still refused without the flag
    broke = decide_lock("n1", held, False, "c2", "you@h:/s2", "take over", now=200, break_expired=True)
    assert broke.record.cluster_id == "c2" and broke.broke == held
    assert decide_lock("n1", held, False, "c2", "you", "x", now=150, break_expired=True).refused  # not expired
    assert decide_lock("n1", None, True, "c1", "me", "x", now=1).refused  # unreadable: never overwritten
    assert LockRecord.from_json(held.to_json()) == held and LockRecord.from_json(b"junk") is None
    # A controller's record whose process is gone (kill -9) is stale: taken over; a manual hold never is.
    ctl = LockRecord("c1", "me@h:/s1 (pid 7)", 100, "gitkube apply", 900, "h", 7)
    took = decide_lock("n1", ctl, False, "c2", "you", "gitkube apply", now=150, host="h", pid=8, holder_gone=True)
    assert took.record.cluster_id == "c2" and took.broke == ctl
    assert decide_lock("n1", held, False, "c2", "you", "x", now=150, holder_gone=True).refused
    assert LockRecord.from_json(ctl.to_json()) == ctl


DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "front", "namespace": "default"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "front"}},
                   "template": {"metadata": {"labels": {"app": "front"}},
                                "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}}


def rs_pod(node, name, uid, rs, rs_uid, **kw):
    cs = pod_containers(node, name, uid, **kw)
    lab = {"io.gitkube.pod.owner.kind": "ReplicaSet", "io.gitkube.pod.owner.name": rs, "io.gitkube.pod.owner.uid": rs_uid}
    return [ListedContainer(c.node, c.id, c.state, {**c.labels, **lab}, c.created) for c in cs]


def test_pods_of_a_deployments_current_replicaset_are_adopted_with_it():
    from gitkube.reconcile.apps import template_hash

    d = to_k8s(parse_object(DEPLOY))
    h = template_hash(d)
    cs = rs_pod("n1", f"front-{h}-aaaaa", "p1", f"front-{h}", "rs-uid") + rs_pod("n2", "front-old-bbbbb", "p2", "front-old", "rs0")
    plan = plan_rebuild([d], cs, "c1", template_hash)
    (rs,) = plan.replicasets
    assert rs["metadata"]["name"] == f"front-{h}" and rs["metadata"]["uid"] == "rs-uid"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == plan.uids[("Deployment", "default", "front")]
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "front", "pod-template-hash": h}
    (p,) = plan.pods
    assert (p["metadata"]["name"], p["metadata"]["uid"], p["metadata"]["ownerReferences"][0]["kind"]) == (
        f"front-{h}-aaaaa", "p1", "ReplicaSet")
    assert p["metadata"]["labels"]["pod-template-hash"] == h
    (u,) = plan.unwanted
    assert u.pod_uid == "p2" and "earlier template of Deployment default/front" in u.why
