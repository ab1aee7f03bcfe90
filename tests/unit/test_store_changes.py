"""The store's change log: every write of an object or event is a watchable change, in resourceVersion order."""
from __future__ import annotations

import sqlite3

from gitkube.store import Store
from gitkube.store.schema import MIGRATIONS, _statements


def _pod(name: str, **labels) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


def test_writes_become_changes_in_resource_version_order(tmp_path):
    with Store.open(tmp_path, writer=True) as st:
        start = st.resource_version()
        st.put(_pod("a"))
        st.update_status("Pod", "default", "a", {"phase": "Running"})
        st.sync_revision("s1", [_pod("b")])
        st.mark_deleted("Pod", "default", "a")
        st.purge(["Pod"])
        ev = st.record_event({"kind": "Pod", "namespace": "default", "name": "b"}, "Scheduled", "ok")
        st.record_event({"kind": "Pod", "namespace": "default", "name": "b"}, "Scheduled", "ok")
        ch = st.changes_since(start)
        assert [(c["type"], c["kind"], c["name"]) for c in ch] == [
            ("ADDED", "Pod", "a"), ("MODIFIED", "Pod", "a"), ("ADDED", "Pod", "b"), ("MODIFIED", "Pod", "a"),
            ("DELETED", "Pod", "a"), ("ADDED", "Event", ev["metadata"]["name"]),
            ("MODIFIED", "Event", ev["metadata"]["name"])]
        rvs = [c["rv"] for c in ch]
        assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
        # each change carries the object as of its resourceVersion
        assert all(c["object"]["metadata"]["resourceVersion"] == str(c["rv"]) for c in ch[:5])
        assert ch[1]["object"]["status"] == {"phase": "Running"}
        assert ch[4]["object"]["metadata"]["deletionTimestamp"]
        assert st.resource_version() == rvs[-1]
        assert st.changes_since(rvs[2], kinds=["Pod"])[0]["type"] == "MODIFIED"
        # events carry their resourceVersion too, and a repeat bumps it
        assert st.events()[0]["metadata"]["resourceVersion"] == str(rvs[-1])
        assert st.oldest_watchable() == 0


def test_a_new_object_with_status_is_one_added_change(tmp_path):
    with Store.open(tmp_path, writer=True) as st:
        st.put({**_pod("n"), "status": {"phase": "Pending"}})
        (c,) = st.changes_since(0)
        assert c["type"] == "ADDED" and c["object"]["status"] == {"phase": "Pending"}


def test_a_store_made_before_the_change_log_watches_from_where_it_was_migrated(tmp_path):
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for stmt in _statements(MIGRATIONS[0]):
        conn.execute(stmt)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO kv (key, value) VALUES ('resourceVersion', '41')")
    conn.close()
    with Store.open(tmp_path, writer=True) as st:
        assert st.resource_version() == 41 and st.oldest_watchable() == 41
        st.put(_pod("x"))
        assert [c["rv"] for c in st.changes_since(41)] == [42]
