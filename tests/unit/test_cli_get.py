"""gitkube get as kubectl does it: KIND1,KIND2 and all, --show-labels, --no-headers, --field-selector, -w; and the
one-line failures of logs/exec (no traceback)."""
from __future__ import annotations

import json
import threading
import time

import pytest

from gitkube.cli import main
from gitkube.store import Store


def _pod(name, node="n1", **labels):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": node}}


@pytest.fixture
def state(tmp_path):
    with Store.open(tmp_path, writer=True) as st:
        st.sync_revision("c" * 40, [_pod("a", app="web"), _pod("b", node="n2"),
                                    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                     "spec": {"type": "ClusterIP", "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}}])
        st.update_status("Pod", "default", "a", {"phase": "Running"})
    return tmp_path


def run(state, *args):
    return main(["--state-dir", str(state), *args])


def test_several_kinds_and_all_print_one_table_each_with_kind_prefixes(state, capsys):
    assert run(state, "get", "pods,svc") == 0
    out = capsys.readouterr().out
    tables = out.split("\n\n")
    assert len(tables) == 2 and tables[0].splitlines()[1].startswith("pod/a ") and "service/web" in tables[1]
    assert run(state, "get", "all", "-o", "name") == 0
    assert capsys.readouterr().out.split() == ["pod/a", "pod/b", "service/web"]


def test_show_labels_no_headers_and_field_selector(state, capsys):
    assert run(state, "get", "pods", "--show-labels", "--no-headers", "--field-selector", "status.phase=Running") == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split()[0] == "a" and line.split()[-1] == "app=web"
    assert run(state, "get", "pods", "--field-selector", "spec.nodeName=n2", "-o", "json") == 0
    assert [p["metadata"]["name"] for p in json.loads(capsys.readouterr().out)["items"]] == ["b"]


def test_unknown_kind_and_bad_selector_say_so_without_quotes(state, capsys):
    assert run(state, "get", "widgets") == 1
    assert capsys.readouterr().err == 'error: the server doesn\'t have a resource type "widgets"\n'
    assert run(state, "get", "pods", "--field-selector", "spec.x=1") == 1
    assert capsys.readouterr().err == "error: field label not supported: spec.x\n"


def test_get_ns_lists_default(state, capsys):
    assert run(state, "get", "ns", "--no-headers") == 0
    assert capsys.readouterr().out.split()[:2] == ["default", "Active"]


def test_watch_prints_changes_as_rows(state, capsys):
    def later():
        time.sleep(0.5)
        with Store.open(state, writer=True) as st:
            st.update_status("Pod", "default", "b", {"phase": "Failed"})

    t = threading.Thread(target=later)
    t.start()
    assert run(state, "get", "pods", "-w", "--timeout", "1.5") == 0
    t.join()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "NAME" and [ln.split()[:3] for ln in lines[3:]] == [["b", "0/1", "Failed"]], lines
