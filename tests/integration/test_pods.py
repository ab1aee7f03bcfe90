"""Pods on nodes, end to end on a real 3-node sandbox, written like Kubernetes' e2e tests: a manifest committed
into a Git repository, `gitkube apply`, and an outcome observed (gitkube's CLI or the node's own Docker engine)
within a timeout. Every loop here is bounded in passes and seconds; every address is a sandbox one (198.18/15)."""
from __future__ import annotations

import calendar
import ipaddress
import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import eventually

IMAGE = "gitkube/busybox:latest"
SANDBOX_NET = ipaddress.ip_network("198.18.0.0/15")


# -- a small Kubernetes-e2e-style harness --------------------------------------------------------------------
class Cluster:
    """A Git repository of manifests and gitkube's state dir, driven through the CLI as an operator would."""

    def __init__(self, fleet, root: Path):
        self.fleet = fleet
        self.repo = root / "repo"
        self.state = root / "state"
        (self.repo / "manifests").mkdir(parents=True)
        (self.repo / "manifests" / "README.md").write_text("e2e manifests (git keeps no empty directory)\n")
        self._git("init", "-q", "-b", "main")
        self._git("add", "manifests")
        self._git("commit", "-q", "-m", "empty manifests")

    def _git(self, *args: str) -> None:
        subprocess.run(["git", "-C", str(self.repo), "-c", "user.name=e2e", "-c", "user.email=e2e@gitkube.test", *args],
                       check=True, capture_output=True, text=True)

    def commit(self, files: dict[str, object | None], message: str) -> None:
        """Write (object/list of objects) or remove (None) files under manifests/ and commit them."""
        for name, body in files.items():
            p = self.repo / "manifests" / name
            if body is None:
                p.unlink(missing_ok=True)
            else:
                docs = body if isinstance(body, list) else [body]
                p.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self._git("add", "-A", "manifests")
        self._git("commit", "-q", "--allow-empty", "-m", message)

    def gk(self, *args: str, **kw):
        return self.fleet.gk(*args, state_dir=self.state, **kw)

    def apply(self, *extra: str, timeout: float = 120):
        """apply; exit 1 is expected when a pod it started cannot pull its image or crash-loops (these tests make
        such pods on purpose), and only then."""
        r = self.gk("apply", "--repo", str(self.repo), "--inventory", str(self.fleet.inventory), *extra, timeout=timeout,
                    check=False)
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        expected = [ln for ln in errors if ln.startswith("error: pod ") and any(
            w in ln for w in ("ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "ErrImageNeverPull"))]
        assert r.returncode == 0 or (r.returncode == 1 and errors and errors == expected), \
            f"apply exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        return r

    def pods(self) -> dict[str, dict]:
        out = json.loads(self.gk("get", "pods", "-o", "json").stdout)
        return {p["metadata"]["name"]: p for p in out["items"]}

    def pod(self, name: str) -> dict | None:
        return self.pods().get(name)

    def logs(self, pod: str, container: str | None = None, previous: bool = False, check: bool = True) -> str:
        args = ["logs", pod, "--inventory", str(self.fleet.inventory)]
        if container:
            args += ["-c", container]
        if previous:
            args.append("--previous")
        return self.gk(*args, check=check, timeout=60).stdout

    def exec(self, pod: str, container: str, *cmd: str, check: bool = True) -> str:
        return self.gk("exec", pod, "-c", container, "--inventory", str(self.fleet.inventory), "--", *cmd,
                       check=check, timeout=60).stdout

    def events(self, pod: str) -> list[dict]:
        out = json.loads(self.gk("events", "--for", f"pod/{pod}", "-o", "json").stdout)
        return out["items"]

    def apply_until(self, fn, passes: int, seconds: float, what: str, pause: float = 0.5):
        """apply, then check; at most `passes` passes and `seconds` seconds."""
        deadline = time.monotonic() + seconds
        last = None
        for _ in range(passes):
            self.apply()
            last = fn()
            if last:
                return last
            if time.monotonic() > deadline:
                break
            time.sleep(pause)
        raise AssertionError(f"{what} not reached within {passes} passes / {seconds}s; last seen: {last!r}")

    # the node's own view (not gitkube's)
    def node_containers(self, node: str, uid: str) -> list[str]:
        r = self.fleet.docker(node, "ps", "-aq", "--filter", f"label=io.gitkube.pod.uid={uid}")
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    def node_volumes(self, node: str, uid: str) -> list[str]:
        r = self.fleet.docker(node, "volume", "ls", "-q", "--filter", f"label=io.gitkube.pod.uid={uid}")
        assert r.returncode == 0, r.stderr
        return r.stdout.split()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def pod(name: str, node: str, containers: list[dict], restart: str = "Always", grace: int = 2, **spec) -> dict:
    for c in containers:
        c.setdefault("image", IMAGE)
        c.setdefault("imagePullPolicy", "Never")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"e2e": "pods"}},
            "spec": {"nodeName": node, "restartPolicy": restart, "terminationGracePeriodSeconds": grace,
                     "containers": containers, **spec}}


