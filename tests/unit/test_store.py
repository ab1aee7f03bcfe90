"""State DB: identity kept across revisions, generation on spec change only, refusals change nothing, one writer."""
from __future__ import annotations

import os
import sqlite3

import pytest

from gitkube.store import SCHEMA_VERSION, ObjectKey, ReadOnlyStore, Store, StoreLocked


def pod(name, image="nginx:1.25", ns="default", labels=None):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": name}},
        "spec": {"containers": [{"name": "c", "image": image, "imagePullPolicy": "IfNotPresent"}],
                 "restartPolicy": "Always", "terminationGracePeriodSeconds": 30},
    }


def svc(name, ns="default"):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "ClusterIP", "selector": {"app": name},
                     "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}}


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "state", writer=True)
    yield s
    s.close()


def rows(state_dir):
    conn = sqlite3.connect(os.path.join(state_dir, "state.db"))
    try:
        return conn.execute("SELECT * FROM objects ORDER BY kind, namespace, name").fetchall()
    finally:
        conn.close()


def test_migrates_an_empty_db_and_uses_wal(tmp_path):
    with Store.open(tmp_path, writer=True):
        pass
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"objects", "events", "revisions", "kv"} <= tables
    conn.close()
    with Store.open(tmp_path, writer=True) as s:  # reopening does not re-run steps
        assert s.applied_revision() is None


def test_uid_and_creation_kept_generation_rises_only_on_spec_change(store):
    r1 = store.sync_revision("a" * 40, [pod("web"), svc("web")], now="2024-01-01T00:00:00Z")
    assert sorted(r1.added) == [ObjectKey("Pod", "default", "web"), ObjectKey("Service", "default", "web")]
    first = store.get("Pod", "default", "web")
    assert first["metadata"]["generation"] == 1
    assert first["status"] == {"phase": "Pending"}
    uid, created = first["metadata"]["uid"], first["metadata"]["creationTimestamp"]
    assert created == "2024-01-01T00:00:00Z"

    # unchanged revision: nothing written
    r2 = store.sync_revision("b" * 40, [pod("web"), svc("web")], now="2024-01-02T00:00:00Z")
    assert r2.in_sync and len(r2.unchanged) == 2
    assert store.get("Pod", "default", "web") == first

    # label change: a write (resourceVersion rises) but not a spec change (generation stays)
    store.update_status("Pod", "default", "web", {"phase": "Running", "podIP": "198.18.101.5"})
    r3 = store.sync_revision("c" * 40, [pod("web", labels={"app": "web", "tier": "fe"}), svc("web")],
                             now="2024-01-03T00:00:00Z")
    assert r3.changed == [ObjectKey("Pod", "default", "web")]
    third = store.get("Pod", "default", "web")
    assert third["metadata"]["generation"] == 1
    assert int(third["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert third["status"]["phase"] == "Running"  # status preserved

    # spec change: generation rises, identity kept
    store.sync_revision("d" * 40, [pod("web", image="nginx:1.26"), svc("web")], now="2024-01-04T00:00:00Z")
    fourth = store.get("Pod", "default", "web")
    assert fourth["metadata"]["generation"] == 2
    assert fourth["metadata"]["uid"] == uid and fourth["metadata"]["creationTimestamp"] == created
    assert store.applied_revision() == "d" * 40


def test_removed_objects_are_marked_then_purged(store):
    store.sync_revision("a" * 40, [pod("web"), pod("db")])
    r = store.sync_revision("b" * 40, [pod("web")], now="2024-01-05T00:00:00Z")
    assert r.removed == [ObjectKey("Pod", "default", "db")]
    assert store.get("Pod", "default", "db")["metadata"]["deletionTimestamp"] == "2024-01-05T00:00:00Z"
    # not removed twice
    assert store.sync_revision("c" * 40, [pod("web")]).removed == []
    assert store.purge() == [ObjectKey("Pod", "default", "db")]
    assert store.get("Pod", "default", "db") is None


def test_controller_objects_survive_syncs(store):
    store.sync_revision("a" * 40, [pod("web")])
    made = store.put(pod("web-x7k2p"), origin="controller")
    assert made["metadata"]["uid"]
    r = store.sync_revision("b" * 40, [pod("web")])
    assert r.removed == []
    assert store.get("Pod", "default", "web-x7k2p")["metadata"]["uid"] == made["metadata"]["uid"]
    assert [p["metadata"]["name"] for p in store.list("Pod", selector={"app": "web-x7k2p"})] == ["web-x7k2p"]


def test_refused_revision_changes_no_object(tmp_path):
    state = str(tmp_path)
    with Store.open(state, writer=True) as s:
        s.sync_revision("a" * 40, [pod("web"), svc("web")])
        before = rows(state)
        ev = s.record_refused("b" * 40, ["manifests/x.yaml:3: spec.replicas: must be >= 0"],
                              now="2024-01-06T00:00:00Z")
        assert ev["type"] == "Warning" and ev["reason"] == "InvalidRevision"
        assert "manifests/x.yaml:3: spec.replicas" in ev["message"]
        assert s.applied_revision() == "a" * 40
        assert [r["result"] for r in s.revisions()] == ["refused", "applied"]
    assert rows(state) == before


def test_second_writer_refused_naming_lock_and_pid(tmp_path):
    with Store.open(tmp_path, writer=True):
        with pytest.raises(StoreLocked) as e:
            Store.open(tmp_path, writer=True)
        assert str(tmp_path / "lock") in str(e.value) and str(os.getpid()) in str(e.value)
        with Store.open(tmp_path) as reader:  # readers need no lock
            assert reader.list("Pod") == []
    with Store.open(tmp_path, writer=True):  # released on close
        pass


def test_reader_cannot_write_and_never_creates_state(tmp_path):
    with Store.open(tmp_path / "nothing") as r:
        assert r.list() == [] and r.applied_revision() is None
        with pytest.raises(ReadOnlyStore):
            r.sync_revision("a" * 40, [])
    assert not (tmp_path / "nothing").exists()


def test_events_aggregate_repeats(store):
    p = store.put(pod("web"))
    store.record_event(p, "BackOff", "Back-off restarting failed container", "Warning", now="2024-01-01T00:00:00Z")
    e = store.record_event(p, "BackOff", "Back-off restarting failed container", "Warning",
                           now="2024-01-01T00:05:00Z")
    assert e["count"] == 2 and e["firstTimestamp"] == "2024-01-01T00:00:00Z"
    assert e["lastTimestamp"] == "2024-01-01T00:05:00Z"
    store.record_event({"kind": "Node", "name": "n1"}, "NodeReady", "Node n1 status is now: NodeReady")
    assert len(store.events(p)) == 1
    assert len(store.events(("Node", "", "n1"))) == 1
    assert store.events(("Node", "", "n1"))[0]["metadata"]["namespace"] == "default"
    assert len(store.events()) == 2


def test_nodes_are_cluster_scoped(store):
    store.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {}},
               "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    n = store.get("Node", "ignored", "n1")
    assert "namespace" not in n["metadata"] and n["status"]["conditions"][0]["status"] == "True"
    assert [o["metadata"]["name"] for o in store.list("Node", namespace="default")] == ["n1"]


def test_kv(store):
    store.kv_set("clusterip", {"next": "198.19.0.10"})
    assert store.kv_get("clusterip") == {"next": "198.19.0.10"}
    assert store.kv_get("missing", 7) == 7
