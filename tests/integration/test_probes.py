"""Probes on a real sandbox fleet: failing liveness (exec, tcpSocket, httpGet) restarts the container, healthy
liveness leaves it alone for a minute, readiness drives the Ready condition and honours initialDelaySeconds.

All the pods run at once (spread over the three nodes), driven by PodRuntime.sync + ProbeManager in one bounded
loop as `gitkube serve` will drive them; each test then reads its pod's recorded timeline."""
from __future__ import annotations

import concurrent.futures as cf
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest

from gitkube.api import parse_object
from gitkube.controller.apply import sync_node
from gitkube.nodes.transport.fleet import Fleet
from gitkube.nodes.inventory import load_inventory
from gitkube.nodes.kubelet.probes import ProbeManager
from gitkube.nodes.kubelet.runtime import ClusterContext, PodRuntime
from gitkube.api.views import parse_time
from gitkube.reconcile.podsync import PodWork
from tests.tls_helper import RecordingHandler, serve

IMAGE = "gitkube/busybox:latest"
HEALTHY_FOR = 60.0


def pod(name: str, node: str, command: str, liveness: dict | None = None, readiness: dict | None = None,
        ports: list[dict] | None = None) -> PodWork:
    c = {"name": "app", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", command]}
    if liveness:
        c["livenessProbe"] = liveness
    if readiness:
        c["readinessProbe"] = readiness
    if ports:
        c["ports"] = ports
    p = parse_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                      "spec": {"nodeName": node, "containers": [c], "terminationGracePeriodSeconds": 1}})
    return PodWork(p, str(uuid.uuid4()))


@dataclass
class Snapshot:
    t: float  # taken just after the readiness the status was computed from was read
    status: dict
    started_at: float | None  # the running app container's start (Docker's own time)
    container_id: str | None


@dataclass
class Run:
    pods: dict[str, PodWork]  # name -> work
    node_of: dict[str, str]
    history: dict[str, list[Snapshot]] = field(default_factory=dict)
    events: list[tuple[str, str, str, str]] = field(default_factory=list)  # pod name, reason, message, type

    def events_of(self, name: str, reason: str) -> list[str]:
        return [m for n, r, m, _ in self.events if n == name and r == reason]

    def last(self, name: str) -> dict:
        return self.history[name][-1].status


def ready_cond(status: dict) -> str | None:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"), None)


def restarts(status: dict) -> int:
    return max((cs.get("restartCount", 0) for cs in status.get("containerStatuses", [])), default=0)


class Driver:
    """A tiny controller loop: sync every node (in parallel), feed the probe manager, record what was seen."""

    def __init__(self, fleet: Fleet, nodes: list[str]):
        self.fleet = fleet
        self.runtimes = {n: PodRuntime(fleet[n]) for n in nodes}
        self.woken = threading.Event()
        self.lock = threading.Lock()
        self.run: Run | None = None
        self.pm = ProbeManager(fleet, self.runtimes, on_event=self._on_event, wake=self.woken.set)
        self.ctx = ClusterContext()
        self.pool = cf.ThreadPoolExecutor(max_workers=len(nodes))

    def _on_event(self, node, uid, key, reason, message, type_):
        name = key.split("/", 1)[1]
        with self.lock:
            self.run.events.append((name, reason, message, type_))

    def drive(self, pods: dict[str, PodWork], seconds: float, until=None, deleting: bool = False) -> None:
        """Sync the pods for at most `seconds` (or until `until(run)` holds), at least once a second."""
        run = self.run
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.woken.clear()
            ready = self.pm.readiness()
            t = time.time()
            by_node: dict[str, list[PodWork]] = {}
            for name, w in pods.items():
                w = PodWork(w.pod, w.uid, deleting=deleting, last_status=w.last_status)
                pods[name] = w
                by_node.setdefault(run.node_of[name], []).append(w)

            def one(node):
                res = sync_node(self.runtimes[node], by_node[node], self.ctx, ready=ready)
                self.pm.update(node, by_node[node], res.observed)
                return res

            results = dict(zip(by_node, self.pool.map(one, list(by_node))))
            names = {w.uid: n for n, w in pods.items()}
            with self.lock:
                for node, res in results.items():
                    for e in res.events:
                        if e.pod_uid in names:
                            run.events.append((names[e.pod_uid], e.reason, e.message, e.type))
                    for uid, st in res.statuses.items():
                        name = names[uid]
                        app = [o for o in res.observed if o.pod_uid == uid and o.container == "app" and o.state == "running"]
                        run.history.setdefault(name, []).append(
                            Snapshot(t, st, parse_time(app[-1].started_at) if app else None, app[-1].id if app else None))
                        pods[name] = PodWork(pods[name].pod, uid, deleting=deleting, last_status=st)
            if deleting and not any(o.pod_uid in names for res in results.values() for o in res.observed):
                return
            if until is not None and until(run):
                return
            self.woken.wait(timeout=1.0)

    def close(self):
        self.pm.close()
        self.pool.shutdown()


