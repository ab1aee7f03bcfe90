"""validate / diff / get / describe / events, run in-process against a real dulwich repo and a real state DB."""
from __future__ import annotations

import json
import os
import sqlite3

import pytest
import yaml
from dulwich import porcelain
from dulwich.repo import Repo

from gitkube.api import to_k8s
from gitkube.cli import main
from gitkube.source import load_revision
from gitkube.store import Store

GUESTBOOK = """\
apiVersion: v1
kind: ReplicationController
metadata:
  name: frontend
  labels: {app: guestbook}
spec:
  replicas: 3
  template:
    metadata:
      labels: {app: guestbook, tier: frontend}
    spec:
      containers:
      - name: php-redis
        image: gb-frontend:v4
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: frontend
  labels: {app: guestbook}
spec:
  type: NodePort
  selector: {app: guestbook, tier: frontend}
  ports:
  - port: 80
    nodePort: 30001
"""

HELLO = """\
apiVersion: v1
kind: Pod
metadata:
  name: hello
  labels: {app: hello}
spec:
  containers:
  - name: hello
    image: busybox:1.36
    command: ["sh", "-c", "echo hello; sleep 3600"]
    env:
    - name: GREETING
      value: hi
"""

BAD = """\
apiVersion: v1
kind: Pod
metadata:
  name: bad
spec:
  containers:
  - name: c
    image: busybox
    colour: blue
"""


def commit(repo_dir, files: dict[str, str], message="change") -> str:
    """Writes `files` into the working tree (replacing manifests/), commits them all, returns the SHA."""
    if not os.path.exists(os.path.join(repo_dir, ".git")):
        Repo.init(str(repo_dir), mkdir=not os.path.exists(repo_dir)).close()
    mdir = os.path.join(repo_dir, "manifests")
    if os.path.isdir(mdir):
        for name in os.listdir(mdir):
            os.remove(os.path.join(mdir, name))
    os.makedirs(mdir, exist_ok=True)
    paths = []
    for rel, text in files.items():
        path = os.path.join(repo_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        paths.append(path)
    with Repo(str(repo_dir)) as r:
        index = r.open_index()
        for key in list(index):
            if not os.path.exists(os.path.join(repo_dir, key.decode())):
                del index[key]
        index.write()
    porcelain.add(str(repo_dir), paths=paths)
    sha = porcelain.commit(str(repo_dir), message=message.encode(), author=b"T <t@example.com>",
                           committer=b"T <t@example.com>")
    return sha.decode() if isinstance(sha, bytes) else str(sha)


@pytest.fixture
def env(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    state = tmp_path / "state"
    commit(repo, {"manifests/guestbook.yaml": GUESTBOOK, "manifests/hello.yaml": HELLO}, "base")

    def run(*argv):
        return main(["--state-dir", str(state), *argv])

    def sync():
        rev = load_revision(str(repo), None, "manifests")
        assert not rev.problems, rev.problems
        with Store.open(state, writer=True) as s:
            return s.sync_revision(rev.sha, [to_k8s(o) for o in rev.objects])

    return repo, state, run, sync


def test_validate_valid_and_invalid(env, capsys):
    repo, _, run, _ = env
    assert run("validate", "--repo", str(repo)) == 0
    assert "3 object(s)" in capsys.readouterr().out
    commit(repo, {"manifests/guestbook.yaml": GUESTBOOK, "manifests/bad.yaml": BAD})
    assert run("validate", "--repo", str(repo)) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("manifests/bad.yaml:9: spec.containers[0].colour:") for line in out), out


def test_validate_unreadable_revision(env, capsys):
    repo, _, run, _ = env
    assert run("validate", "--repo", str(repo), "--rev", "no-such-branch") == 2


def test_diff_exit_codes(env, capsys):
    repo, state, run, sync = env
    assert run("diff", "--objects-only", "--repo", str(repo)) == 1  # empty store: everything is added
    out = capsys.readouterr().out
    assert "+++ git@" in out and "Pod/default/hello" in out
    sync()
    assert run("diff", "--objects-only", "--repo", str(repo)) == 0
    assert capsys.readouterr().out == ""
    commit(repo, {"manifests/guestbook.yaml": GUESTBOOK.replace("replicas: 3", "replicas: 5")})
    assert run("diff", "--objects-only", "--repo", str(repo)) == 1
    out = capsys.readouterr().out
    assert "-  replicas: 3\n+  replicas: 5\n" in out
    assert "--- live/Pod/default/hello\n+++ /dev/null\n" in out  # hello.yaml gone
    # defaults never show as changes, nor do store-owned fields
    rc_hunk = out.split("--- live/ReplicationController/default/frontend")[1].split("--- ")[0]
    assert [ln for ln in rc_hunk.splitlines() if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))] == \
        ["-  replicas: 3", "+  replicas: 5"]
    assert "uid:" not in out and "resourceVersion" not in out and "status:" not in out
    commit(repo, {"manifests/bad.yaml": BAD})
    assert run("diff", "--objects-only", "--repo", str(repo)) == 2


