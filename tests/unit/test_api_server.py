"""The API server's routes in-process (aiohttp's test client) over a real state DB: discovery, list/get, selectors,
Tables, Status errors, the write refusal, watch from a resourceVersion, 410 Gone, bookmarks, the bearer token."""
from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gitkube.server import query
from gitkube.server.app import build_app
from gitkube.server.context import ApiContext
from gitkube.server.listener import is_loopback, parse_listen, ListenError
from gitkube.store import Store

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def _pod(name: str, node: str, phase: str | None = None, **labels) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": node}}


@pytest.fixture
def state(tmp_path):
    with Store.open(tmp_path, writer=True) as st:
        st.sync_revision("a" * 40, [_pod("a", "n1", app="web"), _pod("b", "n2", app="db"),
                                    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                     "spec": {"type": "ClusterIP", "clusterIP": "198.19.0.9",
                                              "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}}])
        st.update_status("Pod", "default", "a", {"phase": "Running", "hostIP": "198.18.0.11", "podIP": "10.0.0.2"})
        st.record_event({"kind": "Pod", "namespace": "default", "name": "a"}, "Scheduled", "assigned to n1")
        st.record_event({"kind": "Node", "namespace": "", "name": "n1"}, "NodeReady", "ready")
    return tmp_path


def run(state, fn, token=None):
    async def main():
        ctx = ApiContext(str(state), "the Git repository /srv/repo (manifests/)", token=token)
        async with TestClient(TestServer(build_app(ctx))) as client:
            return await fn(client)
    return asyncio.run(main())


async def _json(resp):
    return resp.status, json.loads(await resp.text())


def test_discovery_lists_every_resource_with_names_and_verbs(state):
    async def go(c):
        return [await _json(await c.get(p)) for p in ("/version", "/api", "/api/v1", "/apis")]

    (s1, version), (s2, api), (s3, v1), (s4, apis) = run(state, go)
    assert {s1, s2, s3, s4} == {200}
    assert version["major"] == "1" and "gitkube" in version["gitVersion"]
    assert api["versions"] == ["v1"]
    pods = next(r for r in v1["resources"] if r["name"] == "pods")
    assert pods == {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                    "verbs": ["get", "list", "watch"], "shortNames": ["po"], "categories": ["all"]}
    assert any(r["name"] == "pods/log" for r in v1["resources"])
    assert {r["name"] for r in v1["resources"] if not r["namespaced"]} == {"nodes", "namespaces"}
    assert apis["kind"] == "APIGroupList"


def test_list_and_get_with_selectors_and_resource_versions(state):
    async def go(c):
        return (await _json(await c.get("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")),
                await _json(await c.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dn2")),
                await _json(await c.get("/api/v1/namespaces/default/pods/a")),
                await _json(await c.get("/api/v1/namespaces/default/pods/zz")),
                await _json(await c.get("/api/v1/pods?fieldSelector=spec.bogus%3D1")),
                await _json(await c.get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Da,"
                                        "involvedObject.kind%3DPod,involvedObject.uid%3Dsome-uid")),
                await _json(await c.get("/api/v1/events?fieldSelector=involvedObject.kind%3DNode")),
                await _json(await c.get("/api/v1/namespaces")))

    (s1, web), (s2, n2), (s3, a), (s4, missing), (s5, bad), (s6, ev), (s7, nev), (s8, ns) = run(state, go)
    assert s1 == 200 and web["kind"] == "PodList" and [p["metadata"]["name"] for p in web["items"]] == ["a"]
    assert int(web["metadata"]["resourceVersion"]) >= int(web["items"][0]["metadata"]["resourceVersion"])
    assert [p["metadata"]["name"] for p in n2["items"]] == ["b"]
    assert s3 == 200 and a["status"]["qosClass"] == "BestEffort" and a["status"]["hostIPs"] == [{"ip": "198.18.0.11"}]
    assert s4 == 404 and missing["kind"] == "Status" and missing["reason"] == "NotFound"
    assert missing["message"] == 'pods "zz" not found'
    assert s5 == 400 and bad["message"] == "field label not supported: spec.bogus"
    assert [e["reason"] for e in ev["items"]] == ["Scheduled"]  # recorded without a uid: matches any
    assert [e["reason"] for e in nev["items"]] == ["NodeReady"]
    assert [n["metadata"]["name"] for n in ns["items"]] == ["default"]


def test_table_has_kubectls_columns_and_row_metadata(state):
    async def go(c):
        return await _json(await c.get("/api/v1/namespaces/default/pods", headers={"Accept": TABLE}))

    status, t = run(state, go)
    assert status == 200 and t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    cols = [(c["name"], c["priority"]) for c in t["columnDefinitions"]]
    assert cols == [("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1), ("Node", 1)]
    assert t["rows"][0]["cells"][:4] == ["a", "0/1", "Running", "0"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert t["rows"][0]["object"]["metadata"]["labels"] == {"app": "web"}


def test_writes_are_refused_naming_the_repository(state):
    async def go(c):
        return [await _json(await c.request(m, "/api/v1/namespaces/default/pods/a")) for m in ("DELETE", "PUT", "PATCH")] + [
            await _json(await c.post("/api/v1/namespaces/default/pods", data="{}"))]

    for status, body in run(state, go):
        assert status == 405 and body["reason"] == "MethodNotAllowed" and body["kind"] == "Status"
        assert "desired state is the Git repository /srv/repo (manifests/)" in body["message"]
    with Store.open(state) as st:
        assert st.get("Pod", "default", "a") is not None


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_watch_from_a_resource_version_streams_changes_then_ends(state):
    async def go(c):
        rv = json.loads(await (await c.get("/api/v1/namespaces/default/pods")).text())["metadata"]["resourceVersion"]

        async def write():
            await asyncio.sleep(0.3)
            with Store.open(state, writer=True) as st:
                st.update_status("Pod", "default", "b", {"phase": "Running"})
                st.mark_deleted("Pod", "default", "a")
                st.purge(["Pod"])
                st.put(_pod("c", "n3", app="web"))

        writer = asyncio.create_task(write())
        resp = await c.get(f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&timeoutSeconds=2"
                           "&labelSelector=app%3Dweb")
        text = await resp.text()
        await writer
        gone = await c.get("/api/v1/namespaces/default/pods?watch=1&resourceVersion=1&timeoutSeconds=1")
        return rv, text, await gone.text()

    rv, text, _ = run(state, go)
    events = [(e["type"], e["object"]["metadata"]["name"]) for e in _lines(text)]
    # b is no web pod: its change is not this watch's; a is modified (marked), then deleted; c is added
    assert events == [("MODIFIED", "a"), ("DELETED", "a"), ("ADDED", "c")], events
    assert all(int(e["object"]["metadata"]["resourceVersion"]) > int(rv) for e in _lines(text))


def test_watch_without_a_version_starts_with_the_list_and_a_table_watch_sends_rows(state):
    async def go(c):
        r = await c.get("/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1", headers={"Accept": TABLE})
        return await r.text()

    events = _lines(run(state, go))
    assert [e["type"] for e in events] == ["ADDED", "ADDED"]
    assert events[0]["object"]["kind"] == "Table" and events[0]["object"]["rows"][0]["cells"][0] == "a"


def test_a_too_old_version_is_410_gone(state, monkeypatch):
    monkeypatch.setattr(Store, "CHANGES_KEPT", 1)

    async def go(c):
        return await (await c.get("/api/v1/pods?watch=1&resourceVersion=1&timeoutSeconds=1")).text()

    (ev,) = _lines(run(state, go))
    assert ev["type"] == "ERROR" and ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"


def test_bookmarks_carry_the_resource_version_watched_to(state):
    from gitkube.server import objects

    async def go(c):
        async def write():
            await asyncio.sleep(0.3)
            with Store.open(state, writer=True) as st:
                st.update_status("Pod", "default", "b", {"phase": "Failed"})

        w = asyncio.create_task(write())
        r = await c.get("/api/v1/namespaces/default/services?watch=1&resourceVersion=0&allowWatchBookmarks=true"
                        "&timeoutSeconds=1.5")
        text = await r.text()
        await w
        return text

    old = objects.BOOKMARK_SECONDS
    objects.BOOKMARK_SECONDS = 0.5
    try:
        events = _lines(run(state, go))
    finally:
        objects.BOOKMARK_SECONDS = old
    assert events[0]["type"] == "ADDED"
    marks = [e for e in events if e["type"] == "BOOKMARK"]
    assert marks and marks[-1]["object"]["kind"] == "Service" and int(marks[-1]["object"]["metadata"]["resourceVersion"]) > 0


def test_a_token_is_required_when_set(state):
    async def go(c):
        return ((await c.get("/api/v1/pods")).status, (await c.get("/version")).status,
                (await c.get("/api/v1/pods", headers={"Authorization": "Bearer s3cret"})).status,
                (await c.get("/api/v1/pods", headers={"Authorization": "Bearer wrong"})).status)

    assert run(state, go, token="s3cret") == (401, 200, 200, 401)


def test_field_selectors_parse_and_match_as_kubernetes():
    reqs = query.parse_field_selector("status.phase=Running,spec.nodeName!=n2,metadata.name==a", "Pod")
    assert [(r.field, r.op, r.value) for r in reqs] == [("status.phase", "=", "Running"),
                                                        ("spec.nodeName", "!=", "n2"), ("metadata.name", "=", "a")]
    pod = {"metadata": {"name": "a"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert query.fields_match(pod, reqs)
    assert not query.fields_match({**pod, "spec": {"nodeName": "n2"}}, reqs)
    assert query.fields_match({"spec": {"unschedulable": True}}, query.parse_field_selector("spec.unschedulable=true", "Node"))
    with pytest.raises(query.BadRequest):
        query.parse_field_selector("status.phase", "Pod")


def test_listen_addresses():
    assert parse_listen("127.0.0.1:6443") == ("127.0.0.1", 6443)
    assert parse_listen(":0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:6443") == ("::1", 6443)
    with pytest.raises(ListenError):
        parse_listen("6443")
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("198.18.0.1")


def test_a_server_started_before_the_first_apply_reads_the_db_once_it_exists(tmp_path):
    ctx = ApiContext(str(tmp_path / "state"), "the Git repository /srv/repo (manifests/)")

    async def count():
        return await ctx.read(lambda st: len(st.list("Pod")))

    async def main():
        before = await count()
        with Store.open(tmp_path / "state", writer=True) as st:
            st.put(_pod("late", "n1"))
        return before, await count()

    try:
        assert asyncio.run(main()) == (0, 1)
    finally:
        ctx.close()
