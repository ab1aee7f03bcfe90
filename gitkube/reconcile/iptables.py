"""Services in the kernel, as kube-proxy's iptables mode does it: the `iptables-restore` text that makes every
ClusterIP:port and NodePort of the Services reach their ready endpoints by DNAT, balanced by per-endpoint
probability rules, with no userspace hop.

Pure: the same Services and Endpoints the HAProxy configuration is rendered from give the same text on every
node. `gitkube.nodes.dataplane.kernelproxy` writes it to each node, where it is applied in one transaction
(`iptables-restore --noflush`: gitkube's chains are replaced whole, nothing else is touched).

The chains follow kube-proxy's, with gitkube's prefix:
- nat `GK-SERVICES` (jumped to from PREROUTING and OUTPUT): one rule per ClusterIP:port to its `GK-SVC-…` chain,
  then local-destination traffic to `GK-NODEPORTS`;
- `GK-SVC-…`: traffic that did not come from a local pod is marked for masquerade; then one rule per ready
  endpoint, the i-th of n taken with probability 1/(n-i) so each gets 1/n (sessionAffinity is always None:
  gitkube's validation refuses ClientIP);
- `GK-SEP-…`: the endpoint's own traffic (hairpin) is marked; DNAT to ip:port;
- `GK-NODEPORTS`: NodePort traffic is marked (the reply must come back through this node), then its service chain;
- `GK-POSTROUTING` (from POSTROUTING): marked traffic is masqueraded;
- filter `GK-FORWARD` (from FORWARD, ahead of Docker's DROP policy): marked or DNATed connections pass.
A service port without ready endpoints gets no rule: its ClusterIP (bound on lo) and its NodePort then have no
listener, so a connection is refused at once, as kube-proxy's REJECT rule does.

UDP has no connection to end, so the kernel keeps sending a flow where its conntrack entry says for as long as the
client keeps sending (a resolver on a fixed source port: for ever). As kube-proxy does, the node deletes the entries
of a UDP endpoint that left a service port (`conntrack -D --orig-dst CLUSTER_IP --reply-src ENDPOINT`, and by the
NodePort), and those of a UDP service port that gains its first endpoint (they were made while nothing answered).
The rules text names each UDP endpoint on a `#gk-udp CLUSTER_IP PORT NODEPORT ENDPOINT_IP` line for that: the node
compares them with the ones it applied last (`gitkube.nodes.images.app`'s apply loop).
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Iterable, Mapping

from gitkube.reconcile.endpoints import Endpoints
from gitkube.reconcile.services import ProxyPort, ProxyService, backends

__all__ = ["MASQ_MARK", "POD_BRIDGE", "JUMPS", "UDP_LINE", "chain_name", "render_iptables", "rules_tag"]

MASQ_MARK = "0x4000/0x4000"  # kube-proxy's masquerade bit
POD_BRIDGE = "docker0"  # where a node's pods come from: their traffic to a ClusterIP keeps its source address
# (table, built-in chain, gitkube's chain): the jumps into gitkube's chains, inserted first in each built-in one.
JUMPS = (("nat", "PREROUTING", "GK-SERVICES"), ("nat", "OUTPUT", "GK-SERVICES"),
         ("nat", "POSTROUTING", "GK-POSTROUTING"), ("filter", "FORWARD", "GK-FORWARD"))
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
UDP_LINE = "#gk-udp"  # `#gk-udp CLUSTER_IP PORT NODEPORT(0: none) ENDPOINT_IP`: whose conntrack entries to clear


def chain_name(prefix: str, *parts: object) -> str:
    """A stable chain name for a service port or endpoint, as kube-proxy makes them (hash, base32, 16 chars)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return f"GK-{prefix}-" + base64.b32encode(digest).decode()[:16]


@dataclass(frozen=True)
class _Port:
    service: ProxyService
    port: ProxyPort
    endpoints: tuple[tuple[str, int], ...]

    @property
    def comment(self) -> str:
        # namespace and name are DNS labels and the port name a DNS label too: safe inside quotes.
        s, p = self.service, self.port
        return f'"{s.namespace}/{s.name}:{p.name or p.port}"'

    @property
    def svc_chain(self) -> str:
        return chain_name("SVC", self.service.namespace, self.service.name, self.port.port, self.port.protocol)

    def sep_chain(self, ip: str, port: int) -> str:
        return chain_name("SEP", self.service.namespace, self.service.name, self.port.port, self.port.protocol,
                          ip, port)


