"""Benchmark: validate and diff on a generated repo of 5,000 manifests, against plain YAML parsing of the same files.

Run: python bench/bench_desired_state.py [--objects N] [--repeat R]   (from any directory)
Prints seconds per step (best of R), the ratio to libyaml's parse of the same files, and peak RSS. Everything
it makes lives in one temp dir, removed at the end; `diff` gets an explicit (absent) inventory.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import sys
import tempfile
import time

import yaml
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from gitkube.api import to_k8s
from gitkube.cli import main
from gitkube.source import load_revision
from gitkube.source.cache import CACHE_FILE
from gitkube.store import Store

NAMESPACES = [f"team-{i}" for i in range(10)]


def manifest(i: int, version: int = 1) -> tuple[str, str]:
    """The i-th generated manifest (path, YAML): 60% Pods, 20% RCs, 20% Services, spread over the namespaces."""
    ns = NAMESPACES[i % len(NAMESPACES)]
    app = f"app-{i // 5}"
    kind = ("Pod", "Pod", "Pod", "ReplicationController", "Service")[i % 5]
    if kind == "Pod":
        body = f"""apiVersion: v1
kind: Pod
metadata:
  name: pod-{i}
  namespace: {ns}
  labels: {{app: {app}, tier: backend}}
spec:
  containers:
  - name: main
    image: registry.local/{app}:{version}.0
    ports:
    - containerPort: 8080
    env:
    - name: MODE
      value: production
    - name: POD_IP
      valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
    resources:
      requests: {{cpu: 100m, memory: 64Mi}}
      limits: {{cpu: 500m, memory: 128Mi}}
    readinessProbe:
      httpGet: {{path: /healthz, port: 8080}}
      periodSeconds: 5
"""
    elif kind == "ReplicationController":
        body = f"""apiVersion: v1
kind: ReplicationController
metadata:
  name: rc-{i}
  namespace: {ns}
spec:
  replicas: {1 + i % 3}
  selector: {{app: {app}, tier: web}}
  template:
    metadata:
      labels: {{app: {app}, tier: web}}
    spec:
      containers:
      - name: web
        image: registry.local/{app}-web:{version}.0
        ports:
        - containerPort: 80
        livenessProbe:
          tcpSocket: {{port: 80}}
          initialDelaySeconds: 5
"""
    else:
        body = f"""apiVersion: v1
kind: Service
metadata:
  name: svc-{i}
  namespace: {ns}
spec:
  selector: {{app: {app}, tier: web}}
  ports:
  - name: http
    port: 80
    targetPort: 80
