"""Services and the Guestbook end to end on the real 3-node sandbox, through the CLI only: a manifest committed to
Git, `gitkube apply`/`serve`, an observable outcome polled with a timeout (Kubernetes-e2e style).

ClusterIP across nodes, readiness-driven endpoints, service env vars (design §6), cluster DNS names, NodePort on
every node, then the Guestbook: written through node 1's NodePort, read back through node 3's, a frontend killed
by hand. The module removes everything it created at the end so later files see an empty fleet."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import SID, eventually, gk

REPO_ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = "gitkube/busybox:latest"
WEB_NODEPORT = 30081
GUESTBOOK_NODEPORT = 30001
NODES = ("n1", "n2", "n3")


# -- manifests ----------------------------------------------------------------------------------------------
def pod(name: str, command: str, *, node: str | None = None, labels: dict | None = None, **container) -> dict:
    spec = {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": BUSYBOX, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", command], **container}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"test": name}},
            "spec": spec}


def web_backend(node: str) -> dict:
    """busybox httpd on 8080 serving its hostname (the pod name), ready while /tmp/ready exists."""
    return pod(f"web-{node}", "mkdir -p /www && hostname > /www/index.html && touch /tmp/ready "
               "&& exec httpd -f -p 8080 -h /www", node=node, labels={"app": "web"},
               ports=[{"name": "http", "containerPort": 8080}],
               readinessProbe={"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1, "failureThreshold": 1})


def client(name: str, node: str | None = "n3") -> dict:
    return pod(name, "exec sleep 100000", node=node)


WEB_SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"type": "NodePort", "selector": {"app": "web"},
                    "ports": [{"port": 80, "targetPort": "http", "nodePort": WEB_NODEPORT}]}}
# Two named ports and a dash in the name: the variables' prefix is ENV_SVC.
ENV_SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "env-svc"},
           "spec": {"selector": {"app": "nothing"},
                    "ports": [{"name": "http", "port": 8081, "targetPort": 8080},
                              {"name": "metrics", "port": 9090, "protocol": "TCP"}]}}


def dump(*objs: dict) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False)


# -- the cluster: a Git working tree + a state dir, driven through the CLI -----------------------------------
class Cluster:
    def __init__(self, fleet, tmp: Path, proxy_mode: str = "iptables"):
        self.fleet = fleet
        self.proxy_mode = proxy_mode  # every apply and serve of the module runs the Services in this mode
        self.state = tmp / "state"
        self.repo = tmp / "repo"
        self.repo.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args):
        r = subprocess.run(["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.com", *args], cwd=self.repo,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"git {args}: {r.stderr}"
        return r.stdout

    def commit(self, files: dict[str, str], message: str) -> None:
        """Make manifests/ hold exactly `files` and commit."""
        d = self.repo / "manifests"
        d.mkdir(exist_ok=True)
        for f in d.iterdir():
            f.unlink()
        (d / "README.md").write_text("test manifests\n")
        for name, text in files.items():
            (d / name).write_text(text)
        self.git("add", "-A", "manifests")
        self.git("commit", "-q", "--allow-empty", "-m", message)

    def gk(self, *args, **kw):
        return gk(*args, state_dir=self.state, env={"GITKUBE_PROXY_MODE": self.proxy_mode}, **kw)

    def src(self):
        return ("--repo", str(self.repo), "--inventory", str(self.fleet.inventory))

    def apply(self, timeout: float = 120):
        return self.gk("apply", *self.src(), "--wait", "--timeout", str(timeout), timeout=timeout + 60)

    def get(self, *args) -> dict:
        return json.loads(self.gk("get", *args, "-o", "json").stdout)

    def exec(self, pod_name: str, *cmd: str, check: bool = True, timeout: float = 120):
        return self.gk("exec", pod_name, "--inventory", str(self.fleet.inventory), "--", *cmd, check=check,
                       timeout=timeout)

    def endpoint_ips(self, name: str) -> set[str]:
        ep = self.get("ep", name)
        return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}

    def pod_ip(self, name: str) -> str:
        return self.get("pods", name)["status"]["podIP"]

    def cluster_ip(self, name: str) -> str:
        return self.get("svc", name)["spec"]["clusterIP"]

    def fetch(self, from_pod: str, host: str, port: int, count: int) -> list[str]:
        """`count` fresh HTTP GETs from inside a pod with nc (busybox wget crashes here), each bounded by 2 s."""
        script = ('for i in $(seq "$1"); do r=$(printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 2 "$2" "$3" | tail -n 1); '
                  'echo "${r:-FAIL}"; done')
        r = self.exec(from_pod, "sh", "-c", script, "sh", str(count), host, str(port), timeout=count * 3 + 30)
        return r.stdout.split()


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode().strip()


def try_get(url: str, timeout: float = 5.0) -> str | None:
    try:
        return http_get(url, timeout)
    except OSError:
        return None


# Both proxy modes by default (GITKUBE_TEST_GUESTBOOK_MODES=iptables or =haproxy runs one): kernel NAT (the
# default) first, then HAProxy; the module costs about a minute per mode here.
GUESTBOOK_MODES = os.environ.get("GITKUBE_TEST_GUESTBOOK_MODES", "iptables,haproxy").split(",")


@pytest.fixture(scope="module", params=GUESTBOOK_MODES)
def cluster(fleet, tmp_path_factory, request):
    """The module runs twice: Services by the kernel's NAT rules, then by HAProxy."""
    c = Cluster(fleet, tmp_path_factory.mktemp("guestbook"), request.param)
    yield c
    c.commit({}, "remove everything")
    c.gk("apply", *c.src(), "--wait", "--timeout", "120", check=False, timeout=200)