def _ports(services: Iterable[ProxyService], endpoints: Mapping[tuple[str, str], Endpoints]) -> list[_Port]:
    out = []
    for s in sorted(services, key=lambda s: (s.namespace, s.name)):
        if s.cluster_ip == "None":
            continue
        ep = endpoints.get((s.namespace, s.name))
        for p in sorted(s.ports, key=lambda p: (p.port, p.protocol)):
            if p.protocol in _PROTOCOLS:
                out.append(_Port(s, p, tuple(backends(ep, p))))
    return out


def _probability(i: int, n: int) -> str:
    # kube-proxy prints 1/(n-i) with 10 decimals; the last endpoint takes what is left without a match.
    return f"{1.0 / (n - i):.10f}"


def render_iptables(services: Iterable[ProxyService], endpoints: Mapping[tuple[str, str], Endpoints],
                    pod_bridge: str = POD_BRIDGE, record: str = "") -> str:
    """The `iptables-restore --noflush` text of gitkube's nat and filter chains for these Services and their ready
    endpoints; its first line carries a tag of the rest, which the node reports once it is in effect. `record`
    (comment lines: the Services' allocation record) goes after that line, inside the tag: the rules file on every
    node then keeps the ClusterIPs and NodePorts for a rebuild, as HAProxy's configuration does in that mode."""
    ports = _ports(services, endpoints)
    udp = sorted({f"{UDP_LINE} {p.service.cluster_ip} {p.port.port} {p.port.node_port or 0} {ip}"
                  for p in ports if p.port.protocol == "UDP" for ip, _ in p.endpoints})
    chains = ["GK-SERVICES", "GK-NODEPORTS", "GK-POSTROUTING", "GK-MARK-MASQ"]
    rules = [
        f"-A GK-MARK-MASQ -j MARK --or-mark {MASQ_MARK.split('/')[0]}",
        f"-A GK-POSTROUTING -m mark ! --mark {MASQ_MARK} -j RETURN",
        # Clear the mark first: a packet re-traversing the stack must not be masqueraded twice (kube-proxy).
        f"-A GK-POSTROUTING -j MARK --xor-mark {MASQ_MARK.split('/')[0]}",
        "-A GK-POSTROUTING -j MASQUERADE",
    ]
    for p in ports:
        if not p.endpoints:
            continue
        s, proto = p.service, _PROTOCOLS[p.port.protocol]
        svc = p.svc_chain
        chains.append(svc)
        rules.append(f"-A GK-SERVICES -d {s.cluster_ip}/32 -p {proto} -m {proto} --dport {p.port.port} "
                     f"-m comment --comment {p.comment} -j {svc}")
        if p.port.node_port:
            rules.append(f"-A GK-NODEPORTS -p {proto} -m {proto} --dport {p.port.node_port} "
                         f"-m comment --comment {p.comment} -j GK-MARK-MASQ")
            rules.append(f"-A GK-NODEPORTS -p {proto} -m {proto} --dport {p.port.node_port} "
                         f"-m comment --comment {p.comment} -j {svc}")
        rules.append(f"-A {svc} ! -i {pod_bridge} -j GK-MARK-MASQ")
        seps = [(p.sep_chain(ip, port), ip, port) for ip, port in p.endpoints]
        n = len(seps)
        for i, (sep, ip, port) in enumerate(seps):
            pick = f"-m statistic --mode random --probability {_probability(i, n)} " if i < n - 1 else ""
            rules.append(f"-A {svc} -m comment --comment {p.comment} {pick}-j {sep}")
        for sep, ip, port in seps:
            chains.append(sep)
            rules.append(f"-A {sep} -s {ip}/32 -j GK-MARK-MASQ")
            rules.append(f"-A {sep} -p {proto} -m {proto} -j DNAT --to-destination {ip}:{port}")
    rules.append("-A GK-SERVICES -m addrtype --dst-type LOCAL -j GK-NODEPORTS")
    nat = ["*nat", *(f":{c} - [0:0]" for c in chains), *rules, "COMMIT"]
    filt = ["*filter", ":GK-FORWARD - [0:0]",
            f"-A GK-FORWARD -m mark --mark {MASQ_MARK} -j ACCEPT",
            "-A GK-FORWARD -m conntrack --ctstate DNAT -j ACCEPT",
            "COMMIT"]
    body = record + "\n".join(udp + nat + filt) + "\n"
    return f"# gitkube-rules {rules_tag(body)}\n{body}"


def rules_tag(body: str) -> str:
    """The tag of a rules text (what the node reports back once it applied it)."""
    return hashlib.sha256(body.encode()).hexdigest()[:16]
