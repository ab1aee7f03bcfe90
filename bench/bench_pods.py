"""Pods on nodes: start N pods through gitkube vs the same containers one by one with the docker CLI over SSH,
and the Docker API calls of a no-op sync pass with 100 pods. On its own sandbox fleet (id 6 by default).

Run (root): python bench/bench_pods.py [--pods 30] [--noop-pods 100] [--sandbox-id 6]

1. gitkube: N pods (one `sleep` container each, no nodeName: the scheduler spreads them over the 3 nodes) committed
   to a Git repo, then `gitkube apply --wait` as an operator runs it (a fresh process: Python start-up, revision
   read, store, scheduling, one infra + one app container per pod, status), timed until it exits 0.
   Baseline, in the same run: the same N containers started one after another with the OpenSSH client,
   `ssh -i KEY -o UserKnownHostsFile=KNOWN root@NODE docker run -d ...` round-robin over the nodes (one app
   container each, no infra container: the baseline does less work than gitkube). Printed as a ratio gitkube/ssh
   (target <= 0.3).
   Floor, in the same run: the same work as gitkube's (per pod an infra container on the engine's bridge and an app
   container in its network namespace, created and started) sent straight to each node's engine socket from this
   host with the docker SDK, 8 pods at a time per node and the nodes in parallel, as gitkube's node actions run, but
   with no SSH, no Git, no store, no scheduling. It is what this machine's engines need for the containers alone;
   gitkube/floor is gitkube's own overhead.
2. `--noop-pods` pods (default 100) applied, then passes run in-process with the controller: the Docker API calls
   each node's sync made (PassReport.api_calls) in a cold pass (fresh process: inspect caches empty) and in warm
   no-op passes, plus all Docker calls of the pass (heartbeat info/version included) from NodeDocker.calls.
The sandbox is brought up at the start and torn down at the end (also on failure). Not a timed test.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGE = "gitkube/busybox:latest"


def run(argv, timeout, env=None, check=True, cwd=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv[:6]))} … exited {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r


class Bench:
    def __init__(self, sid: int, work: Path):
        self.sid = sid
        self.work = work
        self.state = work / "state"
        self.repo = work / "repo"
        self.env = {**os.environ, "GITKUBE_SANDBOX_ID": str(sid)}
        self.inventory: Path | None = None

    def gk(self, *args, timeout=600, check=True):
        return run([sys.executable, "-m", "gitkube", "--state-dir", str(self.state), *args], timeout, env=self.env,
                   check=check, cwd=ROOT)

    def up(self) -> None:
        r = self.gk("sandbox", "--id", str(self.sid), "up", "--nodes", "3", timeout=600)
        self.inventory = Path(r.stdout.strip().splitlines()[-1])
        (self.repo / "manifests").mkdir(parents=True)
        (self.repo / "manifests" / "README.md").write_text("bench\n")
        self.git("init", "-q", "-b", "main")
        self.commit("init")

    def down(self) -> None:
        self.gk("sandbox", "--id", str(self.sid), "down", timeout=600, check=False)

    def git(self, *args):
        run(["git", "-C", str(self.repo), "-c", "user.name=bench", "-c", "user.email=bench@gitkube.test", *args], 60)

    def commit(self, msg: str) -> None:
        self.git("add", "-A", "manifests")
        self.git("commit", "-q", "--allow-empty", "-m", msg)

    def set_pods(self, prefix: str, n: int) -> None:
        pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{prefix}-{i:03d}", "labels": {"bench": prefix}},
                 "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                     {"name": "c", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}}
                for i in range(n)]
        f = self.repo / "manifests" / "pods.yaml"
        if n:
            f.write_text(yaml.safe_dump_all(pods))
        else:
            f.unlink(missing_ok=True)
        self.commit(f"{n} {prefix} pods")

    def apply(self, *extra, timeout=600):
        return self.gk("apply", "--repo", str(self.repo), "--inventory", str(self.inventory), *extra,
                       "--timeout", str(timeout - 30), timeout=timeout)

    def nodes(self) -> list[tuple[str, str]]:
        inv = yaml.safe_load(self.inventory.read_text())
        return [(n["name"], n["address"]["host"]) for n in inv["nodes"]]

    def ssh(self, host: str, *cmd: str, timeout=60):
        d = f"/var/lib/gitkube/sandbox/gk{self.sid}"
        return run(["ssh", "-i", f"{d}/id_ed25519", "-o", f"UserKnownHostsFile={d}/known_hosts", "-o", "BatchMode=yes",
                    f"root@{host}", *cmd], timeout)


def bench_start(b: Bench, n: int) -> dict:
    nodes = b.nodes()
    assert all(h.startswith("198.18.") for _, h in nodes), nodes
    # Warm-up outside the timings: one SSH round trip per node (host keys, sshd, docker CLI), nothing started.
    for _, host in nodes:
        b.ssh(host, "docker", "version", "--format", "{{.Server.Version}}")

    # gitkube
    b.set_pods("gk", n)
    t = time.monotonic()
    r = b.apply("--wait", timeout=600)
    t_gk = time.monotonic() - t
    pods = yaml.safe_load(b.gk("get", "pods", "-o", "json").stdout)["items"]
    running = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")
    per_node: dict[str, int] = {}
    for p in pods:
        per_node[p["spec"].get("nodeName")] = per_node.get(p["spec"].get("nodeName"), 0) + 1

    # baseline: docker run over SSH, one by one
    t = time.monotonic()
    for i in range(n):
        _, host = nodes[i % len(nodes)]
        b.ssh(host, "docker", "run", "-d", "--name", f"bench-ssh-{i:03d}", IMAGE, "sleep", "3600")
    t_ssh = time.monotonic() - t

    t_floor = bench_floor(b, n)

    # clean up both
    for _, host in nodes:
        ids = b.ssh(host, "docker", "ps", "-aq", "--filter", "name=bench-ssh-").stdout.split()
        if ids:
            b.ssh(host, "docker", "rm", "-f", *ids, timeout=120)
    b.set_pods("gk", 0)
    b.apply(timeout=300)
    return {"n": n, "gitkube_s": t_gk, "ssh_s": t_ssh, "floor_s": t_floor, "running": running, "per_node": per_node,
            "apply_tail": r.stderr.strip().splitlines()[-1:]}


def bench_floor(b: Bench, n: int, per_node_concurrency: int = 8) -> float:
    """Seconds to create and start n pods' containers (infra on the bridge + app in its netns) straight through the
    nodes' engine sockets; the containers carry the label bench-floor and are removed afterwards."""
    import concurrent.futures as cf

    import docker

    from gitkube.sandbox.netns import Sandbox

    socks = [Sandbox(b.sid).node(int(name.lstrip("n"))).docker_sock for name, _ in b.nodes()]
    apis = [docker.APIClient(base_url=s, version="1.41", timeout=120) for s in socks]
    labels = {"bench-floor": "1"}

    def pod(api, name: str) -> None:
        infra = api.create_container(IMAGE, command=["sleep", "3600"], name=f"{name}-infra", labels=labels)["Id"]
        api.start(infra)
        app = api.create_container(IMAGE, command=["sleep", "3600"], name=f"{name}-app", labels=labels,
                                   host_config=api.create_host_config(network_mode=f"container:{infra}"))["Id"]
        api.start(app)

    def node(k: int) -> None:
        mine = [i for i in range(n) if i % len(apis) == k]
        with cf.ThreadPoolExecutor(max_workers=max(1, min(per_node_concurrency, len(mine)))) as pool:
            list(pool.map(lambda i: pod(apis[k], f"bench-floor-{i:03d}"), mine))

    try:
        t = time.monotonic()
        with cf.ThreadPoolExecutor(max_workers=len(apis)) as pool:
            list(pool.map(node, range(len(apis))))
        return time.monotonic() - t
    finally:
        for api in apis:
            for c in api.containers(all=True, filters={"label": "bench-floor=1"}):
                api.remove_container(c["Id"], force=True)
            api.close()