@pytest.fixture(scope="module")
def web(cluster):
    """Service web (NodePort) over web-n1 and web-n2, a client pod on n3 and a pod started before env-svc."""
    cluster.commit({"web.yaml": dump(WEB_SVC, web_backend("n1"), web_backend("n2"), client("client"),
                                     client("env-before", node=None))}, "web service, two backends, a client")
    cluster.apply()
    return cluster


# -- ClusterIP, readiness, NodePort -------------------------------------------------------------------------
def test_clusterip_answers_from_two_backends_on_other_nodes(web):
    ips = {web.pod_ip("web-n1"), web.pod_ip("web-n2")}
    eventually(lambda: web.endpoint_ips("web") == ips, timeout=20, what="both backends in the endpoints")
    vip = web.cluster_ip("web")
    assert vip != "None" and vip not in ips
    answers = web.fetch("client", vip, 80, 30)
    assert len(answers) == 30 and set(answers) == {"web-n1", "web-n2"}, answers


def test_nodeport_answers_on_every_node_from_the_controller(web):
    for n in NODES:
        url = f"http://{web.fleet.node_address(n)}:{WEB_NODEPORT}/"
        seen = {http_get(url) for _ in range(6)}
        assert seen == {"web-n1", "web-n2"}, (n, seen)


def start_serve(cluster, resync: float = 2, first_pass: bool = False) -> subprocess.Popen:
    """`gitkube serve` of the cluster's repository, in its proxy mode (stopped by stop_serve); with `first_pass`,
    returns once its first pass is logged."""
    log = cluster.state.parent / f"serve-{uuid.uuid4().hex[:6]}.log"
    serve = subprocess.Popen([sys.executable, "-m", "gitkube", "--state-dir", str(cluster.state), "serve",
                              *cluster.src(), "--resync", str(resync)], cwd=REPO_ROOT,
                             env={**os.environ, "GITKUBE_SANDBOX_ID": str(SID), "GITKUBE_PROXY_MODE": cluster.proxy_mode},
                             stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True)
    serve.log = log
    if first_pass:
        eventually(lambda: "pass 1 at" in log.read_text() or serve.poll() is not None, timeout=60, interval=0.2,
                   what="serve's first pass")
        assert serve.poll() is None, log.read_text()[-2000:]
    return serve


def stop_serve(serve: subprocess.Popen) -> None:
    """SIGTERM, then wait; it must exit 0."""
    serve.send_signal(signal.SIGTERM)
    try:
        serve.wait(timeout=30)
    except subprocess.TimeoutExpired:
        serve.kill()
        serve.wait(timeout=10)
    assert serve.returncode == 0, serve.log.read_text()[-2000:]