def sh(name: str, script: str, **kw) -> dict:
    return {"name": name, "command": ["sh", "-c", script], **kw}


def cstatus(p: dict, container: str) -> dict:
    return next((cs for cs in (p.get("status") or {}).get("containerStatuses") or [] if cs["name"] == container), {})


def phase(p: dict | None) -> str | None:
    return ((p or {}).get("status") or {}).get("phase")


def waiting_reason(cs: dict) -> str | None:
    return ((cs.get("state") or {}).get("waiting") or {}).get("reason")


def ts(s: str) -> float:
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.fixture(scope="module")
def cluster(fleet, tmp_path_factory):
    c = Cluster(fleet, tmp_path_factory.mktemp("pods-e2e"))
    yield c
    # Whatever a failed test left behind goes with an empty manifests/ (best effort).
    for f in (c.repo / "manifests").glob("*.yaml"):
        f.unlink()
    c.commit({}, "remove everything")
    c.apply()


def delete_and_check_gone(cluster: Cluster, files: list[str], pods: dict[str, tuple[str, str]]) -> None:
    """Commit the removal of `files`, apply, and check each pod (name -> (node, uid)) left nothing on its node."""
    cluster.commit({f: None for f in files}, "delete " + " ".join(files))
    cluster.apply()

    def gone():
        names = set(cluster.pods())
        return all(n not in names and not cluster.node_containers(node, uid) and not cluster.node_volumes(node, uid)
                   for n, (node, uid) in pods.items())

    cluster.apply_until(gone, passes=5, seconds=60, what=f"pods {sorted(pods)} gone from store and nodes")


