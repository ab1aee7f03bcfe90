"""/metrics for Prometheus (the official prometheus_client): the event counters of gitkube.instruments, counted
where they happen, plus gauges computed from the state DB at scrape time — pods by phase, node readiness,
container restarts and readiness, replicas, endpoints per Service, the applied and refused revisions, and the
usage of the latest sample — named as kube-state-metrics and the kubelet's resource metrics name them, with the
`gitkube_` prefix and their `namespace`/`pod`/`container`/`node` labels."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import gitkube.instruments  # noqa: F401 - its counters exist (at zero) in every process that serves /metrics
from gitkube.api.views import NodeView, PodView
from gitkube.server.context import CTX

routes = web.RouteTableDef()

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def _ns(obj: Mapping) -> str:
    return obj["metadata"].get("namespace") or "default"


def _name(obj: Mapping) -> str:
    return obj["metadata"]["name"]


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def revision_metrics(revisions: list[dict], applied: str | None) -> Iterable[Metric]:
    """The applied revision (info) and the latest refused one, when it is newer than the applied one."""
    info = _gauge("gitkube_revision_info", "The Git revision applied (value 1, the commit in `revision`).", ["revision"])
    if applied:
        info.add_metric([applied], 1)
    yield info
    refused = _gauge("gitkube_revision_refused_info", "The newest revision seen, when it was refused (its problems "
                     "count in `problems`); absent when the newest revision is applied.", ["revision", "problems"])
    if revisions and revisions[0].get("result") == "refused":
        lines = (revisions[0].get("message") or "").splitlines()
        refused.add_metric([revisions[0]["sha"], str(max(0, len(lines) - 1))], 1)
    yield refused


def node_metrics(nodes: list[dict]) -> Iterable[Metric]:
    """kube_node_status_condition (Ready) and kube_node_status_allocatable, gitkube-prefixed."""
    from gitkube.api.quantity import cpu_millis, memory_bytes

    cond = _gauge("gitkube_node_status_condition", "The node's Ready condition (kube-state-metrics' form: one "
                  "series per status, 1 for the current one).", ["node", "condition", "status"])
    alloc = _gauge("gitkube_node_status_allocatable", "The node's allocatable resources (cores, bytes, pods).",
                   ["node", "resource", "unit"])
    for n in nodes:
        v = NodeView(n)
        st = v.status
        ready = v.condition("Ready").get("status", "Unknown")
        for s in ("true", "false", "unknown"):
            cond.add_metric([_name(n), "Ready", s], 1.0 if ready.lower() == s else 0.0)
        a = st.get("allocatable") or st.get("capacity") or {}
        try:
            if "cpu" in a:
                alloc.add_metric([_name(n), "cpu", "core"], cpu_millis(str(a["cpu"])) / 1000)
            if "memory" in a:
                alloc.add_metric([_name(n), "memory", "byte"], memory_bytes(str(a["memory"])))
            if "pods" in a:
                alloc.add_metric([_name(n), "pods", "integer"], float(a["pods"]))
        except (ValueError, ArithmeticError):
            pass
    yield cond
    yield alloc


def pod_metrics(pods: list[dict]) -> Iterable[Metric]:
    """Phases (per pod and counted), pod info with its node, container restarts and readiness."""
    phase = _gauge("gitkube_pod_status_phase", "The pod's phase (one series per phase, 1 for the current one).",
                   ["namespace", "pod", "phase"])
    count = _gauge("gitkube_pods", "Pods by phase.", ["phase"])
    info = _gauge("gitkube_pod_info", "Where a pod runs (value 1).", ["namespace", "pod", "node", "pod_ip"])
    restarts = CounterMetricFamily("gitkube_pod_container_status_restarts", "Restarts of a pod's container.",
                                   labels=["namespace", "pod", "container"])
    ready = _gauge("gitkube_pod_container_status_ready", "Whether a pod's container is ready (1) or not (0).",
                   ["namespace", "pod", "container"])
    by_phase = dict.fromkeys(PHASES, 0)
    for p in pods:
        v = PodView(p)
        ph = v.phase
        by_phase[ph] = by_phase.get(ph, 0) + 1
        for x in PHASES:
            phase.add_metric([_ns(p), _name(p), x], 1.0 if ph == x else 0.0)
        info.add_metric([_ns(p), _name(p), v.node or "", v.ip or ""], 1)
        for cs in v.container_statuses:
            restarts.add_metric([_ns(p), _name(p), cs["name"]], cs.get("restartCount") or 0)
            ready.add_metric([_ns(p), _name(p), cs["name"]], 1.0 if cs.get("ready") else 0.0)
    for ph, n in by_phase.items():
        count.add_metric([ph], n)
    yield from (phase, count, info, restarts, ready)


def workload_metrics(rcs: list[dict], deployments: list[dict], endpoints: list[dict]) -> Iterable[Metric]:
    """Desired and ready replicas of RCs and Deployments; ready and not-ready addresses of each Endpoints."""
    for kind, objs in (("replicationcontroller", rcs), ("deployment", deployments)):
        spec = _gauge(f"gitkube_{kind}_spec_replicas", f"Desired replicas of a {kind}.", ["namespace", kind])
        rdy = _gauge(f"gitkube_{kind}_status_ready_replicas", f"Ready replicas of a {kind}.", ["namespace", kind])
        for o in objs:
            spec.add_metric([_ns(o), _name(o)], (o.get("spec") or {}).get("replicas", 1))
            rdy.add_metric([_ns(o), _name(o)], (o.get("status") or {}).get("readyReplicas") or 0)
        yield spec
        yield rdy
    avail = _gauge("gitkube_endpoint_address_available", "Ready addresses of a Service's Endpoints (each address "
                   "once per port).", ["namespace", "endpoint"])
    notready = _gauge("gitkube_endpoint_address_not_ready", "Not-ready addresses of a Service's Endpoints.",
                      ["namespace", "endpoint"])
    for e in endpoints:
        subsets = e.get("subsets") or []
        avail.add_metric([_ns(e), _name(e)], sum(len(s.get("addresses") or []) * max(1, len(s.get("ports") or []))
                                                 for s in subsets))
        notready.add_metric([_ns(e), _name(e)], sum(len(s.get("notReadyAddresses") or []) *
                                                    max(1, len(s.get("ports") or [])) for s in subsets))
    yield avail
    yield notready


def usage_metrics(snap: Mapping | None) -> Iterable[Metric]:
    """The latest usage sample, as the kubelet's /metrics/resource names it (cumulative CPU seconds, working set)."""
    c_cpu = CounterMetricFamily("gitkube_container_cpu_usage_seconds", "Cumulative CPU time of a container.",
                                labels=["namespace", "pod", "container", "node"])
    c_mem = _gauge("gitkube_container_memory_working_set_bytes", "Working set of a container.",
                   ["namespace", "pod", "container", "node"])
    p_cpu = CounterMetricFamily("gitkube_pod_cpu_usage_seconds", "Cumulative CPU time of a pod's containers.",
                                labels=["namespace", "pod", "node"])
    p_mem = _gauge("gitkube_pod_memory_working_set_bytes", "Working set of a pod's containers.",
                   ["namespace", "pod", "node"])
    n_cpu = CounterMetricFamily("gitkube_node_cpu_usage_seconds", "Cumulative CPU time of gitkube's containers on "
                                "a node (pods, proxy, DNS).", labels=["node"])
    n_mem = _gauge("gitkube_node_memory_working_set_bytes", "Working set of gitkube's containers on a node.", ["node"])
    n_cores = _gauge("gitkube_node_cpu_usage_cores", "CPU in use on a node over the last sampling window, in cores.",
                     ["node"])
    p_cores = _gauge("gitkube_pod_cpu_usage_cores", "CPU in use by a pod over the last sampling window, in cores.",
                     ["namespace", "pod", "node"])
    for u in ((snap or {}).get("pods") or {}).values():
        p_cpu.add_metric([u["namespace"], u["name"], u["node"]], u["cpuSeconds"])
        p_mem.add_metric([u["namespace"], u["name"], u["node"]], u["memory"])
        if u.get("complete"):
            p_cores.add_metric([u["namespace"], u["name"], u["node"]], u["cpu"] / 1000)
        for c in u["containers"]:
            c_cpu.add_metric([u["namespace"], u["name"], c["name"], u["node"]], c["cpuSeconds"])
            c_mem.add_metric([u["namespace"], u["name"], c["name"], u["node"]], c["memory"])
    for name, u in ((snap or {}).get("nodes") or {}).items():
        n_cpu.add_metric([name], u["cpuSeconds"])
        n_mem.add_metric([name], u["memory"])
        n_cores.add_metric([name], u["cpu"] / 1000)
    yield from (c_cpu, c_mem, p_cpu, p_mem, p_cores, n_cpu, n_mem, n_cores)


class StoreCollector:
    """Gauges from one read of the state DB, made at scrape time."""

    def __init__(self, store):
        self.store = store

    def collect(self) -> Iterable[Metric]:
        from gitkube.controller.usage import stored_usage

        st = self.store
        yield from revision_metrics(st.revisions(limit=1), st.applied_revision())
        yield from node_metrics(st.list("Node"))
        yield from pod_metrics([p for p in st.list("Pod", namespace="*")])
        yield from workload_metrics(st.list("ReplicationController", namespace="*"),
                                    st.list("Deployment", namespace="*"), st.list("Endpoints", namespace="*"))
        yield from usage_metrics(stored_usage(st))


class _ProcessCounters:
    """The process-wide registry (gitkube.instruments' counters, process and Python collectors)."""

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()


def exposition(store) -> bytes:
    """The text exposition of one scrape: counters of this process and gauges of the state DB."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_ProcessCounters())
    reg.register(StoreCollector(store))
    return generate_latest(reg)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = await request.app[CTX].read(exposition)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
