"""Revisions are read from real dulwich repositories: refs, trees, extra files, and the loader's rules."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from _gitrepo import Link, commit_files
from gitkube.source import SourceError, load_directory, load_revision
from gitkube.source.loader import load_files

POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
{ns}spec:
  containers:
    - name: app
      image: gitkube/busybox:latest
"""


def pod(name: str, ns: str | None = None) -> bytes:
    return POD.format(name=name, ns=f"  namespace: {ns}\n" if ns else "").encode()


def names(rev) -> list[str]:
    return sorted(o.metadata.name for o in rev.objects)


def test_default_rev_is_the_checked_out_branch_and_refs_resolve(tmp_path: Path) -> None:
    repo = str(tmp_path / "wt")
    first = commit_files(repo, {"manifests/a.yaml": pod("a")}, tag="v1")
    second = commit_files(repo, {"manifests/a.yaml": pod("a"), "manifests/b.yaml": pod("b")})
    other = commit_files(repo, {"manifests/c.yaml": pod("c")}, branch="other")
    assert load_revision(repo).sha == second
    assert names(load_revision(repo)) == ["a", "b"]
    assert names(load_revision(repo, "v1")) == ["a"]  # annotated tag peeled to its commit
    assert load_revision(repo, "v1").sha == first
    assert names(load_revision(repo, "other")) == ["c"] and load_revision(repo, "other").sha == other
    assert load_revision(repo, first).sha == first
    assert load_revision(repo, first[:8]).sha == first
    assert load_revision(repo, "refs/heads/main").sha == second
    with pytest.raises(SourceError, match="unknown revision"):
        load_revision(repo, "nope")
    with pytest.raises(SourceError, match="not a Git repository"):
        load_revision(str(tmp_path / "missing"))


def test_bare_repository(tmp_path: Path) -> None:
    repo = str(tmp_path / "bare.git")
    sha = commit_files(repo, {"manifests/a.yaml": pod("a"), "inventory.yaml": b"nodes: []\n"}, bare=True)
    rev = load_revision(repo)
    assert rev.sha == sha and names(rev) == ["a"]
    assert rev.files == {"inventory.yaml": b"nodes: []\n"}


def test_path_and_file_selection(tmp_path: Path) -> None:
    repo = str(tmp_path / "r")
    commit_files(repo, {
        "manifests/a.yaml": pod("a"), "manifests/deep/er/b.yml": pod("b"), "manifests/README.md": b"# not yaml",
        "other/c.yaml": pod("c"), "manifests/link.yaml": Link("a.yaml"),
    })
    rev = load_revision(repo)
    assert rev.problems == [] and names(rev) == ["a", "b"]  # an inside symlink does not define twice
    assert rev.files == {}
    assert names(load_revision(repo, path="other")) == ["c"]
    assert names(load_revision(repo, path="")) == ["a", "b", "c"]
    missing = load_revision(repo, path="nowhere")
    assert [p.message for p in missing.problems] == [f"no such directory in revision {missing.sha[:12]}"]
    assert rev.origins[("Pod", "default", "b")] == ("manifests/deep/er/b.yml", 4)


def test_namespaces_defined_in_the_revision(tmp_path: Path) -> None:
    ns = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: staging\n"
    repo = str(tmp_path / "r")
    commit_files(repo, {"manifests/ns.yaml": ns, "manifests/p.yaml": pod("p", "staging"),
                        "manifests/q.yaml": pod("p")})  # same name, other namespace: not a duplicate
    rev = load_revision(repo)
    assert rev.problems == []
    assert sorted((o.kind, o.metadata.namespace or "") for o in rev.objects) == [
        ("Namespace", ""), ("Pod", "default"), ("Pod", "staging")]


def test_multi_document_list_and_json() -> None:
    multi = pod("a") + b"---\n" + pod("b") + b"---\n"
    lst = b"""apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: {name: s}
    spec:
      ports: [{port: 80}]
  - apiVersion: v1
    kind: Pod
    metadata: {name: c}
    spec: {containers: [{name: app, image: x}]}
"""
    js = b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "d"}, "spec": {"containers": [{"name": "x", "image": "y"}]}}'
    loaded = load_files([("m/multi.yaml", multi), ("m/list.yaml", lst), ("m/p.json", js)])
    assert loaded.problems == []
    assert sorted(o.metadata.name for o in loaded.objects) == ["a", "b", "c", "d", "s"]
    bad = lst.replace(b"port: 80", b"port: 70000")
    assert [str(p) for p in load_files([("m/list.yaml", bad)]).problems] == [
        "m/list.yaml:8: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"]


