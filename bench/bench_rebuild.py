"""Rebuilding a lost state DB from the nodes: 300 pods on 3 nodes, and the Docker calls it takes (target: one list
call per node, plus an archive read of one node's proxy config only where Services exist).

Run (root): python bench/bench_rebuild.py [--pods 300] [--baseline-pods 30] [--sandbox-id 3]

The pods' containers (a sandbox and an app container each, labelled exactly as gitkube's runtime labels them, for
a ReplicationController in a Git repository) are created on the sandbox's 3 nodes through the Docker API, not
started: the rebuild reads labels and states only, so it does the same work for them. Then `gitkube state rebuild`
runs as an operator runs it (a fresh process) with the state DB gone, and the bench prints its wall time, the
rebuild's own time and Docker calls, and the pods it adopted; the same for `--baseline-pods` in the same run, as a
ratio. The sandbox is brought up at the start and torn down at the end.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gitkube.api import parse_object  # noqa: E402
from gitkube.reconcile.podlabels import pod_labels  # noqa: E402
from gitkube.reconcile.podsync import container_hash  # noqa: E402

IMAGE = "gitkube/busybox:latest"
NODES = ("n1", "n2", "n3")


def run(argv, timeout, env=None, check=True):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv[:6]))} … exited {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r


def rc_manifest(name: str, replicas: int) -> dict:
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"app": name},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "Never",
                                                           "command": ["sleep", "100000"]}]}}}}


class Bench:
    def __init__(self, sid: int, work: Path):
        self.sid, self.work = sid, work
        self.env = {**os.environ, "GITKUBE_SANDBOX_ID": str(sid)}
        self.inventory: Path | None = None
        self.engines: dict[str, docker.APIClient] = {}  # each node's engine, opened once the sandbox is up

    def gk(self, state: Path, *args, timeout=600, check=True):
        return run([sys.executable, "-m", "gitkube", "--state-dir", str(state), *args], timeout, self.env, check)

    def up(self) -> None:
        r = self.gk(self.work / "sb", "sandbox", "--id", str(self.sid), "up", "--nodes", "3")
        self.inventory = Path(r.stdout.strip().splitlines()[-1])
        self.engines = {n: docker.APIClient(base_url=f"unix:///var/lib/gitkube/sandbox/gk{self.sid}/{n}/docker.sock",
                                            version="1.41", timeout=120) for n in NODES}

    def down(self) -> None:
        self.gk(self.work / "sb", "sandbox", "--id", str(self.sid), "down", check=False)

    def repo(self, name: str, replicas: int) -> Path:
        repo = self.work / f"repo-{name}"
        (repo / "manifests").mkdir(parents=True)
        (repo / "manifests" / "rc.yaml").write_text(yaml.safe_dump(rc_manifest(name, replicas)))
        git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        run([*git, "init", "-q", "-b", "main"], 30)
        run([*git, "add", "-A"], 30)
        run([*git, "commit", "-q", "-m", "bench"], 30)
        return repo

    def make_pods(self, name: str, replicas: int, cluster_id: str) -> None:
        """The containers of `replicas` pods of RC `name`, spread over the nodes, labelled as the runtime does."""
        rc_uid = str(uuid.uuid4())
        tmpl = rc_manifest(name, replicas)["spec"]["template"]

        def one(i: int) -> None:
            node = NODES[i % 3]
            pod_name, uid = f"{name}-{uuid.uuid4().hex[:5]}", str(uuid.uuid4())
            pod = parse_object({"apiVersion": "v1", "kind": "Pod",
                                "metadata": {"name": pod_name, "namespace": "default", "labels": {"app": name},
                                             "creationTimestamp": "2026-01-01T00:00:00Z",
                                             "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicationController",
                                                                  "name": name, "uid": rc_uid, "controller": True}]},
                                "spec": {**tmpl["spec"], "nodeName": node}})
            api = self.engines[node]
            for cname, chash in (("POD", ""), ("app", container_hash(pod.spec.containers[0]))):
                labels = pod_labels(pod, uid, node, cname, chash, 0, cluster_id, "bench")
                api.create_container(IMAGE, command=["sleep", "100000"], labels=labels,
                                     name=f"k8s_{cname}_{pod_name}_default_{uid}_0")

        with cf.ThreadPoolExecutor(max_workers=12) as pool:
            list(pool.map(one, range(replicas)))

    def remove_all(self) -> None:
        for api in self.engines.values():
            ids = [c["Id"] for c in api.containers(all=True, filters={"label": "io.gitkube.managed=true"})]
            with cf.ThreadPoolExecutor(max_workers=12) as pool:
                list(pool.map(lambda cid: api.remove_container(cid, force=True), ids))

    def rebuild(self, name: str, pods: int) -> dict:
        state = self.work / f"state-{name}"
        state.mkdir()
        cluster_id = uuid.uuid4().hex[:16]
        (state / "cluster-id").write_text(cluster_id + "\n")
        repo = self.repo(name, pods)
        t0 = time.perf_counter()
        self.make_pods(name, pods, cluster_id)
        made = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = self.gk(state, "state", "rebuild", "--repo", str(repo), "--inventory", str(self.inventory))
        wall = time.perf_counter() - t0
        m = re.search(r"(\d+) pod\(s\) adopted; (\d+) not wanted.*?(\d+) Docker call\(s\) in ([\d.]+)s", r.stdout)
        if not m:
            raise SystemExit(f"unexpected output of state rebuild:\n{r.stdout}\n{r.stderr}")
        self.remove_all()
        missed = re.findall(r"node (\S+) not listed: ([^;]+)", r.stdout)
        return {"pods": pods, "adopted": int(m.group(1)), "unwanted": int(m.group(2)), "calls": int(m.group(3)),
                "rebuild_s": float(m.group(4)), "wall_s": wall, "made_s": made, "missed": missed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=300)
    ap.add_argument("--baseline-pods", type=int, default=30)
    ap.add_argument("--sandbox-id", type=int, default=int(os.environ.get("GITKUBE_SANDBOX_ID", "3")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gk-bench-rebuild-") as tmp:
        b = Bench(args.sandbox_id, Path(tmp))
        b.up()
        try:
            b.remove_all()
            base = b.rebuild("base", args.baseline_pods)
            big = b.rebuild("big", args.pods)
        finally:
            b.remove_all()
            b.down()
    for r in (base, big):
        print(f"rebuild of {r['pods']} pods on 3 nodes: {r['adopted']} adopted, {r['unwanted']} not wanted; "
              f"rebuild {r['rebuild_s']:.2f}s, `gitkube state rebuild` wall {r['wall_s']:.2f}s; "
              f"Docker calls: {r['calls']} ({r['calls'] / 3:.1f} per node; target 1 list call per node)"
              + "".join(f"; node {n} NOT LISTED: {why}" for n, why in r["missed"]))
    print(f"ratio {args.pods} pods / {args.baseline_pods} pods: rebuild {big['rebuild_s'] / base['rebuild_s']:.2f}x, "
          f"wall {big['wall_s'] / base['wall_s']:.2f}x (pods {args.pods / args.baseline_pods:.0f}x)")
    return 0 if big["adopted"] == args.pods and big["calls"] <= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
