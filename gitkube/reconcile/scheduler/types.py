"""Inputs and outputs of the scheduler: what a node offers, what a pod asks for, what was decided.

A stored pod reaches the scheduler only as a `SchedulingRequest`, built by `SchedulingRequest.from_pod(PodView)`:
its requests, host ports and hostPaths parsed once into plain numbers and tuples for the hot loop. A node is a
`NodeInfo` (gitkube.reconcile.cluster.node_info from a stored Node):

    NodeInfo(name=node.metadata.name, labels=node.metadata.labels,
             cpu_millis=cpu_millis(alloc["cpu"]), memory_bytes=memory_bytes(alloc["memory"]),
             pods=int(alloc["pods"]), ready=<Ready condition is "True">,
             unschedulable=node.spec.unschedulable)
"""

from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

from gitkube.api import cpu_millis as parse_cpu, memory_bytes as parse_memory
from gitkube.api.views import PodView

# Kubernetes' defaults for a container that requests nothing, used by the priorities only
# (pkg/scheduler: DefaultMilliCPURequest, DefaultMemoryRequest), so that many "free" pods
# still spread instead of all landing on the first node.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

MAX_PRIORITY = 10  # v1.1 priorities score 0..10


@dataclass(frozen=True)
class NodeInfo:
    """A node as the scheduler sees it: labels, allocatable resources and condition."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    cpu_millis: int = 0
    memory_bytes: int = 0
    pods: int = 110  # kubelet's default --max-pods
    ready: bool = True
    unschedulable: bool = False


@dataclass(frozen=True)
class ContainerRequest:
    """What one container requests; None means "not set" (0 for fit, the default for priorities)."""

    cpu_millis: int | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class SchedulingRequest:
    """What one pod asks of a node, compiled for the scheduler: not a view of the pod but its scheduling request,
    with resource requests, host ports and hostPaths parsed once into plain ints and tuples. The scheduler's hot loop
    (every pending pod against every node, bench/bench_scheduler.py) reads these instead of walking the pod's JSON
    and parsing quantities ("250m", "128Mi") again for each node. Built from a stored pod only by `from_pod`."""

    uid: str
    namespace: str = "default"
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[ContainerRequest, ...] = ()
    # (hostIP, hostPort, protocol); "" or "0.0.0.0" means every address of the node.
    host_ports: tuple[tuple[str, int, str], ...] = ()
    # (path, read_only) for each hostPath volume.
    host_paths: tuple[tuple[str, bool], ...] = ()
    node_name: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    # Keys of the RCs / Services whose selector matches this pod ("rc:ns/name", "svc:ns/name").
    spread_keys: frozenset[str] = frozenset()

    # Derived once, so the hot loop reads plain ints.
    cpu_millis: int = field(init=False, repr=False, compare=False)
    memory_bytes: int = field(init=False, repr=False, compare=False)
    nonzero_cpu_millis: int = field(init=False, repr=False, compare=False)
    nonzero_memory_bytes: int = field(init=False, repr=False, compare=False)
    ports: frozenset[tuple[str, int, str]] = field(init=False, repr=False, compare=False)
    paths: tuple[tuple[str, bool], ...] = field(init=False, repr=False, compare=False)

    @classmethod
    def from_pod(cls, pod: PodView, spread_keys: frozenset[str] = frozenset()) -> "SchedulingRequest":
        """The scheduling request of a stored pod. `spread_keys`: "rc:ns/name" / "svc:ns/name" of the RCs and
        Services whose selector matches it (the selector spreading priority's input)."""
        containers = []
        ports = []
        mounts_ro: dict[str, bool] = {}
        for c in pod.containers:
            req = (c.get("resources") or {}).get("requests") or {}
            containers.append(ContainerRequest(parse_cpu(req["cpu"]) if "cpu" in req else None,
                                               parse_memory(req["memory"]) if "memory" in req else None))
            for port in c.get("ports") or ():
                if port.get("hostPort"):
                    ports.append((port.get("hostIP") or "", port["hostPort"], port.get("protocol", "TCP")))
            for vm in c.get("volumeMounts") or ():
                mounts_ro[vm["name"]] = mounts_ro.get(vm["name"], True) and bool(vm.get("readOnly"))
        spec = pod.spec
        paths = tuple((v["hostPath"]["path"], mounts_ro.get(v["name"], True))
                      for v in spec.get("volumes") or () if v.get("hostPath"))
        return cls(
            uid=pod.uid, namespace=pod.namespace, name=pod.meta["name"], labels=pod.labels,
            containers=tuple(containers), host_ports=tuple(ports), host_paths=paths, node_name=spec.get("nodeName"),
            node_selector=spec.get("nodeSelector") or {}, spread_keys=spread_keys,
        )

    def __post_init__(self) -> None:
        cpu = mem = nz_cpu = nz_mem = 0
        for c in self.containers:
            cpu += c.cpu_millis or 0
            mem += c.memory_bytes or 0
            # k8s v1.1 getNonzeroRequests: an unset (or zero) request counts as the default.
            nz_cpu += c.cpu_millis or DEFAULT_MILLI_CPU_REQUEST
            nz_mem += c.memory_bytes or DEFAULT_MEMORY_REQUEST
        s = object.__setattr__
        s(self, "cpu_millis", cpu)
        s(self, "memory_bytes", mem)
        s(self, "nonzero_cpu_millis", nz_cpu)
        s(self, "nonzero_memory_bytes", nz_mem)
        s(self, "ports", frozenset(normalize_port(*p) for p in self.host_ports if p[1]))
        s(self, "paths", tuple((normalize_path(p), bool(ro)) for p, ro in self.host_paths))


def normalize_port(ip: str, port: int, protocol: str) -> tuple[str, int, str]:
    """Canonical (hostIP, port, protocol): empty IP is the wildcard, protocol defaults to TCP."""
    return (ip or "0.0.0.0", int(port), (protocol or "TCP").upper())


def normalize_path(path: str) -> str:
    """Canonical hostPath so that /data and /data/ are the same directory."""
    return posixpath.normpath(path) if path else path


class NodeUsage:
    """What the pods bound to one node already use; updated in place as pods are bound.

    Mutable on purpose: it is the scheduler's working state (k8s' NodeInfo cache), never
    a value that crosses layers.
    """

    __slots__ = ("cpu", "mem", "nz_cpu", "nz_mem", "count", "ports", "paths_any", "paths_rw", "spread")

    def __init__(self) -> None:
        self.cpu = 0  # sum of requests as written (for fit)
        self.mem = 0
        self.nz_cpu = 0  # sum of non-zero requests (for priorities)
        self.nz_mem = 0
        self.count = 0
        # (port, protocol) -> Counter of host IPs using it
        self.ports: dict[tuple[int, str], Counter[str]] = {}
        self.paths_any: Counter[str] = Counter()
        self.paths_rw: Counter[str] = Counter()
        # frozenset of spread keys -> number of pods on the node carrying exactly that set
        self.spread: Counter[frozenset[str]] = Counter()

    @classmethod
    def of(cls, pods) -> "NodeUsage":
        """Usage of a node from scratch, from the pods bound to it."""
        u = cls()
        for p in pods:
            u.add(p)
        return u

    def add(self, pod: SchedulingRequest) -> None:
        """Account for one more pod on this node."""
        self.cpu += pod.cpu_millis
        self.mem += pod.memory_bytes
        self.nz_cpu += pod.nonzero_cpu_millis
        self.nz_mem += pod.nonzero_memory_bytes
        self.count += 1
        for ip, port, proto in pod.ports:
            self.ports.setdefault((port, proto), Counter())[ip] += 1
        for path, ro in pod.paths:
            self.paths_any[path] += 1
            if not ro:
                self.paths_rw[path] += 1
        if pod.spread_keys:
            self.spread[pod.spread_keys] += 1

    def spread_count(self, keys: frozenset[str]) -> int:
        """Pods on this node matched by any of the selectors behind `keys`."""
        if not keys or not self.spread:
            return 0
        return sum(n for ks, n in self.spread.items() if not ks.isdisjoint(keys))


@dataclass(frozen=True)
class ScheduleResult:
    """Where one pod goes (or why nowhere): the node, per-reason node counts, the best scores."""

    pod_uid: str
    node: str | None
    reasons: Counter = field(default_factory=Counter)  # reason -> number of nodes failing it
    scores: tuple[tuple[str, int], ...] = ()  # best few (node, total score), best first
    num_nodes: int = 0

    @property
    def message(self) -> str:
        """The FailedScheduling event text when no node fits, else ''."""
        return "" if self.node is not None else failed_scheduling_message(self.num_nodes, self.reasons)


def failed_scheduling_message(num_nodes: int, reasons: Mapping[str, int]) -> str:
    """Kubernetes' FailedScheduling text: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) ...`."""
    # As k8s' FitError.Error(): "<count> <reason>" strings sorted as strings, joined by ", ".
    parts = sorted(f"{n} {reason}" for reason, n in reasons.items() if n)
    return f"0/{num_nodes} nodes are available: {', '.join(parts)}."