def test_unready_backend_leaves_the_endpoints_and_comes_back(web):
    ip1, ip2 = web.pod_ip("web-n1"), web.pod_ip("web-n2")
    vip = web.cluster_ip("web")
    serve = start_serve(web)
    try:
        web.exec("web-n2", "rm", "-f", "/tmp/ready")
        eventually(lambda: web.endpoint_ips("web") == {ip1}, timeout=30, interval=1, what="web-n2 out of the endpoints")
        ready = {c["type"]: c["status"] for c in web.get("pods", "web-n2")["status"]["conditions"]}
        assert ready.get("Ready") == "False", ready
        # The proxy follows within the same pass; allow a moment for the reload to reach every node.
        eventually(lambda: set(web.fetch("client", vip, 80, 4)) == {"web-n1"}, timeout=20, interval=1,
                   what="the proxy dropping web-n2")
        answers = web.fetch("client", vip, 80, 20)
        assert answers == ["web-n1"] * 20, answers

        web.exec("web-n2", "touch", "/tmp/ready")
        eventually(lambda: web.endpoint_ips("web") == {ip1, ip2}, timeout=30, interval=1, what="web-n2 back")
        eventually(lambda: set(web.fetch("client", vip, 80, 10)) == {"web-n1", "web-n2"}, timeout=20, interval=1,
                   what="traffic to both again")
    finally:
        stop_serve(serve)


# -- discovery ----------------------------------------------------------------------------------------------
def env_of(cluster, pod_name: str) -> dict[str, str]:
    out = cluster.exec(pod_name, "env").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_service_env_vars_in_pods_started_after_the_service_only(web):
    before = web.get("pods", "env-before")["status"]["containerStatuses"][0]["containerID"]
    files = {"web.yaml": (web.repo / "manifests" / "web.yaml").read_text(),
             "env.yaml": dump(ENV_SVC, client("env-after", node=None))}
    web.commit(files, "env-svc and a pod after it")
    web.apply()
    ip = web.cluster_ip("env-svc")
    want = {
        "ENV_SVC_SERVICE_HOST": ip,
        "ENV_SVC_SERVICE_PORT": "8081",
        "ENV_SVC_SERVICE_PORT_HTTP": "8081",
        "ENV_SVC_SERVICE_PORT_METRICS": "9090",
        "ENV_SVC_PORT": f"tcp://{ip}:8081",
    }
    for port in (8081, 9090):
        p = f"ENV_SVC_PORT_{port}_TCP"
        want |= {p: f"tcp://{ip}:{port}", f"{p}_PROTO": "tcp", f"{p}_PORT": str(port), f"{p}_ADDR": ip}
    after = env_of(web, "env-after")
    assert {k: v for k, v in after.items() if k.startswith("ENV_SVC_")} == want
    # The web Service existed before both pods: its variables are in both.
    assert after["WEB_SERVICE_HOST"] == web.cluster_ip("web")
    old = env_of(web, "env-before")
    assert not [k for k in old if k.startswith("ENV_SVC_")], old
    assert old["WEB_SERVICE_HOST"] == web.cluster_ip("web")
    # The Service's arrival did not restart the old pod.
    now = web.get("pods", "env-before")["status"]["containerStatuses"][0]
    assert now["containerID"] == before and now["restartCount"] == 0, now


def test_dns_names_resolve_from_inside_a_pod(web):
    vip = web.cluster_ip("web")
    fqdn = re.compile(r"Name:\s+web(\.default(\.svc\.cluster\.local)?)?\s+Address:\s+" + re.escape(vip) + r"\b")
    for name in ("web", "web.default", "web.default.svc.cluster.local"):
        # busybox nslookup tries every search domain and exits 1 if any of them is NXDOMAIN: judge by the answer.
        r = web.exec("client", "nslookup", name, check=False)
        assert fqdn.search(r.stdout), (name, r.stdout, r.stderr)
    resolv = web.exec("client", "cat", "/etc/resolv.conf").stdout
    assert re.search(r"^search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local", resolv, re.M), resolv
    r = web.exec("client", "nslookup", "no-such-service.default.svc.cluster.local", check=False)
    assert vip not in r.stdout


