"""Monitoring, pure parts and the served pages on a temporary state DB: usage from two samples (millicores,
working set, per pod and node), kubectl top's rows, /metrics gauges from the store, metrics.k8s.io objects, the
dashboard's pages, --since durations and the event counters."""
from __future__ import annotations

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitkube import instruments
from gitkube.cli.logs_many import parse_duration
from gitkube.reconcile.usage import (ContainerReading, millicores, reading_from_stats, snapshot, top_node_rows,
                                     top_pod_rows)
from gitkube.store import Store

MI = 1024 * 1024


def rd(cid, pod, container, cpu_s, mem_mi, at, node="n1", ns="default"):
    return ContainerReading(cid, node, ns, pod, container, int(cpu_s * 1e9), int(mem_mi * MI), at)


def test_millicores_from_two_readings_of_the_same_container():
    a, b = rd("x", "p", "c", 10.0, 5, 100.0), rd("x", "p", "c", 10.5, 5, 102.0)
    assert millicores(a, b) == 250  # 0.5 s of CPU in 2 s
    assert millicores(None, b) is None
    assert millicores(rd("y", "p", "c", 1.0, 5, 100.0), b) is None  # another container (restarted)
    assert millicores(b, a) is None  # time went backwards


def test_snapshot_sums_pods_and_nodes_and_leaves_out_first_seen_pods():
    prev = {r.id: r for r in [rd("a1", "web", "app", 1.0, 0, 100.0), rd("a2", "web", "side", 2.0, 0, 100.0),
                              rd("px", "", "proxy", 0.0, 0, 100.0, ns="")]}
    cur = [rd("a1", "web", "app", 1.2, 10, 102.0), rd("a2", "web", "side", 2.1, 20, 102.0),
           rd("px", "", "proxy", 0.02, 3, 102.0, ns=""), rd("b1", "new", "app", 5.0, 7, 102.0, node="n2")]
    snap = snapshot(prev, cur, {"n1": (2000, 4096 * MI), "n2": (1000, 1024 * MI)}, ["n1", "n2", "n3"], 102.0)
    web = snap["pods"]["default/web"]
    assert (web["cpu"], web["memory"], web["complete"]) == (150, 30 * MI, True)
    assert [c["name"] for c in web["containers"]] == ["app", "side"]
    assert snap["pods"]["default/new"]["complete"] is False  # one reading: no CPU figure yet
    n1 = snap["nodes"]["n1"]
    assert (n1["cpu"], n1["memory"], n1["cpuPercent"], n1["memoryPercent"]) == (160, 33 * MI, 8, 0)
    assert snap["nodes"]["n3"]["cpu"] == 0 and snap["nodes"]["n3"]["memory"] == 0  # answered, runs nothing
    head, rows = top_pod_rows(snap, [_pod("web"), _pod("new")])
    assert head == ["NAME", "CPU(cores)", "MEMORY(bytes)"] and rows == [["web", "150m", "30Mi"]]
    head, rows = top_pod_rows(snap, [_pod("web")], containers=True, all_namespaces=True)
    assert head == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert rows == [["default", "web", "app", "100m", "10Mi"], ["default", "web", "side", "50m", "20Mi"]]
    head, rows = top_node_rows(snap, ["n1", "n3", "n9"])
    assert head == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert rows[0] == ["n1", "160m", "8%", "33Mi", "0%"] and rows[2][1] == "<unknown>"


def test_reading_from_engine_stats_cgroup_v1_and_v2():
    labels = {"io.gitkube.pod.namespace": "default", "io.gitkube.pod.name": "web", "io.gitkube.container.name": "app"}
    v2 = {"read": "2024-01-02T03:04:05.500000000Z", "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}},
          "memory_stats": {"usage": 50 * MI, "stats": {"inactive_file": 8 * MI}}}
    r = reading_from_stats({**v2, "id": "abc"}, "n1", labels, now=0.0)
    assert (r.id, r.pod, r.container, r.cpu_ns, r.memory_bytes) == ("abc", "web", "app", 2_000_000_000, 42 * MI)
    assert r.at == pytest.approx(1704164645.5)
    v1 = {"read": "0001-01-01T00:00:00Z", "cpu_stats": {"cpu_usage": {"total_usage": 7}},
          "memory_stats": {"usage": 10 * MI, "stats": {"total_inactive_file": 4 * MI}}}
    r = reading_from_stats(v1, "n1", {"io.gitkube.role": "proxy"}, now=42.0)
    assert (r.namespace, r.container, r.memory_bytes, r.at) == ("", "proxy", 6 * MI, 42.0)