@pytest.fixture(scope="module")
def tls_server(fleet, tmp_path_factory):
    """An HTTPS server with a self-signed certificate on the sandbox's host address (198.18.K.1), reached from the
    nodes' side as any probe target."""
    srv = serve(f"198.18.{fleet.sid}.1", tmp_path_factory.mktemp("tls"))
    RecordingHandler.seen.clear()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def probe_run(fleet, tls_server):
    f = Fleet(load_inventory(fleet.inventory))
    nodes = f.names()
    drv = Driver(f, nodes)
    sleep = "sleep 3600"
    tls_host, tls_port = tls_server.server_address[0], tls_server.server_address[1]
    httpd = "mkdir -p /www && {extra} exec httpd -f -v -p 8080 -h /www"
    http_port = [{"name": "http", "containerPort": 8080}]
    specs = {
        "live-exec": dict(command=sleep, liveness={"exec": {"command": ["cat", "/tmp/healthy"]},
                                                    "periodSeconds": 1, "failureThreshold": 2}),
        "live-tcp": dict(command=sleep, liveness={"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 2}),
        "live-http": dict(command=httpd.format(extra=""), ports=http_port,
                          liveness={"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 2}),
        "healthy": dict(command=httpd.format(extra="echo ok > /www/healthz &&"), ports=http_port,
                        liveness={"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2, "failureThreshold": 3,
                                  "timeoutSeconds": 5}),
        "ready-fail": dict(command=sleep, readiness={"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}),
        "ready-delay": dict(command=sleep, readiness={"exec": {"command": ["true"]}, "initialDelaySeconds": 8, "periodSeconds": 1,
                                                      "timeoutSeconds": 5}),  # a loaded CI machine is no failure
        # The same HTTPS server probed with scheme HTTPS (Ready: the self-signed certificate is not checked, as the
        # kubelet does not) and with plain HTTP (never Ready: the scheme is really spoken).
        "ready-https": dict(command=sleep, readiness={"httpGet": {"host": tls_host, "port": tls_port, "path": "/healthz",
                                                                  "scheme": "HTTPS", "httpHeaders": [{"name": "X-Probe", "value": "https"}]},
                                                      "periodSeconds": 1, "timeoutSeconds": 3}),
        "ready-https-as-http": dict(command=sleep, readiness={"httpGet": {"host": tls_host, "port": tls_port, "path": "/healthz",
                                                                          "httpHeaders": [{"name": "X-Probe", "value": "http"}]},
                                                              "periodSeconds": 1, "timeoutSeconds": 3}),
    }
    pods, node_of = {}, {}
    for i, (name, kw) in enumerate(specs.items()):
        node_of[name] = nodes[i % len(nodes)]
        pods[name] = pod(name, node_of[name], **kw)
    drv.run = run = Run(pods, node_of)

    def healthy_long_enough(r: Run) -> bool:
        h = [s for s in r.history.get("healthy", []) if s.started_at]
        return bool(h) and h[-1].t - h[0].started_at >= HEALTHY_FOR + 1 and all(
            restarts(r.last(n)) >= 2 for n in ("live-exec", "live-tcp", "live-http"))

    t0 = time.monotonic()
    try:
        drv.drive(pods, 150, until=healthy_long_enough)
        run.seconds = time.monotonic() - t0
        yield run
    finally:
        drv.drive(pods, 60, deleting=True)
        drv.close()
        f.close()


def test_liveness_exec_failing_restarts_container(probe_run):
    assert restarts(probe_run.last("live-exec")) >= 2, probe_run.last("live-exec")
    unhealthy = probe_run.events_of("live-exec", "Unhealthy")
    assert unhealthy and all(m.startswith("Liveness probe failed: ") for m in unhealthy), unhealthy
    killing = probe_run.events_of("live-exec", "Killing")
    assert any("failed liveness probe" in m for m in killing), killing


def test_liveness_tcp_failing_restarts_container(probe_run):
    assert restarts(probe_run.last("live-tcp")) >= 2, probe_run.last("live-tcp")
    unhealthy = probe_run.events_of("live-tcp", "Unhealthy")
    assert any(m.startswith("Liveness probe failed: dial tcp ") and ":8080" in m for m in unhealthy), unhealthy
    assert any("failed liveness probe" in m for m in probe_run.events_of("live-tcp", "Killing"))


def test_liveness_http_failing_restarts_container(probe_run):
    assert restarts(probe_run.last("live-http")) >= 2, probe_run.last("live-http")
    unhealthy = probe_run.events_of("live-http", "Unhealthy")
    assert any("Liveness probe failed: HTTP probe failed with statuscode: 404" in m for m in unhealthy), unhealthy
    assert any("failed liveness probe" in m for m in probe_run.events_of("live-http", "Killing"))
    # The restarted container's status keeps the killed one as lastState.
    cs = probe_run.last("live-http")["containerStatuses"][0]
    assert cs.get("lastState", {}).get("terminated") or cs["state"].get("waiting"), cs


def test_healthy_liveness_no_restart_for_60s(probe_run, fleet):
    h = [s for s in probe_run.history["healthy"] if s.started_at]
    assert h[-1].t - h[0].started_at >= HEALTHY_FOR, (h[0], h[-1])
    assert {s.container_id for s in h} == {h[0].container_id}, [(round(s.t - h[0].started_at, 1), s.container_id) for s in h]
    assert all(restarts(s.status) == 0 and s.status["phase"] == "Running" for s in h), [
        (round(s.t - h[0].started_at, 1), restarts(s.status), s.status["phase"]) for s in h]
    bad = [e for e in probe_run.events if e[0] == "healthy" and e[1] in ("Unhealthy", "Killing")]
    assert not bad, bad
    # The probes did reach the server: httpd -v logged each answer (period 2 s over a minute: ~30 GETs).
    logs = fleet.docker(probe_run.node_of["healthy"], "logs", h[0].container_id)
    gets = (logs.stdout + logs.stderr).count("response:200")
    assert gets >= 20, logs.stdout[-500:] + logs.stderr[-500:]


def test_readiness_failing_never_ready(probe_run):
    running = [s for s in probe_run.history["ready-fail"] if s.status["phase"] == "Running"]
    assert running and running[-1].t - running[0].t >= 20
    assert all(ready_cond(s.status) == "False" for s in running)
    last = running[-1].status
    assert last["containerStatuses"][0]["ready"] is False and restarts(last) == 0
    cond = next(c for c in last["conditions"] if c["type"] == "Ready")
    assert cond.get("reason") == "ContainersNotReady", cond
    assert any(m.startswith("Readiness probe failed: ") for m in probe_run.events_of("ready-fail", "Unhealthy"))


def test_readiness_initial_delay(probe_run):
    snaps = [s for s in probe_run.history["ready-delay"] if s.started_at]
    ready = [s for s in snaps if ready_cond(s.status) == "True"]
    not_ready = [s for s in snaps if ready_cond(s.status) == "False"]
    assert ready, "never became Ready"
    first = ready[0].t - ready[0].started_at
    assert first >= 8.0, f"Ready {first:.2f}s after start, before initialDelaySeconds"
    assert first <= 8.0 + 1 + 3, f"Ready only {first:.2f}s after start"
    assert any(5.0 <= s.t - s.started_at < 8.0 for s in not_ready), [round(s.t - s.started_at, 2) for s in not_ready]
    assert all(ready_cond(s.status) == "True" for s in snaps if s.t > ready[0].t)
    assert restarts(probe_run.last("ready-delay")) == 0


def test_readiness_https_skips_certificate_checks_and_http_to_tls_fails(probe_run, tls_server):
    https = [s for s in probe_run.history["ready-https"] if s.status["phase"] == "Running"]
    assert any(ready_cond(s.status) == "True" for s in https), [ready_cond(s.status) for s in https]
    assert ("/healthz", "https", "gitkube-probe/1.0") in RecordingHandler.seen  # it did reach the server over TLS
    plain = [s for s in probe_run.history["ready-https-as-http"] if s.status["phase"] == "Running"]
    assert plain and all(ready_cond(s.status) == "False" for s in plain)
    host, port = tls_server.server_address[:2]
    failed = probe_run.events_of("ready-https-as-http", "Unhealthy")
    assert failed and all(m.startswith(f'Readiness probe failed: Get "http://{host}:{port}/healthz"') for m in failed), failed
    assert not [x for x in RecordingHandler.seen if x[1] == "http"]  # plain HTTP never got a request through
