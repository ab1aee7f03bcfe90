"""Resource usage (the Heapster / metrics-server role), pure: containers' readings of two samples → CPU in
millicores and memory working set per container, summed per pod and per node, as a JSON-able snapshot that
`gitkube top`, the metrics.k8s.io API and /metrics all read.

CPU is the delta of a container's cumulative CPU time between two readings over the time between them (as
metrics-server computes it from the kubelet's cumulative counters): a container seen once has no CPU figure yet and
its pod is left out, as metrics-server leaves it out. Memory is the working set: usage minus inactive file pages
(what `docker stats` and the kubelet report)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from gitkube.reconcile.podsync import parse_time


@dataclass(frozen=True)
class ContainerReading:
    """One stats reading of one container gitkube runs on a node."""

    id: str
    node: str
    namespace: str  # "" for gitkube's system containers (proxy, DNS): they count for the node only
    pod: str
    container: str
    cpu_ns: int  # cumulative CPU time, nanoseconds
    memory_bytes: int  # working set
    at: float  # when the engine read it, seconds since the epoch


def reading_from_stats(stats: Mapping, node: str, labels: Mapping[str, str], now: float) -> ContainerReading:
    """A reading from one Engine API stats answer (cgroup v1 or v2) and the container's gitkube labels."""
    cpu = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
    mem = stats.get("memory_stats") or {}
    detail = mem.get("stats") or {}
    inactive = detail.get("inactive_file", detail.get("total_inactive_file", 0)) or 0
    usage = mem.get("usage") or 0
    working = max(0, usage - inactive) if usage >= inactive else usage
    return ContainerReading(
        id=stats.get("id") or labels.get("id", ""), node=node,
        namespace=labels.get("io.gitkube.pod.namespace", ""), pod=labels.get("io.gitkube.pod.name", ""),
        container=labels.get("io.gitkube.container.name") or labels.get("io.gitkube.role", ""),
        cpu_ns=int(cpu), memory_bytes=int(working), at=parse_time(stats.get("read")) or now)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def millicores(prev: ContainerReading | None, cur: ContainerReading) -> int | None:
    """CPU in millicores between two readings of the same container; None without a usable earlier reading."""
    if prev is None or prev.id != cur.id or cur.at <= prev.at or cur.cpu_ns < prev.cpu_ns:
        return None
    return round((cur.cpu_ns - prev.cpu_ns) / ((cur.at - prev.at) * 1e9) * 1000)


def snapshot(previous: Mapping[str, ContainerReading], readings: list[ContainerReading],
             capacity: Mapping[str, tuple[int, int]], sampled_nodes: list[str], now: float) -> dict:
    """Usage per container, pod and node from this sample's readings and the previous sample's (by container id).

    capacity: node → (CPU millicores, memory bytes) for the nodes' percentages. Nodes in `sampled_nodes` answered;
    a node without readings of its own then shows zero usage. Returns the JSON-able snapshot (see module doc)."""
    pods: dict[str, dict] = {}
    nodes: dict[str, dict] = {n: {"cpu": 0, "memory": 0, "cpuSeconds": 0.0, "window": 0.0, "complete": True,
                                  "timestamp": _iso(now)} for n in sampled_nodes}
    for r in readings:
        prev = previous.get(r.id)
        mc = millicores(prev, r)
        window = (r.at - prev.at) if mc is not None else 0.0
        node = nodes.setdefault(r.node, {"cpu": 0, "memory": 0, "cpuSeconds": 0.0, "window": 0.0, "complete": True,
                                         "timestamp": _iso(now)})
        node["memory"] += r.memory_bytes
        node["cpuSeconds"] += r.cpu_ns / 1e9
        if mc is None:
            node["complete"] = False
        else:
            node["cpu"] += mc
            node["window"] = max(node["window"], window)
        if not r.namespace:
            continue  # a system container: the node's, no pod's
        key = f"{r.namespace}/{r.pod}"
        pod = pods.setdefault(key, {"namespace": r.namespace, "name": r.pod, "node": r.node, "cpu": 0, "memory": 0,
                                    "cpuSeconds": 0.0, "window": 0.0, "complete": True, "timestamp": _iso(r.at),
                                    "containers": []})
        pod["containers"].append({"name": r.container, "cpu": mc, "memory": r.memory_bytes,
                                  "cpuSeconds": r.cpu_ns / 1e9})
        pod["memory"] += r.memory_bytes
        pod["cpuSeconds"] += r.cpu_ns / 1e9
        if mc is None:
            pod["complete"] = False
        else:
            pod["cpu"] += mc
            pod["window"] = max(pod["window"], window)
    for name, n in nodes.items():
        cap_cpu, cap_mem = capacity.get(name, (0, 0))
        n["capacityCpu"], n["capacityMemory"] = cap_cpu, cap_mem
        n["cpuPercent"] = int(100 * n["cpu"] / cap_cpu) if cap_cpu else None  # truncated, as kubectl top
        n["memoryPercent"] = int(100 * n["memory"] / cap_mem) if cap_mem else None
    for p in pods.values():
        p["containers"].sort(key=lambda c: c["name"])
    return {"timestamp": _iso(now), "nodes": nodes, "pods": dict(sorted(pods.items()))}


def cpu_text(millis: int) -> str:
    """kubectl top's CPU(cores) column: millicores with an `m`."""
    return f"{int(millis)}m"


def memory_text(nbytes: int) -> str:
    """kubectl top's MEMORY(bytes) column: mebibytes with `Mi`."""
    return f"{int(nbytes) // (1024 * 1024)}Mi"


def top_pod_rows(snap: Mapping, pods: list[Mapping], *, containers: bool = False,
                 all_namespaces: bool = False) -> tuple[list[str], list[list[str]]]:
    """`top pods` headers and rows for the stored pods chosen (by namespace/selector), as kubectl top prints them;
    pods without a complete usage figure (seen in one sample only, or not running) are left out."""
    usage = snap.get("pods") or {}
    head = (["NAMESPACE"] if all_namespaces else []) + (["POD"] if containers else []) + \
        ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    rows = []
    for p in sorted(pods, key=lambda o: (o["metadata"].get("namespace") or "default", o["metadata"]["name"])):
        ns, name = p["metadata"].get("namespace") or "default", p["metadata"]["name"]
        u = usage.get(f"{ns}/{name}")
        if not u or not u.get("complete"):
            continue
        pre = [ns] if all_namespaces else []
        if containers:
            rows += [pre + [name, c["name"], cpu_text(c["cpu"] or 0), memory_text(c["memory"])] for c in u["containers"]]
        else:
            rows.append(pre + [name, cpu_text(u["cpu"]), memory_text(u["memory"])])
    return head, rows


def top_node_rows(snap: Mapping, names: list[str]) -> tuple[list[str], list[list[str]]]:
    """`top nodes` headers and rows: usage with percentages of the node's allocatable CPU and memory."""
    head = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    rows = []
    for name in sorted(names):
        u = (snap.get("nodes") or {}).get(name)
        if not u or not u.get("complete", True) and not u.get("window"):
            rows.append([name, "<unknown>", "<unknown>", "<unknown>", "<unknown>"])
            continue
        pct = lambda v: "<unknown>" if v is None else f"{v}%"  # noqa: E731
        rows.append([name, cpu_text(u["cpu"]), pct(u.get("cpuPercent")), memory_text(u["memory"]),
                     pct(u.get("memoryPercent"))])
    return head, rows
