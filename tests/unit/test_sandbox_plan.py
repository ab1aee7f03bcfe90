"""The sandbox's address plan: up to 45 nodes per sandbox, ten sandboxes side by side, nothing overlapping, all of
it inside 198.18.0.0/15 and outside the ClusterIP range."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from gitkube.reconcile.services import DEFAULT_SERVICE_CIDR
from gitkube.sandbox.netns import MAX_NODES, Sandbox, SandboxError


def test_no_two_sandboxes_nodes_or_pod_subnets_overlap(tmp_path: Path) -> None:
    bench = ipaddress.ip_network("198.18.0.0/15")
    services = ipaddress.ip_network(DEFAULT_SERVICE_CIDR)
    nets, addresses = [], set()
    for sid in range(10):
        sb = Sandbox(sid, base=tmp_path)
        node_net = ipaddress.ip_network(f"{sb.gateway}/24", strict=False)
        nets.append(node_net)
        for i in range(1, MAX_NODES + 1):
            p = sb.node(i)
            addr = ipaddress.ip_address(p.address)
            pods = ipaddress.ip_network(p.pod_cidr)
            assert addr in node_net and addr not in addresses
            addresses.add(addr)
            assert ipaddress.ip_interface(p.bip).network == pods and ipaddress.ip_interface(p.bip).ip == pods[1]
            assert pods.num_addresses >= 64  # room for 61 pods at least
            nets.append(pods)
    assert MAX_NODES >= 32
    for n in nets:
        assert n.subnet_of(bench) and not n.overlaps(services), n
    for i, a in enumerate(nets):
        for b in nets[i + 1:]:
            assert not a.overlaps(b), (a, b)


def test_small_sandboxes_keep_their_addresses(tmp_path: Path) -> None:
    p = Sandbox(1, base=tmp_path).node(3)
    assert (p.address, p.pod_cidr, p.bip) == ("198.18.1.13", "198.18.113.0/24", "198.18.113.1/24")
    assert Sandbox(7, base=tmp_path).node(32).pod_cidr == "198.18.78.128/26"
    with pytest.raises(SandboxError):
        Sandbox(0, base=tmp_path).node(MAX_NODES + 1)
