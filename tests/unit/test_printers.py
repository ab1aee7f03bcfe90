"""Printers: kubectl's ages, pod STATUS/READY/RESTARTS, tables and the List wrapper."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gitkube.api.printers import (
    format_age, human_duration, kube_object, list_object, object_name, ready_column, pod_restarts, pod_status_reason,
    render_table, resolve_resource, table_rows, tabwrite,
)

NOW = datetime(2024, 1, 10, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("seconds,text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (150, "2m30s"),
    (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 120, "3h2m"), (8 * 3600, "8h"),
    (47 * 3600, "47h"), (2 * 86400, "2d"), (2 * 86400 + 3600, "2d1h"), (8 * 86400, "8d"), (400 * 86400, "400d"),
    (730 * 86400, "2y"), (735 * 86400, "2y5d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_format_age():
    assert format_age((NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"), NOW) == "5m"
    assert format_age(None, NOW) == "<unknown>"


def pod(statuses=None, phase="Running", deleting=False, n=1, conditions=None):
    p = {"kind": "Pod", "metadata": {"name": "p"},
         "spec": {"containers": [{"name": f"c{i}"} for i in range(n)]},
         "status": {"phase": phase, "containerStatuses": statuses or [], "conditions": conditions or []}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2024-01-10T11:59:00Z"
    return p


def test_pod_status_column():
    assert pod_status_reason({"kind": "Pod", "metadata": {}, "spec": {}}) == "Pending"
    assert pod_status_reason(pod()) == "Running"
    assert pod_status_reason(pod([{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}])) == "CrashLoopBackOff"
    assert pod_status_reason(pod([{"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}],
                                 phase="Succeeded")) == "Completed"
    assert pod_status_reason(pod([{"state": {"terminated": {"exitCode": 3}}}])) == "ExitCode:3"
    assert pod_status_reason(pod([{"state": {"terminated": {"exitCode": 137, "signal": 9}}}])) == "Signal:9"
    assert pod_status_reason(pod(deleting=True)) == "Terminating"
    # a completed container beside a running one reads Running/NotReady
    both = [{"state": {"terminated": {"reason": "Completed"}}}, {"ready": True, "state": {"running": {}}}]
    assert pod_status_reason(pod(list(reversed(both)), n=2)) == "NotReady"
    assert pod_status_reason(pod(list(reversed(both)), n=2,
                                 conditions=[{"type": "Ready", "status": "True"}])) == "Running"


def test_ready_and_restarts():
    p = pod([{"ready": True, "restartCount": 2, "state": {"running": {}},
              "lastState": {"terminated": {"finishedAt": "2024-01-10T11:58:00Z"}}},
             {"ready": False, "restartCount": 1, "state": {"waiting": {}}}], n=2)
    assert ready_column(p) == "1/2"
    assert pod_restarts(p, NOW) == "3 (2m ago)"
    assert pod_restarts(pod(), NOW) == "0"


def test_table_alignment_like_kubectl():
    text = render_table(["NAME", "READY", "STATUS"], [["a", "1/1", "Running"], ["longer-name", "0/1", "Pending"]])
    assert text == ("NAME          READY   STATUS\n"
                    "a             1/1     Running\n"
                    "longer-name   0/1     Pending\n")
    assert tabwrite("a:\tx\nlong key:\ty\nsection\n  k:\tv", padding=2) == \
        "a:         x\nlong key:  y\nsection\n  k:  v"


def test_all_namespaces_column_and_kinds():
    objs = [{"kind": "Service", "metadata": {"name": "s", "namespace": "shop", "creationTimestamp": None},
             "spec": {"type": "ClusterIP", "clusterIP": "198.19.0.10", "ports": [{"port": 6379, "protocol": "TCP"}]}}]
    headers, rows = table_rows("Service", objs, all_namespaces=True, now=NOW)
    assert headers[:3] == ["NAMESPACE", "NAME", "TYPE"]
    assert rows[0][:6] == ["shop", "s", "ClusterIP", "198.19.0.10", "<none>", "6379/TCP"]
    assert resolve_resource("po") == ("Pod", True) and resolve_resource("no") == ("Node", False)
    with pytest.raises(KeyError):
        resolve_resource("widgets")


def test_list_wrapper_and_names():
    lst = list_object([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}])
    assert lst["kind"] == "List" and lst["apiVersion"] == "v1"
    assert lst["items"][0]["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert list(kube_object({"kind": "Namespace", "metadata": {"name": "x"}})) == \
        ["apiVersion", "kind", "metadata", "spec", "status"]
    assert object_name({"kind": "ReplicationController", "metadata": {"name": "f"}}) == "replicationcontroller/f"