def test_since_durations_as_kubectl():
    assert parse_duration("30s") == 30 and parse_duration("1h30m") == 5400 and parse_duration("1.5m") == 90
    for bad in ("", "5", "5x", "m5"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_pass_counters_count_errors_by_kind():
    class Rep:
        refused = ["x"]
        node_errors = {"n1": "boom", "n2": "services: proxy down"}

    def value(name, **labels):
        return instruments.RECONCILE_ERRORS.labels(**labels)._value.get() if labels else \
            instruments.RECONCILE_PASSES._value.get()

    before = (value("p"), value("e", kind="revision_refused"), value("e", kind="node_sync"), value("e", kind="services"))
    instruments.pass_done(Rep(), 0.2)
    after = (value("p"), value("e", kind="revision_refused"), value("e", kind="node_sync"), value("e", kind="services"))
    assert [b - a for a, b in zip(before, after)] == [1, 1, 1, 1]
    instruments.proxy_synced("n1", {"proxy": "reloaded twice"})
    assert instruments.PROXY_RELOADS.labels("n1", "retried")._value.get() >= 1


# ---- served: /metrics, metrics.k8s.io, the dashboard ------------------------------------------------------------
def _pod(name, node="n1", phase="Running", labels=None, restarts=0):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {"name": name}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]},
            "status": {"phase": phase, "podIP": "198.18.101.5",
                       "containerStatuses": [{"name": "app", "ready": phase == "Running", "restartCount": restarts,
                                              "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]}}


def _node(name):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                       "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                       "addresses": [{"type": "InternalIP", "address": "198.18.0.11"}]}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from gitkube.server.context import ApiContext
    from gitkube.server.listener import ApiServer

    d = str(tmp_path_factory.mktemp("state"))
    with Store.open(d, writer=True) as st:
        st.sync_revision("a" * 40, [])
        for n in ("n1", "n2"):
            st.put(_node(n))
        for p in (_pod("web-1", labels={"name": "web"}, restarts=2), _pod("web-2", node="n2", labels={"name": "web"}),
                  _pod("job", phase="Succeeded"), _pod("wait", node=None, phase="Pending")):
            st.put(p)
            st.update_status("Pod", "default", p["metadata"]["name"], p["status"])
        st.record_event({"kind": "Pod", "namespace": "default", "name": "web-1", "uid": ""}, "Unhealthy",
                        "Liveness probe failed: boom", "Warning")
        st.record_refused("b" * 40, ["manifests/web.yaml:7: spec.replicas: must be a number"])
        prev = {"c1": rd("c1", "web-1", "app", 1.0, 0, 100.0), "c2": rd("c2", "web-2", "app", 3.0, 0, 100.0, node="n2")}
        cur = [rd("c1", "web-1", "app", 1.5, 12, 102.0), rd("c2", "web-2", "app", 3.0, 4, 102.0, node="n2")]
        st.kv_set("usage", snapshot(prev, cur, {"n1": (2000, 4096 * MI), "n2": (2000, 4096 * MI)}, ["n1", "n2"], 102.0))
    srv = ApiServer(ApiContext(d, "the Git repository /x (manifests/)"), "127.0.0.1:0")
    url = srv.start()
    yield url
    srv.stop()


def _get(url, accept="application/json"):
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode(), r.headers.get("Content-Type", "")


def test_metrics_exposition_from_the_store(server):
    text, ctype = _get(server + "/metrics", "text/plain")
    assert ctype.startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    by = lambda fam, **lab: [s.value for s in fams[fam].samples if all(s.labels.get(k) == v for k, v in lab.items())]  # noqa: E731
    assert by("gitkube_pods", phase="Running") == [2] and by("gitkube_pods", phase="Pending") == [1]
    assert by("gitkube_pod_status_phase", pod="job", phase="Succeeded") == [1]
    assert by("gitkube_pod_container_status_restarts", pod="web-1", container="app") == [2]
    assert by("gitkube_node_status_condition", node="n2", status="true") == [1]
    assert by("gitkube_revision_info", revision="a" * 40) == [1]
    assert by("gitkube_revision_refused_info", revision="b" * 40) == [1]
    assert by("gitkube_pod_cpu_usage_cores", pod="web-1") == [0.25]
    assert by("gitkube_pod_memory_working_set_bytes", pod="web-1", node="n1") == [12 * MI]
    assert "gitkube_reconcile_passes" in fams and fams["gitkube_reconcile_passes"].type == "counter"


def test_metrics_api_as_metrics_server(server):
    groups = json.loads(_get(server + "/apis")[0])
    assert {"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
            "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}} in groups["groups"]
    res = json.loads(_get(server + "/apis/metrics.k8s.io/v1beta1")[0])
    assert {r["kind"] for r in res["resources"]} == {"PodMetrics", "NodeMetrics"}
    pods = json.loads(_get(server + "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=name%3Dweb")[0])
    assert pods["kind"] == "PodMetricsList"
    assert {p["metadata"]["name"]: p["containers"][0]["usage"] for p in pods["items"]} == {
        "web-1": {"cpu": "250m", "memory": str(12 * MI)}, "web-2": {"cpu": "0m", "memory": str(4 * MI)}}
    one = json.loads(_get(server + "/apis/metrics.k8s.io/v1beta1/nodes/n1")[0])
    assert one["kind"] == "NodeMetrics" and one["usage"] == {"cpu": "250m", "memory": str(12 * MI)}
    assert one["window"] == "2s"
    with pytest.raises(urllib.error.HTTPError) as e:
        _get(server + "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope")
    assert e.value.code == 404


def test_dashboard_pages(server):
    html, ctype = _get(server + "/", "text/html")
    assert ctype.startswith("text/html")
    for s in ('data-node="n1"', 'data-pod="web-1" data-node="n1"', 'data-pod="web-2" data-node="n2"',
              "manifests/web.yaml:7: spec.replicas: must be a number", "OutOfSync", "Liveness probe failed",
              '<span class="badge Progressing" id="health-status">Progressing</span>', "pod default/wait: Pending"):
        assert s in html
    assert "<script src" not in html and "http://" not in html.split("<script>")[0]  # nothing fetched from elsewhere
    frag, _ = _get(server + "/?fragment=1", "text/html")
    assert "<html" not in frag and 'data-pod="web-1"' in frag
    page, _ = _get(server + "/ui/namespaces/default/pods/web-1", "text/html")
    assert "Liveness probe failed: boom" in page and 'data-container="app"' in page