def test_yaml_features_kept_and_refused() -> None:
    anchors = b"""apiVersion: v1
kind: Pod
metadata:
  name: anchors
  labels: &l {app: web}
  annotations:
    when: 2024-01-01
spec:
  nodeSelector: *l
  containers:
    - &c
      name: one
      image: gitkube/busybox:latest
    - <<: *c
      name: two
"""
    (obj,) = load_files([("a.yaml", anchors)]).objects
    assert obj.spec.nodeSelector == {"app": "web"}
    assert obj.metadata.annotations == {"when": "2024-01-01"}  # timestamps stay text, as Kubernetes keeps them
    assert [c.name for c in obj.spec.containers] == ["one", "two"]
    recursive = b"a: &a [*a]\n"
    assert "recursive alias" in load_files([("r.yaml", recursive)]).problems[0].message
    assert load_files([("e.yaml", b"---\n---\n")]).objects == []


def test_limits_are_configurable() -> None:
    big = pod("a") + b"#" * 100 + b"\n"
    assert "limit of 100 bytes" in load_files([("a.yaml", big)], max_bytes=100).problems[0].message
    bomb = b"a: &a [1, 2, 3]\nb: [*a, *a, *a]\n"
    p = load_files([("b.yaml", bomb)], max_alias_nodes=5).problems[0]
    assert (p.line, "YAML bomb" in p.message) == (2, True)


def test_a_bom_is_accepted_and_crlf_lines_count() -> None:
    crlf = b"\xef\xbb\xbf" + pod("a").replace(b"\n", b"\r\n").replace(b"busybox:latest", b"busybox:latest\r\n      imagee: x")
    (p,) = load_files([("a.yaml", crlf)]).problems
    assert (p.line, p.field) == (9, "spec.containers[0].imagee")


def test_load_directory(tmp_path: Path) -> None:
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "a.yaml").write_bytes(pod("a"))
    (tmp_path / "m" / "sub" / "b.json").write_text(
        '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}, '
        '"spec": {"containers": [{"name": "x", "image": "y"}]}}')
    (tmp_path / "outside.yaml").write_bytes(pod("z"))
    rev = load_directory(str(tmp_path / "m"))
    assert rev.problems == [] and names(rev) == ["a", "b"] and rev.sha is None
    os.symlink(tmp_path / "outside.yaml", tmp_path / "m" / "evil.yaml")
    rev = load_directory(str(tmp_path / "m"))
    assert [(p.path, p.line) for p in rev.problems] == [("evil.yaml", None)] and rev.objects == []


def test_example_manifests_are_valid() -> None:
    from gitkube.source.secrets import load_identities

    root = Path(__file__).resolve().parents[2] / "manifests"
    assert any("no identity was given" in p.message for p in load_directory(str(root)).problems)
    rev = load_directory(str(root), identities=load_identities(str(root / "DEMO-ONLY-age-identity.txt")))
    assert rev.problems == []
    assert rev.config[("Secret", "default", "redis-auth")].data["username"] == b"guestbook"
    by_name = {(o.kind, o.metadata.name): o for o in rev.objects}
    assert by_name[("ReplicationController", "redis-slave")].spec.replicas == 2
    assert by_name[("ReplicationController", "frontend")].spec.replicas == 3
    assert by_name[("Service", "frontend")].spec.type == "NodePort"
    hello = by_name[("Pod", "hello-world")]
    assert hello.spec.restartPolicy == "OnFailure" and hello.spec.containers[0].imagePullPolicy == "Never"
    for o in rev.objects:
        spec = o.spec.template.spec if o.kind == "ReplicationController" else getattr(o, "spec", None)
        for c in getattr(spec, "containers", ()):
            assert c.imagePullPolicy in ("IfNotPresent", "Never")  # no registry is ever touched