def test_invalid_revision_refused_changes_nothing(env, tmp_path):
    repo, state, run, sync = env
    sync()
    db = os.path.join(state, "state.db")

    def rows():
        c = sqlite3.connect(db)
        try:
            return c.execute("SELECT * FROM objects ORDER BY kind, namespace, name").fetchall()
        finally:
            c.close()

    before = rows()
    with Store.open(state) as s:
        applied = s.applied_revision()
    commit(repo, {"manifests/bad.yaml": BAD})
    rev = load_revision(str(repo), None, "manifests")
    assert rev.problems and not rev.objects
    with Store.open(state, writer=True) as s:
        s.record_refused(rev.sha, rev.problems)
        assert s.applied_revision() == applied
        [ev] = [e for e in s.events() if e["reason"] == "InvalidRevision"]
        assert ev["type"] == "Warning" and "manifests/bad.yaml:9" in ev["message"]
    assert rows() == before


def test_get_tables_and_json_list(env, capsys):
    repo, state, run, sync = env
    sync()
    assert run("get", "pods") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert out[1].split()[:4] == ["hello", "0/1", "Pending", "0"]
    assert run("get", "po", "-o", "wide") == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP",
                                                             "NODE"]
    assert run("get", "rc") == 0
    rc_out = capsys.readouterr().out.splitlines()
    assert rc_out[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert rc_out[1].split()[:4] == ["frontend", "3", "0", "0"]
    assert run("get", "svc", "-A") == 0
    svc_out = capsys.readouterr().out.splitlines()
    assert svc_out[0].split()[:6] == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"]
    assert "80:30001/TCP" in svc_out[1]

    assert run("get", "pods", "-o", "json") == 0
    lst = json.loads(capsys.readouterr().out)
    assert lst["apiVersion"] == "v1" and lst["kind"] == "List"
    [item] = lst["items"]
    assert set(item) >= {"apiVersion", "kind", "metadata", "spec", "status"}
    assert item["metadata"]["uid"] and item["metadata"]["creationTimestamp"]
    assert item["status"]["phase"] == "Pending"

    assert run("get", "pod", "hello", "-o", "json") == 0
    one = json.loads(capsys.readouterr().out)
    assert one["kind"] == "Pod" and one["metadata"]["name"] == "hello"
    assert run("get", "rc/frontend", "-o", "yaml") == 0
    assert yaml.safe_load(capsys.readouterr().out)["spec"]["replicas"] == 3
    assert run("get", "svc", "-o", "name") == 0
    assert capsys.readouterr().out == "service/frontend\n"
    assert run("get", "pods", "-l", "app=nothing") == 0
    assert "No resources found" in capsys.readouterr().err
    assert run("get", "pods", "missing") == 1
    assert 'pods "missing" not found' in capsys.readouterr().err
    assert run("get", "widgets") == 1


def test_describe_and_events(env, capsys):
    repo, state, run, sync = env
    sync()
    with Store.open(state, writer=True) as s:
        s.record_event(s.get("Pod", "default", "hello"), "FailedScheduling", "0/0 nodes are available", "Warning",
                       component="scheduler")
        s.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
               "status": {"conditions": [{"type": "Ready", "status": "True"}],
                          "addresses": [{"type": "InternalIP", "address": "198.18.0.11"}],
                          "nodeInfo": {"kubeletVersion": "gitkube-0.1.0", "osImage": "Debian"}}})
    assert run("describe", "pod", "hello") == 0
    out = capsys.readouterr().out
    for text in ("Name:", "Namespace:", "Status:", "Containers:", "GREETING:", "FailedScheduling", "Events:"):
        assert text in out, text
    assert run("describe", "rc", "frontend") == 0
    assert "Replicas:" in capsys.readouterr().out
    assert run("describe", "svc", "frontend") == 0
    assert "NodePort:" in capsys.readouterr().out
    assert run("describe", "no", "n1", "--no-probe") == 0
    assert "198.18.0.11" in capsys.readouterr().out
    assert run("describe", "pod", "nope") == 1
    capsys.readouterr()
    assert run("get", "nodes", "--no-probe", "-o", "wide") == 0
    nodes = capsys.readouterr().out.splitlines()
    assert nodes[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert nodes[1].split()[:2] == ["n1", "Ready"] and "198.18.0.11" in nodes[1]
    assert run("events") == 0
    ev = capsys.readouterr().out.splitlines()
    assert ev[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "pod/hello" in ev[1]
    assert run("events", "--for", "pod/hello") == 0
    assert "FailedScheduling" in capsys.readouterr().out
    assert run("get", "ev", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["kind"] == "Event"


def test_help_texts(capsys):
    for cmd in ("validate", "diff", "get", "describe", "events"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
    assert "--inventory" in capsys.readouterr().out