"""
    return f"manifests/{ns}/{kind.lower()}-{i}.yaml", body


def commit_tree(repo: Repo, files: dict[str, bytes], parent: bytes | None, message: str) -> str:
    """Commits `files` as the whole tree (no working tree needed) and moves the branch to it."""
    dirs: dict[str, dict[str, bytes]] = {}
    for path, data in files.items():
        d, _, name = path.rpartition("/")
        blob = Blob.from_string(data)
        repo.object_store.add_object(blob)
        dirs.setdefault(d, {})[name] = blob.id

    def build(prefix: str) -> bytes:
        tree = Tree()
        for name, blob_id in dirs.get(prefix, {}).items():
            tree.add(name.encode(), 0o100644, blob_id)
        children = {p[len(prefix) + 1 if prefix else 0:].split("/")[0] for p in dirs if
                    p != prefix and (p.startswith(prefix + "/") if prefix else True)}
        for child in sorted(c for c in children if c):
            tree.add(child.encode(), 0o040000, build(f"{prefix}/{child}" if prefix else child))
        repo.object_store.add_object(tree)
        return tree.id

    c = Commit()
    c.tree = build("")
    c.parents = [parent] if parent else []
    c.author = c.committer = b"bench <bench@example.com>"
    c.author_time = c.commit_time = int(time.time())
    c.author_timezone = c.commit_timezone = 0
    c.message = message.encode()
    repo.object_store.add_object(c)
    repo.refs[b"refs/heads/main"] = c.id
    return c.id.decode()


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def quiet(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


def run(n: int, repeat: int) -> None:
    tmp = tempfile.mkdtemp(prefix="gitkube-bench-")
    try:
        _run(tmp, n, repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(tmp: str, n: int, repeat: int) -> None:
    """The bench proper, everything inside `tmp`: the repo, the state dirs and a missing inventory (so `diff`
    compares objects only, wherever the bench is run from)."""
    repo_dir, state = os.path.join(tmp, "repo"), os.path.join(tmp, "state")
    os.makedirs(repo_dir)
    repo = Repo.init(repo_dir)
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    files = dict(manifest(i) for i in range(n))
    for ns in NAMESPACES:
        files[f"manifests/{ns}/namespace.yaml"] = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
    base_files = {p: t.encode() for p, t in files.items()}
    base = commit_tree(repo, base_files, None, "base")
    step = 100  # 1% of the objects get a new image; every repeat gets its own new version (cold for the cache)
    changed = []
    for r in range(repeat):
        changed_files = dict(base_files)
        for i in range(0, n, step):
            path, text = manifest(i, version=2 + r)
            changed_files[path] = text.encode()
        changed.append(commit_tree(repo, changed_files, repo.refs[b"refs/heads/main"], f"1% changed ({r})"))
    repo.close()
    total_bytes = sum(map(len, base_files.values()))
    print(f"repo: {len(base_files)} files, {total_bytes / 1e6:.1f} MB, 1% change = {len(range(0, n, step))} objects")
    inventory = os.path.join(tmp, "no-inventory.yaml")  # absent: objects only, never ./inventory.yaml
    src = ["--repo", repo_dir, "--path", "manifests", "--inventory", inventory, "--objects-only"]

    t_cyaml, _ = best(lambda: [yaml.load(b, Loader=yaml.CSafeLoader) for b in base_files.values()], repeat)
    t_yaml, _ = best(lambda: [yaml.safe_load(b) for b in base_files.values()], 1)
    t_load, rev = best(lambda: load_revision(repo_dir, base, "manifests"), 1)

    def cold_cache_load():
        shutil.rmtree(state, ignore_errors=True)
        os.makedirs(state)
        return load_revision(repo_dir, base, "manifests", cache_dir=state)

    t_cold, _ = best(cold_cache_load, 1)
    t_warm, _ = best(lambda: load_revision(repo_dir, base, "manifests", cache_dir=state), repeat)

    def sync():
        with Store.open(state, writer=True) as s:
            return s.sync_revision(rev.sha, [to_k8s(o) for o in rev.objects])

    t_sync, first = best(sync, 1)
    t_resync, again = best(sync, repeat)
    t_val, rc_val = best(lambda: quiet(["--state-dir", state, "validate", *src[:6], "--rev", base]), repeat)
    t_diff0, rc0 = best(lambda: quiet(["--state-dir", state, "diff", *src, "--rev", base]), repeat)
    it = iter(changed)
    t_diff1, rc1 = best(lambda: quiet(["--state-dir", state, "diff", *src, "--rev", next(it)]), repeat)

    def uncached_diff():
        os.unlink(os.path.join(state, CACHE_FILE))
        return quiet(["--state-dir", state, "diff", *src, "--rev", base])

    t_diffc, rcc = best(uncached_diff, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def row(name, t, extra=""):
        print(f"  {name:<38} {t:7.3f} s   {t / t_cyaml:6.3f}x libyaml parse   {extra}")

    print(f"best of {repeat}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    row("libyaml parse (yaml CSafeLoader)", t_cyaml)
    row("yaml.safe_load (pure Python)", t_yaml)
    row("load, no cache", t_load, f"{len(rev.objects)} objects, {len(rev.problems)} problems")
    row("cold load (filling the cache)", t_cold)
    row("load, cached, no change", t_warm)
    row("store sync, first", t_sync, f"{len(first.added)} added")
    row("store sync, unchanged", t_resync, f"{len(again.unchanged)} unchanged")
    row("validate, cached", t_val, f"exit {rc_val}")
    row("diff, no change", t_diff0, f"exit {rc0}")
    row("diff, 1% changed", t_diff1, f"exit {rc1}")
    row("diff, no change, cache deleted", t_diffc, f"exit {rcc}")
    r0, r1 = t_diff0 / t_cyaml, t_diff1 / t_cyaml
    print(f"  peak RSS {peak:.0f} MB; targets: diff no change <= 0.1x: {r0:.3f}x {'met' if r0 <= 0.1 else 'MISSED'}; "
          f"diff 1% changed <= 0.15x: {r1:.3f}x {'met' if r1 <= 0.15 else 'MISSED'}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    run(a.objects, a.repeat)
