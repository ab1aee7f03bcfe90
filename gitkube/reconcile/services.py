"""Services' data plane decisions: which ClusterIP and NodePorts each Service holds (stable across passes), and
the text of the per-node proxy (HAProxy) configuration and cluster DNS hosts file that make them answer.

Pure: the I/O that binds addresses and runs the proxy and DNS containers is `gitkube.nodes.dataplane.proxy`.

Allocation follows the apiserver's rules: an address or port already held by a Service stays with it; an
explicitly requested one is honoured when it is free and in range, else the Service gets an error in
Kubernetes' words (`spec.clusterIP: Invalid value: "…": provided IP is already allocated`) and no address.
New ones are the lowest free (deterministic, so `diff` and `apply` agree).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from gitkube.api import Service
from gitkube.reconcile.containerenv import EnvService
from gitkube.reconcile.endpoints import Endpoints

__all__ = [
    "DEFAULT_SERVICE_CIDR",
    "DEFAULT_NODE_PORT_RANGE",
    "DNS_IP",
    "DNS_DOMAIN",
    "Allocation",
    "ProxyPort",
    "ProxyService",
    "DataPlane",
    "service_key",
    "node_port_key",
    "allocate_cluster_ips",
    "allocate_node_ports",
    "allocate",
    "proxy_services",
    "render_haproxy",
    "backends",
    "render_hosts",
    "env_services",
    "plan_dataplane",
]

DEFAULT_SERVICE_CIDR = "198.19.0.0/16"
DEFAULT_NODE_PORT_RANGE = (30000, 32767)
DNS_DOMAIN = "cluster.local"
# The cluster DNS address: the range's third address (.0 is the network, .1 is left alone as k8s leaves it
# for the kubernetes Service, .2 is dnsmasq on every node).
DNS_IP = "198.19.0.2"


def service_key(namespace: str, name: str) -> str:
    """The allocation map key of a Service: `ns/name`."""
    return f"{namespace}/{name}"


def node_port_key(namespace: str, name: str, port: int, protocol: str = "TCP") -> str:
    """The allocation map key of one service port's NodePort: `ns/name:port/PROTO`."""
    return f"{namespace}/{name}:{port}/{protocol}"


def _key(svc: Service) -> str:
    return service_key(svc.metadata.namespace or "default", svc.metadata.name)


def _reserved(net: ipaddress.IPv4Network, dns_ip: str | None) -> set[ipaddress.IPv4Address]:
    out = {net.network_address, net.broadcast_address}
    if net.num_addresses > 2:
        out.add(net.network_address + 1)
    if dns_ip:
        out.add(ipaddress.IPv4Address(dns_ip))
    return out


def _wants_ip(svc: Service) -> bool:
    return svc.spec.type != "ExternalName" and svc.spec.clusterIP != "None"


@dataclass(frozen=True)
class Allocation:
    """What every Service holds after a pass, and why some got nothing."""

    cluster_ips: dict[str, str] = field(default_factory=dict)  # ns/name -> IP ("None" for headless)
    node_ports: dict[str, int] = field(default_factory=dict)  # ns/name:port/PROTO -> node port
    errors: dict[str, tuple[str, ...]] = field(default_factory=dict)  # ns/name -> messages (k8s field: message)