def bench_noop(b: Bench, n: int, passes: int = 3) -> dict:
    from gitkube.controller import Controller, Source

    b.set_pods("noop", n)
    t = time.monotonic()
    b.apply("--wait", timeout=600)
    t_up = time.monotonic() - t
    ctrl = Controller(str(b.state), Source(str(b.repo), None, "manifests", str(b.inventory)))
    out = []
    try:
        for _ in range(passes + 1):
            before = {name: ctrl.fleet[name].docker.calls for name in ctrl.fleet.names()} if ctrl.fleet else {}
            rep = ctrl.reconcile()  # the first one opens the fleet: all its calls count
            total = {name: ctrl.fleet[name].docker.calls - before.get(name, 0) for name in ctrl.fleet.names()}
            acts = sum(len(a) for a in rep.node_actions.values())
            out.append({"sync_calls": dict(sorted(rep.api_calls.items())), "all_calls": dict(sorted(total.items())),
                        "actions": acts, "seconds": rep.seconds, "errors": rep.node_errors, "quiet": rep.quiet})
    finally:
        ctrl.close()
    b.set_pods("noop", 0)
    b.apply(timeout=300)
    return {"n": n, "up_s": t_up, "passes": out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=30)
    ap.add_argument("--noop-pods", type=int, default=100)
    ap.add_argument("--sandbox-id", type=int, default=int(os.environ.get("GITKUBE_SANDBOX_ID", "6")))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_pods needs root (the sandbox fleet)")
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-pods-") as tmp:
        b = Bench(args.sandbox_id, Path(tmp))
        try:
            b.up()
            s = bench_start(b, args.pods)
            print(f"start {s['n']} pods over 3 nodes ({', '.join(f'{k}: {v}' for k, v in sorted(s['per_node'].items()))}; "
                  f"{s['running']} Running)")
            print(f"  gitkube apply --wait (fresh process, infra+app container per pod): {s['gitkube_s']:6.2f} s")
            print(f"  ssh NODE docker run -d, one by one (app container only):          {s['ssh_s']:6.2f} s")
            print(f"  floor: the same containers straight to the engines' sockets, in parallel:  {s['floor_s']:6.2f} s")
            print(f"  ratio gitkube/ssh: {s['gitkube_s'] / s['ssh_s']:.2f} (target <= 0.3); "
                  f"floor/ssh: {s['floor_s'] / s['ssh_s']:.2f}; gitkube/floor: {s['gitkube_s'] / s['floor_s']:.2f}")
            z = bench_noop(b, args.noop_pods)
            print(f"no-op sync pass with {z['n']} pods (brought up in {z['up_s']:.1f} s by apply --wait):")
            for i, p in enumerate(z["passes"]):
                label = "cold (new controller, empty inspect cache)" if i == 0 else f"warm no-op pass {i}"
                print(f"  {label}{' (quiet)' if p['quiet'] else ''}: container lists per node {p['sync_calls']}; "
                      f"all Docker calls of the pass (heartbeat included) {p['all_calls']}; {p['actions']} node "
                      f"actions; {p['seconds']:.3f} s" + (f"; errors {p['errors']}" if p["errors"] else ""))
        finally:
            b.down()
    print(f"bench wall time {time.monotonic() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
