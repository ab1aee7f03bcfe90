"""Endpoints controller: which pod addresses and ports back each Service.

As Kubernetes' endpoints controller:
- only Services with a selector are managed (without one, Endpoints are written by hand);
- a pod selected by the Service counts when it has an IP, is not Succeeded/Failed and is not
  being deleted; Ready pods go to `addresses`, the others to `notReadyAddresses` (unless the
  Service has publishNotReadyAddresses, which also keeps terminating pods);
- each service port's targetPort is resolved per pod: a number is used as is, a name is looked
  up among the pod's container ports with the same name and protocol — a pod lacking it is left
  out for that port only;
- addresses with the same set of ports are packed into one subset (k8s' RepackSubsets); a
  headless Service without ports lists addresses with no ports.
Ordering is deterministic: addresses by (ip, pod name), ports by (name, port, protocol),
subsets by their ports (k8s orders by hash; the content is the same).

Glue: ServiceInfo from spec.selector, spec.ports (targetPort defaulted to port by the API),
spec.clusterIP == "None", spec.publishNotReadyAddresses. Pods are the stored pods, read through
`gitkube.api.views.PodView` (ip, node, ready, phase, deleting, labels, container ports,
hostname/subdomain).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

from gitkube.api.views import TERMINAL_PHASES, PodView

__all__ = [
    "ServicePortInfo",
    "ServiceInfo",
    "EndpointAddress",
    "EndpointPort",
    "EndpointSubset",
    "Endpoints",
    "find_port",
    "compute_endpoints",
    "compute_all_endpoints",
]

@dataclass(frozen=True)
class ServicePortInfo:
    port: int
    name: str = ""
    protocol: str = "TCP"
    target_port: int | str | None = None  # None: same as port


@dataclass(frozen=True)
class ServiceInfo:
    namespace: str
    name: str
    selector: Mapping[str, str] | None
    ports: tuple[ServicePortInfo, ...] = ()
    headless: bool = False  # clusterIP: None
    publish_not_ready: bool = False


@dataclass(frozen=True, order=True)
class EndpointAddress:
    ip: str
    target_name: str
    target_namespace: str
    target_uid: str
    node_name: str | None = None
    hostname: str | None = None

    def as_dict(self) -> dict:
        d: dict = {"ip": self.ip}
        if self.hostname:
            d["hostname"] = self.hostname
        if self.node_name:
            d["nodeName"] = self.node_name
        d["targetRef"] = {"kind": "Pod", "namespace": self.target_namespace, "name": self.target_name,
                          "uid": self.target_uid}
        return d


@dataclass(frozen=True, order=True)
class EndpointPort:
    name: str
    port: int
    protocol: str

    def as_dict(self) -> dict:
        d: dict = {"name": self.name} if self.name else {}
        d.update(port=self.port, protocol=self.protocol)
        return d


@dataclass(frozen=True)
class EndpointSubset:
    addresses: tuple[EndpointAddress, ...]
    not_ready_addresses: tuple[EndpointAddress, ...]
    ports: tuple[EndpointPort, ...]

    def as_dict(self) -> dict:
        d: dict = {}
        if self.addresses:
            d["addresses"] = [a.as_dict() for a in self.addresses]
        if self.not_ready_addresses:
            d["notReadyAddresses"] = [a.as_dict() for a in self.not_ready_addresses]
        if self.ports:
            d["ports"] = [p.as_dict() for p in self.ports]
        return d


@dataclass(frozen=True)
class Endpoints:
    namespace: str
    name: str
    subsets: tuple[EndpointSubset, ...]

    def as_dict(self) -> dict:
        """The Kubernetes JSON of this Endpoints object (without server-set metadata)."""
        d: dict = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": self.name, "namespace": self.namespace}}
        if self.subsets:
            d["subsets"] = [s.as_dict() for s in self.subsets]
        return d


def find_port(pod: PodView, port: ServicePortInfo) -> int | None:
    """The pod's port number for a service port: targetPort as a number, or the container port of that name."""
    target = port.port if port.target_port is None else port.target_port
    if isinstance(target, int):
        return target
    return pod.container_port(target, port.protocol)


def compute_endpoints(service: ServiceInfo, pods: Iterable[PodView],
                      deleting_uids: set[str] | frozenset[str] = frozenset()) -> Endpoints | None:
    """The Endpoints of one Service from the pods (None when the Service has no selector). Pods whose uid is in
    `deleting_uids` count as being deleted (this pass deletes them)."""
    if not service.selector:
        return None
    selector = service.selector.items()
    # address -> (ready, ports it serves); grouping by identical port sets is RepackSubsets.
    by_ports: dict[frozenset[EndpointPort], tuple[list[EndpointAddress], list[EndpointAddress]]] = defaultdict(
        lambda: ([], [])
    )
    for pod in pods:
        labels = pod.labels
        if not all(labels.get(k) == v for k, v in selector):
            continue
        ip = pod.ip
        if pod.namespace != service.namespace or not ip or pod.phase in TERMINAL_PHASES:
            continue
        if (pod.deleting or pod.uid in deleting_uids) and not service.publish_not_ready:
            continue
        hostname = pod.hostname if pod.hostname and pod.subdomain == service.name else None
        addr = EndpointAddress(ip, pod.name, pod.namespace, pod.uid, pod.node, hostname)
        ready = pod.ready or service.publish_not_ready
        if service.ports:
            ports = set()
            for sp in service.ports:
                num = find_port(pod, sp)
                if num is not None:
                    ports.add(EndpointPort(sp.name, num, sp.protocol))
            if not ports:
                continue
            key = frozenset(ports)
        elif service.headless:
            key = frozenset()
        else:
            continue
        by_ports[key][0 if ready else 1].append(addr)

    subsets = [
        EndpointSubset(tuple(sorted(ready)), tuple(sorted(not_ready)), tuple(sorted(ports)))
        for ports, (ready, not_ready) in by_ports.items()
    ]
    subsets.sort(key=lambda s: s.ports)
    return Endpoints(service.namespace, service.name, tuple(subsets))


def compute_all_endpoints(
    services: Iterable[ServiceInfo], pods: Iterable[PodView], deleting_uids: set[str] | frozenset[str] = frozenset()
) -> dict[tuple[str, str], Endpoints]:
    """The Endpoints of every Service with a selector, keyed by (namespace, name)."""
    by_ns: dict[str, list[PodView]] = defaultdict(list)
    for pod in pods:
        by_ns[pod.namespace].append(pod)
    out = {}
    for svc in services:
        ep = compute_endpoints(svc, by_ns.get(svc.namespace, ()), deleting_uids)
        if ep is not None:
            out[(svc.namespace, svc.name)] = ep
    return out


def serves_deleted_pods(endpoints: Iterable[Mapping], deleting_uids: set[str] | frozenset[str]) -> bool:
    """Whether stored Endpoints still send traffic to a pod being deleted: then the Services' data plane must be
    synced without it before its node stops it (traffic leaves a pod before its preStop hook and SIGTERM)."""
    for e in endpoints:
        for s in e.get("subsets") or ():
            for a in s.get("addresses") or ():
                if ((a.get("targetRef") or {}).get("uid")) in deleting_uids:
                    return True
    return False