def allocate_cluster_ips(
    services: Iterable[Service],
    previous: Mapping[str, str],
    cidr: str = DEFAULT_SERVICE_CIDR,
    dns_ip: str | None = DNS_IP,
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Decides each Service's ClusterIP: kept if held, requested if free and in range, else the lowest free.
    Over 60 lines: three passes over the Services (held, requested, new) that share the used-address table."""
    net = ipaddress.IPv4Network(cidr)
    reserved = _reserved(net, dns_ip)
    svcs = sorted(services, key=_key)
    present = {_key(s) for s in svcs}
    out: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    used: dict[ipaddress.IPv4Address, str] = {}

    def requested(s: Service) -> str | None:
        ip = s.spec.clusterIP
        return ip if ip not in (None, "", "None") else None

    # 1. What a present Service already holds stays with it (unless it now asks for another address).
    for s in svcs:
        k = _key(s)
        if not _wants_ip(s):
            continue
        prev = previous.get(k)
        if not prev or prev == "None":
            continue
        try:
            addr = ipaddress.IPv4Address(prev)
        except ValueError:
            continue
        req = requested(s)
        if (req is None or req == prev) and addr in net and addr not in reserved and addr not in used:
            used[addr] = k
            out[k] = prev
    # 2. Explicit requests, in key order; an address held by another Service is refused.
    for s in svcs:
        k = _key(s)
        if s.spec.clusterIP == "None" and s.spec.type != "ExternalName":
            out[k] = "None"
            continue
        if not _wants_ip(s) or k in out:
            continue
        req = requested(s)
        if req is None:
            continue
        field_ = "spec.clusterIP"
        try:
            addr = ipaddress.IPv4Address(req)
        except ValueError:
            errors.setdefault(k, []).append(f'{field_}: Invalid value: "{req}": must be a valid IP address, (e.g. 10.9.8.7)')
            continue
        if addr not in net:
            errors.setdefault(k, []).append(
                f'{field_}: Invalid value: "{req}": provided IP is not in the valid range. The range of valid IPs is {cidr}')
            continue
        if addr in reserved:
            errors.setdefault(k, []).append(
                f'{field_}: Invalid value: "{req}": provided IP is reserved (network, broadcast, .1 and the cluster DNS address)')
            continue
        if addr in used:
            errors.setdefault(k, []).append(f'{field_}: Invalid value: "{req}": provided IP is already allocated')
            continue
        used[addr] = k
        out[k] = req
    # 3. The rest get the lowest free address.
    hosts = None
    for s in svcs:
        k = _key(s)
        if not _wants_ip(s) or k in out or k in errors:
            continue
        if hosts is None:
            hosts = (a for a in net if a not in reserved)
        addr = next((a for a in hosts if a not in used), None)
        if addr is None:
            errors.setdefault(k, []).append(f"spec.clusterIP: Internal error: range {cidr} is full")
            continue
        used[addr] = k
        out[k] = str(addr)
    assert present >= set(out)
    return out, errors


def allocate_node_ports(
    services: Iterable[Service],
    previous: Mapping[str, int],
    port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE,
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Decides the NodePort of every port of every NodePort Service: kept, requested if free, else lowest free."""
    lo, hi = port_range
    svcs = sorted((s for s in services if s.spec.type == "NodePort"), key=_key)
    items: list[tuple[str, str, int, int | None]] = []  # (service key, np key, index, requested)
    for s in svcs:
        ns, name = s.metadata.namespace or "default", s.metadata.name
        for i, p in enumerate(s.spec.ports or ()):
            items.append((_key(s), node_port_key(ns, name, p.port, p.protocol), i, p.nodePort or None))
    out: dict[str, int] = {}
    errors: dict[str, list[str]] = {}
    used: dict[tuple[int, str], str] = {}  # (port, protocol) -> np key

    def proto(npk: str) -> str:
        return npk.rsplit("/", 1)[1]

    for sk, npk, i, req in items:  # 1. kept
        prev = previous.get(npk)
        if prev and (req is None or req == prev) and lo <= prev <= hi and (prev, proto(npk)) not in used:
            used[(prev, proto(npk))] = npk
            out[npk] = prev
    for sk, npk, i, req in items:  # 2. requested
        if npk in out or req is None:
            continue
        f = f"spec.ports[{i}].nodePort"
        if not lo <= req <= hi:
            errors.setdefault(sk, []).append(
                f"{f}: Invalid value: {req}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}")
            continue
        if (req, proto(npk)) in used:
            errors.setdefault(sk, []).append(f"{f}: Invalid value: {req}: provided port is already allocated")
            continue
        used[(req, proto(npk))] = npk
        out[npk] = req
    nxt = lo
    for sk, npk, i, req in items:  # 3. lowest free
        if npk in out or req is not None:
            continue
        while nxt <= hi and (nxt, proto(npk)) in used:
            nxt += 1
        if nxt > hi:
            errors.setdefault(sk, []).append(f"spec.ports[{i}].nodePort: Internal error: range {lo}-{hi} is full")
            continue
        used[(nxt, proto(npk))] = npk
        out[npk] = nxt
    return out, errors


def allocate(
    services: Iterable[Service],
    previous: Allocation | None = None,
    cidr: str = DEFAULT_SERVICE_CIDR,
    node_port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE,
    dns_ip: str | None = DNS_IP,
) -> Allocation:
    """ClusterIPs and NodePorts of all Services, keeping what each held in `previous`."""
    svcs = list(services)
    prev = previous or Allocation()
    ips, e1 = allocate_cluster_ips(svcs, prev.cluster_ips, cidr, dns_ip)
    ports, e2 = allocate_node_ports(svcs, prev.node_ports, node_port_range)
    errors: dict[str, list[str]] = {}
    for e in (e1, e2):
        for k, msgs in e.items():
            errors.setdefault(k, []).extend(msgs)
    # A Service with any error holds nothing (the apiserver would have refused it whole).
    for k in errors:
        ips.pop(k, None)
        for npk in [p for p in ports if p.startswith(k + ":")]:
            del ports[npk]
    return Allocation(ips, ports, {k: tuple(v) for k, v in sorted(errors.items())})


# --------------------------------------------------------------------------------------- proxy + DNS text

@dataclass(frozen=True)
class ProxyPort:
    """One service port as the proxy serves it."""

    name: str
    port: int
    protocol: str
    node_port: int | None = None


@dataclass(frozen=True)
class ProxyService:
    """A Service with its allocated ClusterIP ("None" when headless) and ports."""

    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[ProxyPort, ...]
    session_affinity: str = "None"


def proxy_services(services: Iterable[Service], alloc: Allocation) -> list[ProxyService]:
    """The Services that hold an address, with it and their NodePorts filled in, sorted by namespace/name."""
    out = []
    for s in sorted(services, key=_key):
        k = _key(s)
        ip = alloc.cluster_ips.get(k)
        if ip is None:
            continue
        ns = s.metadata.namespace or "default"
        ports = tuple(
            ProxyPort(p.name or "", p.port, p.protocol,
                      alloc.node_ports.get(node_port_key(ns, s.metadata.name, p.port, p.protocol)))
            for p in (s.spec.ports or ())
        )
        out.append(ProxyService(ns, s.metadata.name, ip, ports, s.spec.sessionAffinity))
    return out


def backends(ep: Endpoints | None, port: ProxyPort) -> list[tuple[str, int]]:
    """Ready (ip, port) pairs serving one service port; matched by port name as kube-proxy does."""
    if ep is None:
        return []
    out = set()
    for sub in ep.subsets:
        for p in sub.ports:
            if p.name == port.name and p.protocol == port.protocol:
                out.update((a.ip, p.port) for a in sub.addresses)
    return sorted(out, key=lambda t: (ipaddress.IPv4Address(t[0]), t[1]))


HAPROXY_HEADER = """\
# Written by gitkube from the Services and their ready Endpoints: do not edit, it is replaced on every change.
global
    maxconn 4096
    hard-stop-after 15m
    # Seamless reloads: the master hands the listening sockets to the new worker (-x), so no connection
    # queued on the old worker's sockets is reset when it stops listening.
    stats socket /run/haproxy/admin.sock mode 600 level user expose-fd listeners

defaults
    mode tcp
    timeout connect 3s
    timeout client 1h
    timeout server 1h
    retries 2
    option redispatch
"""


def render_haproxy(services: Iterable[ProxyService], endpoints: Mapping[tuple[str, str], Endpoints]) -> str:
    """The node proxy's configuration: a TCP frontend per ClusterIP:port (and per NodePort), ready backends."""
    out = [HAPROXY_HEADER]
    for s in sorted(services, key=lambda s: (s.namespace, s.name)):
        if s.cluster_ip == "None":
            continue
        ep = endpoints.get((s.namespace, s.name))
        for p in sorted(s.ports, key=lambda p: (p.port, p.protocol)):
            if p.protocol != "TCP":
                out.append(f"# {s.namespace}/{s.name} port {p.port}/{p.protocol}: not proxied (TCP only)\n")
                continue
            # DNS labels hold no dots, so namespace.name.port names are unique.
            base = f"{s.namespace}.{s.name}.{p.port}"
            out.append(f"\nfrontend fe.{base}\n    bind {s.cluster_ip}:{p.port}\n    default_backend be.{base}\n")
            if p.node_port:
                out.append(f"\nfrontend np.{base}\n    bind *:{p.node_port}\n    default_backend be.{base}\n")
            out.append(f"\nbackend be.{base}\n    balance {'source' if s.session_affinity == 'ClientIP' else 'roundrobin'}\n")
            for ip, port in backends(ep, p):
                out.append(f"    server {ip}:{port} {ip}:{port}\n")
    if not any(part.startswith("\nfrontend ") for part in out):
        # HAProxy refuses to start (or reload) with no listener at all, which left the last Service's frontends
        # bound after it was deleted. An abstract socket (no port, no file) keeps an empty config valid; it is
        # only there while no Service is, so a reload never finds it held by the old worker.
        out.append("\nfrontend gitkube.idle\n    bind abns@gitkube-idle\n")
    return "".join(out)


def render_hosts(services: Iterable[ProxyService], endpoints: Mapping[tuple[str, str], Endpoints] | None = None,
                 domain: str = DNS_DOMAIN) -> str:
    """The cluster DNS hosts file: `IP name name.ns name.ns.svc.DOMAIN` per Service (pod IPs for headless ones).

    The bare `name` goes only to a name no other namespace uses (or to the default namespace's): pods find
    their own namespace's Services through the search path first anyway."""
    svcs = sorted(services, key=lambda s: (s.namespace, s.name))
    namespaces_of: dict[str, set[str]] = {}
    for s in svcs:
        namespaces_of.setdefault(s.name, set()).add(s.namespace)
    lines = ["# Written by gitkube: the Services' names. Do not edit."]
    for s in svcs:
        nss = namespaces_of[s.name]
        names = ([s.name] if len(nss) == 1 or s.namespace == "default" else []) + [
            f"{s.name}.{s.namespace}", f"{s.name}.{s.namespace}.svc.{domain}"]
        if s.cluster_ip != "None":
            lines.append(f"{s.cluster_ip} {' '.join(names)}")
            continue
        ep = (endpoints or {}).get((s.namespace, s.name))
        ips = sorted({a.ip for sub in (ep.subsets if ep else ()) for a in sub.addresses}, key=ipaddress.IPv4Address)
        lines.extend(f"{ip} {' '.join(names)}" for ip in ips)
    return "\n".join(lines) + "\n"


def env_services(services: Iterable[ProxyService]) -> dict[str, list[EnvService]]:
    """What the pod runtime needs for service environment variables: namespace -> Services with a ClusterIP."""
    out: dict[str, list[EnvService]] = {}
    for s in sorted(services, key=lambda s: (s.namespace, s.name)):
        if s.cluster_ip == "None":
            continue
        out.setdefault(s.namespace, []).append(
            EnvService(s.name, s.cluster_ip, tuple((p.name or None, p.port, p.protocol) for p in s.ports)))
    return out


@dataclass(frozen=True)
class DataPlane:
    """Everything one pass hands to every node's `sync_services`, and to the pod runtime's ClusterContext."""

    allocation: Allocation
    services: tuple[ProxyService, ...]
    cluster_ips: tuple[str, ...]  # ClusterIPs to bind on every node (not the DNS address)
    dns_ip: str
    haproxy_cfg: str
    dns_hosts: str
    env: dict[str, list[EnvService]]
    iptables_rules: str = ""  # the kernel proxy's rules (gitkube.reconcile.iptables), the same on every node


def plan_dataplane(
    services: Iterable[Service],
    endpoints: Mapping[tuple[str, str], Endpoints],
    previous: Allocation | None = None,
    cidr: str = DEFAULT_SERVICE_CIDR,
    node_port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE,
    dns_ip: str = DNS_IP,
    domain: str = DNS_DOMAIN,
) -> DataPlane:
    """One pass of the Services data plane: allocations, then the proxy config and DNS hosts every node gets."""
    svcs = list(services)
    alloc = allocate(svcs, previous, cidr, node_port_range, dns_ip)
    ps = proxy_services(svcs, alloc)
    ips = tuple(sorted({s.cluster_ip for s in ps if s.cluster_ip != "None"}, key=ipaddress.IPv4Address))
    from gitkube.reconcile.iptables import render_iptables  # it builds on this module's types

    return DataPlane(alloc, tuple(ps), ips, dns_ip, render_haproxy(ps, endpoints) + allocation_record(alloc),
                     render_hosts(ps, endpoints, domain), env_services(ps),
                     render_iptables(ps, endpoints, record=allocation_record(alloc)))


ALLOCATION_MARK = "# gitkube-allocation "


def allocation_record(alloc: Allocation) -> str:
    """The allocations as comment lines of the proxy's configuration (HAProxy's config, or the kernel proxy's
    iptables-restore input; one per entry, short lines): every node's proxy carries them, so a lost state DB gets
    its Services' ClusterIPs and NodePorts back from any node."""
    lines = [f"{ALLOCATION_MARK}ip {k} {v}\n" for k, v in sorted(alloc.cluster_ips.items())]
    lines += [f"{ALLOCATION_MARK}port {k} {v}\n" for k, v in sorted(alloc.node_ports.items())]
    return "".join(lines) or f"{ALLOCATION_MARK}none\n"


def parse_allocation_record(text: str) -> Allocation | None:
    """Decides which allocations a proxy configuration records (None: it records none at all)."""
    ips: dict[str, str] = {}
    ports: dict[str, int] = {}
    seen = False
    for line in text.splitlines():
        if not line.startswith(ALLOCATION_MARK):
            continue
        seen = True
        parts = line[len(ALLOCATION_MARK):].split()
        if len(parts) == 3 and parts[0] == "ip":
            ips[parts[1]] = parts[2]
        elif len(parts) == 3 and parts[0] == "port" and parts[2].isdigit():
            ports[parts[1]] = int(parts[2])
    return Allocation(ips, ports) if seen else None