# -- the Guestbook ------------------------------------------------------------------------------------------
def guestbook_url(fleet, node: str, **query) -> str:
    return f"http://{fleet.node_address(node)}:{GUESTBOOK_NODEPORT}/guestbook.php?{urllib.parse.urlencode(query)}"


def ready_frontends(cluster) -> list[dict]:
    pods = cluster.get("pods", "-l", "name=frontend")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]


def test_guestbook_end_to_end(cluster):
    t0 = time.monotonic()
    cluster.gk("images", "load", "all", "--inventory", str(cluster.fleet.inventory), timeout=300)
    loaded = time.monotonic() - t0
    files = {p.name: p.read_text() for p in sorted((REPO_ROOT / "manifests" / "guestbook").glob("*.yaml"))}
    assert len(files) == 7  # with the frontend-settings ConfigMap (the age-encrypted Secret is optional)
    cluster.commit(files, "the Guestbook")
    t0 = time.monotonic()
    cluster.gk("apply", *cluster.src(), "--wait", "--timeout", "240", timeout=330)
    deployed = time.monotonic() - t0

    fl = cluster.fleet
    value = f"hello-{uuid.uuid4().hex[:8]}"
    assert json.loads(http_get(guestbook_url(fl, "n1", cmd="set", key="messages", value=value))) == {"message": "Updated"}

    def read_back(node="n3"):
        got = try_get(guestbook_url(fl, node, cmd="get", key="messages"))
        return got is not None and json.loads(got).get("data") == value

    # Both slaves must have replicated: several consecutive reads (round robin over the slaves) return it.
    eventually(lambda: all(read_back() for _ in range(4)), timeout=30, interval=0.5, what="the entry read back on n3")
    written = time.monotonic() - t0
    print(f"\nguestbook: images load {loaded:.1f}s, apply --wait {deployed:.1f}s, deploy to first read {written:.1f}s")

    # Kill one frontend's container by hand on its node: the page keeps working through the other replicas.
    victim = ready_frontends(cluster)[0]
    node, name = victim["spec"]["nodeName"], victim["metadata"]["name"]
    ids = fl.docker(node, "ps", "-q", "--filter", f"label=io.gitkube.pod.name={name}",
                    "--filter", "label=io.gitkube.container.name=php-redis").stdout.split()
    assert len(ids) == 1, ids
    if cluster.proxy_mode == "haproxy":
        # HAProxy retries a refused connection on another server (retries + redispatch): no read fails, even
        # with no controller running.
        r = fl.docker(node, "rm", "-f", ids[0])
        assert r.returncode == 0, r.stderr
        for i in range(12):
            assert read_back(NODES[i % 3]), f"read {i} through {NODES[i % 3]} failed after killing {name}"
    else:
        # Kernel NAT has no retry (as kube-proxy's): the pod's infra container keeps its IP, so a connection
        # DNATed to it is refused until the controller sees the container gone and routes around it (or brings
        # it back). With `serve` running, reads through every node succeed again within a few seconds.
        serve = start_serve(cluster, resync=1, first_pass=True)
        try:
            r = fl.docker(node, "rm", "-f", ids[0])
            assert r.returncode == 0, r.stderr
            t_kill = time.monotonic()
            eventually(lambda: all(read_back(NODES[i % 3]) for i in range(12)), timeout=20, interval=0.2,
                       what=f"12 reads in a row through every node after killing {name}")
            print(f"guestbook (iptables): reads through every node good again {time.monotonic() - t_kill:.1f}s "
                  f"after the kill")
        finally:
            stop_serve(serve)

    cluster.gk("apply", *cluster.src(), "--wait", "--timeout", "120", timeout=200)
    eventually(lambda: len(ready_frontends(cluster)) == 3, timeout=60, interval=1, what="3 ready frontends")
    rc = cluster.get("rc", "frontend")
    assert rc["status"]["replicas"] == 3 and rc["status"].get("readyReplicas") == 3, rc["status"]
    for n in NODES:
        assert read_back(n), n