# -- (1) restart policies --------------------------------------------------------------------------------
def test_restart_policies_phase_and_crash_loop_back_off(cluster):
    never, onfail, always = unique("rp-never"), unique("rp-onfailure"), unique("rp-always")
    f = "restart.yaml"
    cluster.commit({f: [
        pod(never, "n1", [sh("c", "echo never; exit 1")], restart="Never"),
        pod(onfail, "n2", [sh("c", "echo done; exit 0")], restart="OnFailure"),
        pod(always, "n3", [sh("c", "echo crash-$(date +%s); exit 1")], restart="Always"),
    ]}, "restart policies")
    # restartCount -> startedAt of that attempt (seen as lastState while the next one waits), and what waited.
    started: dict[int, float] = {}
    waits: dict[int, set] = {}
    t0 = time.monotonic()
    t00 = time.time()
    trace: list = []  # (seconds since start, apply seconds, restartCount, state) per pass, for failure messages
    done = False
    for _ in range(70):
        ta = time.time()
        cluster.apply()
        pods = cluster.pods()
        cs = cstatus(pods[always], "c")
        n = cs.get("restartCount", 0)
        trace.append((round(ta - t00, 1), round(time.time() - ta, 1), n, next(iter(cs.get("state") or {"-": 0}))))
        term = (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get("terminated")
        if term and term.get("startedAt"):
            # lastState is attempt n while it waits, attempt n-1 while attempt n runs.
            started.setdefault(n - 1 if "running" in (cs.get("state") or {}) else n, ts(term["startedAt"]))
            assert term["exitCode"] == 1 and term["reason"] == "Error", cs
        if waiting_reason(cs):
            waits.setdefault(n, set()).add(waiting_reason(cs))
        assert phase(pods[always]) in ("Pending", "Running"), pods[always]["status"]
        if 3 in started and phase(pods[never]) == "Failed" and phase(pods[onfail]) == "Succeeded":
            done = True
            break
        assert time.monotonic() - t0 < 90, (started, waits)
        time.sleep(0.5)
    assert done, (started, waits, phase(pods[never]), phase(pods[onfail]))

    # Never + exit 1 → Failed, not restarted; OnFailure + exit 0 → Succeeded, not restarted.
    p = pods[never]
    cs = cstatus(p, "c")
    assert cs["restartCount"] == 0 and cs["state"]["terminated"]["exitCode"] == 1, cs
    assert cs["state"]["terminated"]["reason"] == "Error"
    p = pods[onfail]
    cs = cstatus(p, "c")
    assert cs["restartCount"] == 0 and cs["state"]["terminated"]["exitCode"] == 0, cs
    assert cs["state"]["terminated"]["reason"] == "Completed"
    assert cluster.logs(never).strip() == "never" and cluster.logs(onfail).strip() == "done"

    # Always + exit 1 → restarted: at once, then after 10 s, then after 20 s, waiting in CrashLoopBackOff between.
    assert {0, 1, 2, 3} <= set(started) or {1, 2, 3} <= set(started), started
    assert "CrashLoopBackOff" in waits.get(1, set()) and "CrashLoopBackOff" in waits.get(2, set()), waits
    # Lower bounds are the back-off itself; upper bounds allow for when passes happen to run (each apply is a
    # fresh process: under load a pass can take seconds), i.e. the back-off plus the longest gap between passes.
    slack = max(b[0] - a[0] for a, b in zip(trace, trace[1:])) + 2
    gap12, gap23 = started[2] - started[1], started[3] - started[2]
    assert 9 <= gap12 <= 10 + slack, (gap12, slack, started, t00, trace)
    assert 19 <= gap23 <= 20 + slack, (gap23, slack, started, t00, trace)
    if 0 in started:
        assert started[1] - started[0] <= slack, (started, slack, t00, trace)
    assert cluster.logs(always, previous=True).startswith("crash-")
    reasons = [e["reason"] for e in cluster.events(always)]
    assert "BackOff" in reasons, reasons

    delete_and_check_gone(cluster, [f], {n: (node, pods[n]["metadata"]["uid"])
                                         for n, node in ((never, "n1"), (onfail, "n2"), (always, "n3"))})


# -- (2) env, $(VAR) expansion, downward API; (6) hostname and /etc/hosts ----------------------------------
ENV_SCRIPT = 'for a in "$@"; do echo "ARG=[$a]"; done; env | sort | sed "s/^/ENV /"; echo READY; exec sleep 3600'


def test_env_field_refs_var_expansion_hostname_and_hosts(cluster, fleet):
    name = unique("envpod")
    f = "env.yaml"
    env = [
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "MY_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MY_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MY_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "SHELL_BIN", "value": "sh"},
        {"name": "A", "value": "alpha"},
        {"name": "EMPTY", "value": ""},
        {"name": "LATE_REF", "value": "$(LATER)"},  # defined after: stays as written
        {"name": "LATER", "value": "later"},
        {"name": "B", "value": "$(A)-beta-$(MY_NAME)"},
        {"name": "ESCAPED", "value": "$$(A)"},
        {"name": "UNKNOWN", "value": "$(NOPE)"},
        {"name": "SHELLISH", "value": "$A ${A}"},
        {"name": "GLUED", "value": "x$(EMPTY)y"},
        {"name": "UNTERMINATED", "value": "$(A"},
    ]
    c = {"name": "app", "command": ["$(SHELL_BIN)", "-c", ENV_SCRIPT, "argv0"],
         "args": ["$(B)", "$$(A)", "$(NOPE)", "$A", "x$(EMPTY)y", "$(MY_NODE)"], "env": env}
    cluster.commit({f: pod(name, "n2", [c])}, "env pod")
    p = cluster.apply_until(lambda: (lambda p: p if phase(p) == "Running" and p["status"].get("podIP") else None)(cluster.pod(name)),
                            passes=10, seconds=30, what=f"{name} Running")
    out = eventually(lambda: (lambda t: t if "READY" in t else None)(cluster.logs(name)), timeout=20, what="env printed")
    uid, pod_ip, host_ip = p["metadata"]["uid"], p["status"]["podIP"], p["status"]["hostIP"]
    assert host_ip == fleet.node_address("n2")
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network("198.18.%d.0/24" % (100 + 10 * fleet.sid + 2)), pod_ip
    got = dict(line[4:].split("=", 1) for line in out.splitlines() if line.startswith("ENV ") and "=" in line)
    want = {
        "MY_NAME": name, "MY_NS": "default", "MY_UID": uid, "MY_NODE": "n2", "MY_POD_IP": pod_ip, "MY_HOST_IP": host_ip,
        "A": "alpha", "EMPTY": "", "LATE_REF": "$(LATER)", "LATER": "later", "B": f"alpha-beta-{name}",
        "ESCAPED": "$(A)", "UNKNOWN": "$(NOPE)", "SHELLISH": "$A ${A}", "GLUED": "xy", "UNTERMINATED": "$(A",
    }
    assert {k: got.get(k) for k in want} == want
    args = [line[5:-1] for line in out.splitlines() if line.startswith("ARG=[")]
    assert args == [f"alpha-beta-{name}", "$(A)", "$(NOPE)", "$A", "xy", "n2"], args  # $(SHELL_BIN) ran sh

    # (6) hostname is the pod name; /etc/hosts maps the pod IP to it.
    assert cluster.exec(name, "app", "hostname").strip() == name
    hosts = cluster.exec(name, "app", "cat", "/etc/hosts")
    assert any(line.split()[:2] == [pod_ip, name] for line in hosts.splitlines() if line.strip()), hosts

    delete_and_check_gone(cluster, [f], {name: ("n2", uid)})


# -- (2) command/args against the image's ENTRYPOINT/CMD ---------------------------------------------------
def test_command_and_args_vs_image_entrypoint(cluster, fleet):
    from gitkube.nodes.transport.fleet import Fleet
    from gitkube.nodes.images.archive import build_archive, busybox_rootfs
    from gitkube.nodes.images.ship import ship
    from gitkube.nodes.inventory import load_inventory

    ref = "gitkube/e2e-entrypoint:1"
    arch = build_archive(ref, busybox_rootfs(), {"Entrypoint": ["echo", "EP"], "Cmd": ["image-cmd"], "WorkingDir": "/"})
    fl = Fleet(load_inventory(str(fleet.inventory)))
    try:
        ship(fl, [arch], progress=lambda m: None, names=["n3"])
    finally:
        fl.close()
    cases = {  # pod suffix -> (container fields, expected output)
        "none": ({}, "EP image-cmd"),
        "args": ({"args": ["a1", "a2"]}, "EP a1 a2"),
        "cmd": ({"command": ["echo", "C"]}, "C"),
        "both": ({"command": ["echo", "C"], "args": ["a1"]}, "C a1"),
    }
    base = unique("ep")
    f = "entrypoint.yaml"
    cluster.commit({f: [pod(f"{base}-{k}", "n3", [{"name": "c", "image": ref, **fields}], restart="Never")
                        for k, (fields, _) in cases.items()]}, "entrypoint pods")
    pods = cluster.apply_until(lambda: (lambda ps: ps if all(phase(ps.get(f"{base}-{k}")) == "Succeeded" for k in cases) else None)(cluster.pods()),
                               passes=10, seconds=30, what="entrypoint pods Succeeded")
    got = {k: cluster.logs(f"{base}-{k}").strip() for k in cases}
    assert got == {k: out for k, (_, out) in cases.items()}
    delete_and_check_gone(cluster, [f], {f"{base}-{k}": ("n3", pods[f"{base}-{k}"]["metadata"]["uid"]) for k in cases})


# -- (3) emptyDir shared by two containers, removed with the pod; (9) graceful deletion --------------------
def test_empty_dir_shared_then_removed_with_the_pod(cluster):
    name = unique("vol")
    f = "emptydir.yaml"
    writer = sh("writer", "echo from-writer-$(MY_NAME) > /data/msg; echo mem > /mem/m; exec sleep 3600",
                env=[{"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                volumeMounts=[{"name": "scratch", "mountPath": "/data"}, {"name": "ram", "mountPath": "/mem"}])
    reader = sh("reader", "for i in $(seq 100); do [ -s /shared/msg ] && break; sleep 0.2; done; cat /shared/msg; exec sleep 3600",
                volumeMounts=[{"name": "scratch", "mountPath": "/shared", "readOnly": True}])
    cluster.commit({f: pod(name, "n1", [writer, reader], volumes=[{"name": "scratch", "emptyDir": {}},
                                                                  {"name": "ram", "emptyDir": {"medium": "Memory"}}])},
                   "emptyDir pod")
    p = cluster.apply_until(lambda: (lambda p: p if phase(p) == "Running" else None)(cluster.pod(name)),
                            passes=10, seconds=30, what=f"{name} Running")
    uid = p["metadata"]["uid"]
    assert eventually(lambda: cluster.logs(name, "reader").strip(), timeout=20, what="reader output") == f"from-writer-{name}"
    assert cluster.exec(name, "reader", "cat", "/shared/msg").strip() == f"from-writer-{name}"
    ro = cluster.gk("exec", name, "-c", "reader", "--inventory", str(cluster.fleet.inventory), "--",
                    "sh", "-c", "echo x > /shared/ro", check=False, timeout=60)
    assert ro.returncode != 0, "readOnly emptyDir mount was writable"
    mounts = cluster.exec(name, "writer", "cat", "/proc/mounts")
    assert any(line.split()[1] == "/mem" and line.split()[2] == "tmpfs" for line in mounts.splitlines()), mounts
    vols = cluster.node_volumes("n1", uid)
    assert len(vols) == 2, vols
    delete_and_check_gone(cluster, [f], {name: ("n1", uid)})


# -- (4) hostPort on the node's address; (5) hostNetwork sees the node's interfaces -------------------------
def test_host_port_and_host_network(cluster, fleet):
    web, hn = unique("web"), unique("hostnet")
    f = "hostport.yaml"
    httpd = sh("httpd", "mkdir -p /www && echo hello-$(POD) > /www/index.html && exec httpd -f -p 80 -h /www",
               env=[{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
               ports=[{"containerPort": 80, "hostPort": 18080}])
    cluster.commit({f: [pod(web, "n2", [httpd]),
                        pod(hn, "n3", [sh("c", "exec sleep 3600")], hostNetwork=True)]}, "hostPort and hostNetwork")
    pods = cluster.apply_until(lambda: (lambda ps: ps if phase(ps.get(web)) == "Running" and phase(ps.get(hn)) == "Running" else None)(cluster.pods()),
                               passes=10, seconds=30, what="web and hostnet Running")
    addr = fleet.node_address("n2")
    assert ipaddress.ip_address(addr) in SANDBOX_NET

    def fetch():
        try:
            with urllib.request.urlopen(f"http://{addr}:18080/", timeout=3) as r:
                return r.read().decode().strip()
        except OSError:
            return None

    assert eventually(fetch, timeout=20, what=f"http://{addr}:18080/") == f"hello-{web}"

    node_ip = fleet.node_address("n3")
    ipaddr = cluster.exec(hn, "c", "ip", "-4", "addr")
    assert f"inet {node_ip}/" in ipaddr, ipaddr
    assert pods[hn]["status"]["podIP"] == node_ip == pods[hn]["status"]["hostIP"]
    delete_and_check_gone(cluster, [f], {web: ("n2", pods[web]["metadata"]["uid"]), hn: ("n3", pods[hn]["metadata"]["uid"])})


# -- (7) hooks, and (9) graceful termination order: preStop, then SIGTERM -------------------------------------
def test_lifecycle_hooks_and_graceful_termination(cluster, fleet):
    server, hooked, badhook = unique("hooksrv"), unique("hooked"), unique("badhook")
    srv_ip = fleet.node_address("n2")
    port = 18081
    f_srv, f_hooked = "hook-server.yaml", "hooked.yaml"
    cluster.commit({f_srv: pod(server, "n2", [sh("httpd", f"mkdir -p /www && touch /www/prestop-{hooked} /www/sigterm-{hooked} && exec httpd -f -vv -p 8080 -h /www",
                                                 ports=[{"containerPort": 8080, "hostPort": port}])])}, "hook server")
    main = sh("app", f"trap 'wget -q -O /dev/null http://{srv_ip}:{port}/sigterm-$(POD); exit 0' TERM; "
                     "while true; do sleep 0.2; done",
              env=[{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
              lifecycle={"postStart": {"exec": {"command": ["sh", "-c", "echo post-start-ran > /tmp/hook"]}},
                         "preStop": {"httpGet": {"host": srv_ip, "port": port, "path": f"/prestop-{hooked}"}}})
    bad = sh("app", "exec sleep 3600", lifecycle={"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}}})
    cluster.commit({f_hooked: [pod(hooked, "n1", [main], grace=10), pod(badhook, "n3", [bad], grace=1)]}, "hooked pods")

    def settled():
        ps = cluster.pods()
        ok = phase(ps.get(server)) == "Running" and phase(ps.get(hooked)) == "Running"
        return ps if ok and cstatus(ps.get(badhook) or {}, "app").get("restartCount", 0) >= 1 else None

    pods = cluster.apply_until(settled, passes=15, seconds=45, what="hook pods running, badhook restarted")
    # postStart exec wrote a file the container sees.
    assert cluster.exec(hooked, "app", "cat", "/tmp/hook").strip() == "post-start-ran"
    # A failing postStart: FailedPostStartHook, the container killed and restarted per restartPolicy.
    evs = cluster.events(badhook)
    fails = [e for e in evs if e["reason"] == "FailedPostStartHook"]
    assert fails and fails[0]["type"] == "Warning" and "exited with 3" in fails[0]["message"], evs
    assert cstatus(pods[badhook], "app")["restartCount"] >= 1

    # Delete the hooked pod: preStop reaches the server, then SIGTERM lets the app say goodbye, then it is gone.
    hooked_uid = pods[hooked]["metadata"]["uid"]
    t = time.monotonic()
    delete_and_check_gone(cluster, [f_hooked], {hooked: ("n1", hooked_uid), badhook: ("n3", pods[badhook]["metadata"]["uid"])})
    assert time.monotonic() - t < 30  # graceful, but not the whole grace period: the app exits on SIGTERM
    log = cluster.logs(server)
    urls = [line.split("url:", 1)[1] for line in log.splitlines() if "url:" in line]
    assert f"/prestop-{hooked}" in urls and f"/sigterm-{hooked}" in urls, log
    assert urls.index(f"/prestop-{hooked}") < urls.index(f"/sigterm-{hooked}"), urls
    assert not [e for e in cluster.events(hooked) if e["reason"] == "FailedPreStopHook"]
    delete_and_check_gone(cluster, [f_srv], {server: ("n2", pods[server]["metadata"]["uid"])})


# -- (8) containers removed by hand are recreated per restartPolicy; foreign containers are left alone ---------
def test_removed_container_recreated_and_foreign_container_left_alone(cluster, fleet):
    always, never = unique("rm-always"), unique("rm-never")
    foreign = unique("foreign")
    f = "removed.yaml"
    r = fleet.docker("n3", "run", "-d", "--name", foreign, IMAGE, "sleep", "3600")
    assert r.returncode == 0, r.stderr
    foreign_id = r.stdout.strip()
    try:
        cluster.commit({f: [pod(always, "n3", [sh("c", "exec sleep 3600")]),
                            pod(never, "n3", [sh("c", "exec sleep 3600")], restart="Never")]}, "pods to remove by hand")
        pods = cluster.apply_until(lambda: (lambda ps: ps if phase(ps.get(always)) == "Running" and phase(ps.get(never)) == "Running" else None)(cluster.pods()),
                                   passes=10, seconds=30, what="both Running")

        def app_container(p):
            r = fleet.docker("n3", "ps", "-aq", "--filter", f"label=io.gitkube.pod.uid={p['metadata']['uid']}",
                             "--filter", "label=io.gitkube.container.name=c")
            return r.stdout.split()

        old_always, old_never = app_container(pods[always]), app_container(pods[never])
        assert len(old_always) == 1 and len(old_never) == 1
        for cid in old_always + old_never:
            assert fleet.docker("n3", "rm", "-f", cid).returncode == 0

        def recreated():
            ps = cluster.pods()
            new = app_container(ps[always])
            cs = cstatus(ps[always], "c")
            return ps if new and new != old_always and "running" in (cs.get("state") or {}) else None

        pods = cluster.apply_until(recreated, passes=5, seconds=20, what=f"{always}'s container recreated")
        assert cstatus(pods[always], "c")["restartCount"] == 1
        assert phase(pods[always]) == "Running"
        # Under restartPolicy Never the vanished container is not started again; the pod ends Failed.
        cluster.apply()
        pods = cluster.pods()
        assert app_container(pods[never]) == []
        assert phase(pods[never]) == "Failed", pods[never]["status"]
        term = cstatus(pods[never], "c")["state"].get("terminated")
        assert term and term["exitCode"] != 0, cstatus(pods[never], "c")

        delete_and_check_gone(cluster, [f], {always: ("n3", pods[always]["metadata"]["uid"]),
                                             never: ("n3", pods[never]["metadata"]["uid"])})
        cluster.apply()
        st = fleet.docker("n3", "inspect", "-f", "{{.Id}} {{.State.Status}} {{.RestartCount}}", foreign)
        assert st.stdout.split() == [foreign_id, "running", "0"], st.stdout + st.stderr
    finally:
        fleet.docker("n3", "rm", "-f", foreign)


# -- (10) images: Never with the image absent, and a pull that fails into back-off ---------------------------------
def test_image_never_pull_and_pull_back_off(cluster, fleet):
    never, pull = unique("img-never"), unique("img-pull")
    # A registry address inside the sandbox (the host's bridge address, nothing listening on 5999): the pull is
    # refused at once and no packet leaves 198.18.0.0/15.
    registry = f"198.18.{fleet.sid}.1:5999"
    f = "images.yaml"
    cluster.commit({f: [pod(never, "n1", [sh("c", "exec sleep 3600", image="gitkube/absent:never", imagePullPolicy="Never")]),
                        pod(pull, "n2", [sh("c", "exec sleep 3600", image=f"{registry}/gk-e2e/absent:1",
                                            imagePullPolicy="IfNotPresent")])]}, "images that are not there")
    seen: dict[str, set] = {never: set(), pull: set()}

    def both_reasons():
        ps = cluster.pods()
        for n in seen:
            if r := waiting_reason(cstatus(ps[n], "c")):
                seen[n].add(r)
            assert phase(ps[n]) == "Pending", ps[n]["status"]
        return ps if "ErrImageNeverPull" in seen[never] and {"ErrImagePull", "ImagePullBackOff"} <= seen[pull] else None

    pods = cluster.apply_until(both_reasons, passes=10, seconds=60, what="ErrImageNeverPull and ErrImagePull -> ImagePullBackOff")
    assert seen[never] == {"ErrImageNeverPull"}, seen
    msg = cstatus(pods[never], "c")["state"]["waiting"]["message"]
    assert msg == 'Container image "gitkube/absent:never" is not present with pull policy of Never', msg
    assert {"ErrImagePull", "ImagePullBackOff"} == seen[pull], seen
    for n in (never, pull):  # not ready, never started: no app container exists on the node
        assert cstatus(pods[n], "c")["ready"] is False and cstatus(pods[n], "c")["restartCount"] == 0
    reasons = {e["reason"]: e for e in cluster.events(pull)}
    assert "Pulling" in reasons and reasons["Failed"]["type"] == "Warning", reasons
    assert "Failed to pull image" in reasons["Failed"]["message"], reasons["Failed"]
    ev_never = {e["reason"]: e for e in cluster.events(never)}
    assert ev_never["ErrImageNeverPull"]["type"] == "Warning" and "Pulling" not in ev_never, ev_never
    delete_and_check_gone(cluster, [f], {never: ("n1", pods[never]["metadata"]["uid"]),
                                         pull: ("n2", pods[pull]["metadata"]["uid"])})


# -- (11) resource limits reach the container's cgroup; hostPath types checked and created like the kubelet's ------
def test_resource_limits_and_host_path(cluster, fleet, tmp_path):
    name, later = unique("limits"), unique("hp-later")
    data_dir, conf, later_file = tmp_path / "nested" / "data", tmp_path / "conf.txt", tmp_path / "later.txt"
    f = "limits.yaml"  # the sandbox nodes share this machine's filesystem: the test looks at the node's paths here
    c = sh("c", "echo written-by-$(POD) > /data/out && exec sleep 3600",
           env=[{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
           resources={"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"cpu": "100m", "memory": "32Mi"}},
           volumeMounts=[{"name": "data", "mountPath": "/data"}, {"name": "conf", "mountPath": "/etc/app.conf"}])
    waits = sh("c", "exec sleep 3600", volumeMounts=[{"name": "later", "mountPath": "/later.txt", "readOnly": True}])
    cluster.commit({f: [pod(name, "n3", [c], volumes=[
                            {"name": "data", "hostPath": {"path": str(data_dir), "type": "DirectoryOrCreate"}},
                            {"name": "conf", "hostPath": {"path": str(conf), "type": "FileOrCreate"}}]),
                        pod(later, "n3", [waits], volumes=[{"name": "later", "hostPath": {"path": str(later_file),
                                                                                         "type": "File"}}])]},
                   "limits and hostPath")

    def settled():
        ps = cluster.pods()
        return ps if phase(ps.get(name)) == "Running" and waiting_reason(cstatus(ps.get(later) or {}, "c")) else None

    pods = cluster.apply_until(settled, passes=10, seconds=30, what=f"{name} Running, {later} waiting")
    uid = pods[name]["metadata"]["uid"]
    ids = fleet.docker("n3", "ps", "-q", "--filter", f"label=io.gitkube.pod.uid={uid}",
                       "--filter", "label=io.gitkube.container.name=c").stdout.split()
    assert len(ids) == 1, ids
    hc = json.loads(fleet.docker("n3", "inspect", "-f", "{{json .HostConfig}}", ids[0]).stdout)
    assert hc["NanoCpus"] == 250_000_000 and hc["Memory"] == 64 * 1024 * 1024, hc
    assert hc["CpuShares"] == 102, hc  # requests.cpu 100m, as the kubelet converts it (milli * 1024 / 1000)
    # The limit is the kernel's, not only Docker's record of it (cgroup v2 or v1).
    mem = cluster.exec(name, "c", "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                                              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes").strip()
    assert mem == str(64 * 1024 * 1024), mem
    # DirectoryOrCreate made the directory and its parents; FileOrCreate made an empty file (Docker alone would
    # have made a directory there).
    assert eventually(lambda: (data_dir / "out").exists(), timeout=10, what="the file on the node")
    assert (data_dir / "out").read_text().strip() == f"written-by-{name}"
    assert conf.is_file() and conf.stat().st_size == 0 and conf.stat().st_mode & 0o777 == 0o644, conf.stat()
    assert data_dir.stat().st_mode & 0o777 == 0o755

    # type File with nothing there: waiting in ContainerCreating with the kubelet's FailedMount, until it exists.
    cs = cstatus(pods[later], "c")
    msg = f'MountVolume.SetUp failed for volume "later" : hostPath type check failed: {later_file} is not a file'
    assert cs["state"]["waiting"] == {"reason": "ContainerCreating", "message": msg}, cs
    assert phase(pods[later]) == "Pending"
    ev = [e for e in cluster.events(later) if e["reason"] == "FailedMount"]
    assert ev and ev[0]["type"] == "Warning" and ev[0]["message"] == msg, ev
    later_file.write_text("now-here\n")
    pods = cluster.apply_until(lambda: (lambda ps: ps if phase(ps.get(later)) == "Running" else None)(cluster.pods()),
                               passes=5, seconds=20, what=f"{later} Running once the file exists")
    assert cluster.exec(later, "c", "cat", "/later.txt").strip() == "now-here"

    delete_and_check_gone(cluster, [f], {name: ("n3", uid), later: ("n3", pods[later]["metadata"]["uid"])})
    assert (data_dir / "out").read_text().strip() == f"written-by-{name}"  # hostPath data is the node's, not the pod's


# -- (12) logs: --tail, and -f streams lines written after it started ------------------------------------------------
def test_logs_tail_and_follow(cluster, fleet):
    name = unique("ticker")
    f = "ticker.yaml"
    cluster.commit({f: pod(name, "n1", [sh("c", "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.3; done")])},
                   "a pod that ticks")
    p = cluster.apply_until(lambda: (lambda p: p if phase(p) == "Running" else None)(cluster.pod(name)),
                            passes=10, seconds=30, what=f"{name} Running")
    eventually(lambda: cluster.logs(name).count("tick-") >= 3, timeout=10, what="three ticks logged")
    tail = cluster.logs(name, check=True).splitlines()
    last2 = cluster.gk("logs", name, "--tail", "2", "--inventory", str(fleet.inventory), timeout=60).stdout.splitlines()
    assert len(last2) == 2 and all(line.startswith("tick-") for line in last2), last2
    assert int(last2[1][5:]) == int(last2[0][5:]) + 1 and int(last2[0][5:]) >= int(tail[-1][5:]) - 1, (tail[-3:], last2)

    env = {**os.environ, "GITKUBE_SANDBOX_ID": str(fleet.sid)}
    proc = subprocess.Popen([sys.executable, "-m", "gitkube", "--state-dir", str(cluster.state), "logs", name, "-f",
                             "--tail", "1", "--inventory", str(fleet.inventory)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.strip()) for x in proc.stdout], daemon=True).start()
    try:
        got: list[str] = []
        deadline = time.monotonic() + 20  # bounded: 5 lines, 20 s at most
        while len(got) < 5 and time.monotonic() < deadline:
            try:
                got.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                break
        assert len(got) == 5 and all(x.startswith("tick-") for x in got), got
        nums = [int(x[5:]) for x in got]
        # The --tail 1 line already written, then each new one as it is written: consecutive, none repeated.
        assert nums == list(range(nums[0], nums[0] + 5)), got
        assert proc.poll() is None, "logs -f ended while the container still runs"
    finally:
        proc.kill()
        proc.wait(timeout=10)
    delete_and_check_gone(cluster, [f], {name: ("n1", p["metadata"]["uid"])})


# -- (13) a fresh process (every `apply`) sees the nodes with one list call each, not an inspect per container -------
def test_cold_pass_rebuilds_its_view_from_one_list_call_and_the_stored_status(cluster, fleet):
    from gitkube.controller import Controller, Source

    run1, run2, done, once = unique("cold-a"), unique("cold-b"), unique("cold-done"), unique("cold-once")
    f = "cold.yaml"
    # `once` fails its first run and then runs: an exited container in lastState beside a running one.
    flaky = sh("c", "if [ -f /data/failed ]; then exec sleep 3600; fi; touch /data/failed; exit 3",
               volumeMounts=[{"name": "data", "mountPath": "/data"}])
    cluster.commit({f: [pod(run1, "n1", [sh("c", "exec sleep 3600"), sh("d", "exec sleep 3600")]),
                        pod(run2, "n2", [sh("c", "exec sleep 3600")]),
                        pod(done, "n3", [sh("c", "echo done")], restart="Never"),
                        pod(once, "n3", [flaky], restart="OnFailure", volumes=[{"name": "data", "emptyDir": {}}])]},
                   "pods for a cold pass")

    def settled():
        ps = cluster.pods()
        ok = (all(phase(ps.get(n)) == "Running" for n in (run1, run2, once)) and phase(ps.get(done)) == "Succeeded"
              and cstatus(ps[once], "c").get("restartCount") == 1)
        return ps if ok else None

    before = cluster.apply_until(settled, passes=20, seconds=60, what="pods settled")
    cluster.apply()  # one more pass: the statuses written are the steady ones
    before = cluster.pods()
    assert (cstatus(before[once], "c").get("lastState") or {}).get("terminated", {}).get("exitCode") == 3, before[once]

    # gitkube's system containers (the Services proxy and DNS) are on the nodes too: not pods, never inspected.
    from gitkube.nodes.transport.fleet import Fleet
    from gitkube.nodes.inventory import load_inventory
    from gitkube.nodes.dataplane.proxy import sync_services, teardown_services
    from gitkube.reconcile.services import plan_dataplane
    dp = plan_dataplane([], {})
    sysfleet = Fleet(load_inventory(fleet.inventory))
    try:
        res = sysfleet.map(lambda h: sync_services(h, [], dp.haproxy_cfg, dp.dns_hosts, dp.dns_ip), timeout=120)
        assert not any(isinstance(r, Exception) for r in res.values()), res
        ctrl = Controller(str(cluster.state), Source(str(cluster.repo), None, "manifests", str(fleet.inventory)),
                          store_url=os.environ.get("GITKUBE_STORE"))  # the store the CLI used (etcd's in that run)
        try:
            rep = ctrl.reconcile()
        finally:
            ctrl.close()
    finally:
        sysfleet.map(teardown_services, timeout=60)
        sysfleet.close()
    assert not rep.node_errors and not any(rep.node_actions.values()), rep.summary()
    # The pod sync of each node: the one list call, no inspect (7 app and 4 infra containers are there).
    assert rep.api_calls == {"n1": 1, "n2": 1, "n3": 1}, rep.api_calls
    after = cluster.pods()
    for n in (run1, run2, done, once):
        keep = ("phase", "podIP", "startTime", "containerStatuses")
        assert {k: after[n]["status"].get(k) for k in keep} == {k: before[n]["status"].get(k) for k in keep}, n
    delete_and_check_gone(cluster, [f], {n: (before[n]["spec"]["nodeName"], before[n]["metadata"]["uid"])
                                         for n in (run1, run2, done, once)})
