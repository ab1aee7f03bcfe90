"""The manifest cache is invisible: a revision reads the same with the cache, without it, with it cold, warm, and
damaged (damaged entries are dropped and refilled); only changed subtrees and blobs are parsed again."""
from __future__ import annotations

import contextlib
import io
import os
import sqlite3
from pathlib import Path

import pytest

from _gitrepo import Link, commit_files
from gitkube.api import to_k8s
from gitkube.cli import main
from gitkube.source import load_revision
from gitkube.source import loader as loader_mod
from gitkube.source.cache import CACHE_FILE
from gitkube.store import Store

POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app: {name}}}
spec:
  containers:
  - name: app
    image: gitkube/busybox:{tag}
"""
SVC = """apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: team
spec:
  selector: {app: a}
  ports:
  - port: 80
"""
NS = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n"


def pod(name: str, ns: str = "team", tag: str = "1") -> str:
    return POD.format(name=name, ns=ns, tag=tag)


BASE = {
    "manifests/ns.yaml": NS,
    "manifests/team/a.yaml": pod("a"),
    "manifests/team/b.yml": pod("b"),
    "manifests/team/deep/c.json": '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c", '
                                  '"namespace": "team"}, "spec": {"ports": [{"port": 81}]}}',
    "manifests/team/svc.yaml": SVC,
    "manifests/other/d.yaml": pod("d", "default"),
    "manifests/README.md": "not a manifest",
}


def revisions(repo: str) -> dict[str, str]:
    """A sequence of revisions: valid ones, one file changed, a duplicate, a missing namespace, a bad symlink."""
    shas = {"base": commit_files(repo, BASE)}
    shas["changed"] = commit_files(repo, {**BASE, "manifests/team/a.yaml": pod("a", tag="2")})
    shas["moved"] = commit_files(repo, {**{k: v for k, v in BASE.items() if k != "manifests/team/b.yml"},
                                        "manifests/other/b.yml": pod("b")})
    shas["duplicate"] = commit_files(repo, {**BASE, "manifests/other/a-again.yaml": pod("a")})
    shas["no-namespace"] = commit_files(repo, {k: v for k, v in BASE.items() if k != "manifests/ns.yaml"})
    shas["symlink"] = commit_files(repo, {**BASE, "manifests/team/evil.yaml": Link("../../etc/passwd"),
                                          "manifests/team/ok.yaml": Link("a.yaml")})
    shas["broken"] = commit_files(repo, {**BASE, "manifests/team/a.yaml": "kind: Pod\nmetadata: [\n"})
    shas["back"] = commit_files(repo, BASE)
    return shas


def view(rev) -> tuple:
    """Everything a caller can see of a revision."""
    return (rev.sha, [str(p) for p in rev.problems], rev.origins, [to_k8s(o) for o in rev.objects],
            rev.documents(), rev.digests(), rev.kinds(), rev.files)


def rows(state: str) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(os.path.join(state, CACHE_FILE))) as c:
        return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("blobs", "trees")}


def damage(state: str, how: str) -> None:
    path = os.path.join(state, CACHE_FILE)
    if how == "file":
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)
        with open(path, "wb") as f:
            f.write(b"this is not a database" * 100)
        return
    with contextlib.closing(sqlite3.connect(path)) as c:
        if how == "flip":  # one byte changed inside every entry: checksums no longer match
            for table, col in (("blobs", "meta"), ("blobs", "docs"), ("trees", "files")):
                for key, value in c.execute(f"SELECT key, {col} FROM {table}").fetchall():
                    bad = bytearray(value)
                    bad[-3] ^= 0x01
                    c.execute(f"UPDATE {table} SET {col} = ? WHERE key = ?", (bytes(bad), key))
        elif how == "shape":  # well sealed, wrong shape
            from gitkube.source.cache import _seal
            c.execute("UPDATE blobs SET meta = ?, docs = ?", (_seal({"x": 1}), _seal([1, 2])))
            c.execute("UPDATE trees SET files = ?", (_seal([["a", "b", [[1]]], []]),))
        c.commit()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[str, dict[str, str]]:
    path = str(tmp_path_factory.mktemp("cache") / "repo")
    return path, revisions(path)


@pytest.mark.parametrize("damage_how", [None, "flip", "shape", "file"])
def test_same_results_with_and_without_the_cache(repo, tmp_path: Path, damage_how) -> None:
    path, shas = repo
    state = str(tmp_path / "state")
    os.makedirs(state)
    for name, sha in shas.items():
        without = view(load_revision(path, sha))
        cold = view(load_revision(path, sha, cache_dir=state))
        if damage_how is not None:
            damage(state, damage_how)
        warm = view(load_revision(path, sha, cache_dir=state))
        again = view(load_revision(path, sha, cache_dir=state))
        assert cold == without, name
        assert warm == without, name
        assert again == without, name
    assert (tmp_path / "state" / CACHE_FILE).exists()


def test_damaged_entries_are_dropped_and_refilled(repo, tmp_path: Path) -> None:
    path, shas = repo
    state = str(tmp_path / "state")
    os.makedirs(state)
    load_revision(path, shas["base"], cache_dir=state)
    filled = rows(state)
    assert filled["blobs"] == 6 and filled["trees"] == 4  # README.md is not a manifest; trees: manifests, team, deep, other
    damage(state, "flip")
    rev = load_revision(path, shas["base"], cache_dir=state)  # root tree dropped, then its subtrees, blobs...
    assert rev.ok and len(rev.documents()) == 6
    assert rows(state) == filled  # ...re-parsed and written again
    # Documents asked for after their entry was damaged come from the repository.
    rev = load_revision(path, shas["base"], cache_dir=state)
    damage(state, "flip")
    assert sorted(d["metadata"]["name"] for d in rev.documents()) == ["a", "b", "c", "d", "team", "web"]


def test_only_changed_blobs_are_parsed_and_unchanged_trees_not_opened(repo, tmp_path: Path, monkeypatch) -> None:
    path, shas = repo
    state = str(tmp_path / "state")
    os.makedirs(state)
    parsed: list[str] = []
    real = loader_mod.parse_file

    def counting(p, *a, **k):
        parsed.append(p)
        return real(p, *a, **k)

    monkeypatch.setattr("gitkube.source.parse_file", counting)
    load_revision(path, shas["base"], cache_dir=state)
    assert len(parsed) == 6
    parsed.clear()
    rev = load_revision(path, shas["base"], cache_dir=state)
    assert parsed == [] and rev.ok and rev.kinds() == {"Namespace": 1, "Pod": 3, "Service": 2}
    rev = load_revision(path, shas["changed"], cache_dir=state)
    assert parsed == ["manifests/team/a.yaml"]
    assert [d["spec"]["containers"][0]["image"] for d in rev.documents() if d["metadata"]["name"] == "a"] == [
        "gitkube/busybox:2"]
    parsed.clear()
    assert load_revision(path, shas["moved"], cache_dir=state).ok and parsed == []  # same blob, new place


def _cache_bytes(state: str) -> bytes:
    with contextlib.closing(sqlite3.connect(os.path.join(state, CACHE_FILE))) as c:
        return b"".join(v.encode() if isinstance(v, str) else bytes(v)
                        for t, cols in (("blobs", "key, meta, docs"), ("trees", "key, files"))
                        for row in c.execute(f"SELECT {cols} FROM {t}") for v in row)


def test_secrets_encrypted_files_and_problem_files_are_not_cached(tmp_path: Path) -> None:
    import pyrage

    from gitkube.source.secrets import Identities, encrypt

    key = pyrage.x25519.Identity.generate()
    ids = Identities("k", (key,), b"digest-key")
    secret = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: hunter2-plain\n")
    hidden = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  token: in-an-age-file\n")
    path, state = str(tmp_path / "repo"), str(tmp_path / "state")
    os.makedirs(state)
    sha = commit_files(path, {"manifests/a.yaml": pod("a", "default"), "manifests/s.yaml": secret,
                              "manifests/c.yaml.age": encrypt(hidden.encode(), [str(key.to_public())]),
                              ".gitkube-plaintext-secrets": ""})
    without = load_revision(path, sha, identities=ids)
    for _ in range(2):
        rev = load_revision(path, sha, identities=ids, cache_dir=state)
        assert rev.ok and view(rev) == view(without)
        assert repr(rev.config) == repr(without.config) and rev.config[("Secret", "default", "s")]
    cached = _cache_bytes(state)
    assert b"busybox" in cached  # the plain Pod file is cached...
    assert b"hunter2" not in cached and b"in-an-age-file" not in cached  # ...never a Secret or an age file
    assert rows(state) == {"blobs": 1, "trees": 0}  # its tree holds files that are not cached
    bad = commit_files(path, {"manifests/a.yaml": pod("a", "default"), "manifests/bad.yaml": "kind: [\n"})
    assert not load_revision(path, bad, cache_dir=state).ok
    assert rows(state) == {"blobs": 1, "trees": 0}  # a file with problems is not cached either


def test_no_state_dir_no_cache(repo, tmp_path: Path) -> None:
    path, shas = repo
    missing = str(tmp_path / "nowhere")
    assert load_revision(path, shas["base"], cache_dir=missing).ok
    assert not os.path.exists(missing)  # a reader never creates the state dir


def _diff(state: str, path: str, sha: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--state-dir", state, "diff", "--repo", path, "--rev", sha, "--objects-only"])
    return rc, out.getvalue(), err.getvalue()


def test_diff_is_the_same_with_and_without_the_cache(repo, tmp_path: Path) -> None:
    path, shas = repo
    state = str(tmp_path / "state")
    os.makedirs(state)
    base = load_revision(path, shas["base"])
    with Store.open(state, writer=True) as s:
        s.sync_revision(base.sha, [to_k8s(o) for o in base.objects])
    for name in ("base", "changed", "moved", "back"):
        with_cache = _diff(state, path, shas[name])
        os.unlink(os.path.join(state, CACHE_FILE))
        without = _diff(state, path, shas[name])
        assert with_cache == without, name
        assert with_cache[0] == (0 if name in ("base", "back", "moved") else 1), with_cache
    assert "busybox:2" in _diff(state, path, shas["changed"])[1]
