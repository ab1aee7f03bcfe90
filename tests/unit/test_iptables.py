"""The kernel proxy's rules (kube-proxy's iptables mode) rendered from Services and their ready Endpoints."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from _pods import pod_view
from gitkube.api import parse_object
from gitkube.reconcile.endpoints import ServiceInfo, ServicePortInfo, compute_all_endpoints
from gitkube.nodes.images.app import KERNEL_PROXY_APPLY
from gitkube.reconcile.iptables import JUMPS, UDP_LINE, chain_name, render_iptables, rules_tag
from gitkube.reconcile.services import plan_dataplane


def svc(name, ports, type_="ClusterIP", **spec):
    return parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                         "spec": {"type": type_, "selector": {"app": name}, "ports": ports, **spec}})


def pods(app, n, ready=True, start=2):
    return [pod_view(f"{app}-{i}", uid=f"{app}-{i}", labels={"app": app}, ip=f"198.18.101.{start + i}", node="n1",
                     ready=ready, phase="Running") for i in range(n)]


def plan(services, infos, eps_pods):
    return plan_dataplane(services, compute_all_endpoints(infos, eps_pods))


WEB = svc("web", [{"port": 80, "targetPort": 8080, "nodePort": 30080}], "NodePort")
WEB_INFO = ServiceInfo("default", "web", {"app": "web"}, (ServicePortInfo(80, target_port=8080),))


def lines(text, prefix):
    return [ln for ln in text.splitlines() if ln.startswith(prefix)]


def test_dnat_per_endpoint_with_kube_proxy_probabilities():
    dp = plan([WEB], [WEB_INFO], pods("web", 3))
    text = dp.iptables_rules
    cip = dp.allocation.cluster_ips["default/web"]
    svc_chain = chain_name("SVC", "default", "web", 80, "TCP")
    assert f"-A GK-SERVICES -d {cip}/32 -p tcp -m tcp --dport 80 -m comment --comment \"default/web:80\" " \
           f"-j {svc_chain}" in text
    picks = lines(text, f"-A {svc_chain} -m comment")
    assert [re.search(r"--probability (\S+)", p).group(1) if "statistic" in p else None for p in picks] == [
        "0.3333333333", "0.5000000000", None]
    dnat = sorted(re.search(r"--to-destination (\S+)", ln).group(1) for ln in lines(text, "-A GK-SEP-") if "DNAT" in ln)
    assert dnat == ["198.18.101.2:8080", "198.18.101.3:8080", "198.18.101.4:8080"]
    # Traffic not from a local pod, NodePort traffic and an endpoint's own (hairpin) traffic is masqueraded.
    assert f"-A {svc_chain} ! -i docker0 -j GK-MARK-MASQ" in text
    assert "-A GK-NODEPORTS -p tcp -m tcp --dport 30080 -m comment --comment \"default/web:80\" -j GK-MARK-MASQ" in text
    assert f"-A GK-NODEPORTS -p tcp -m tcp --dport 30080 -m comment --comment \"default/web:80\" -j {svc_chain}" in text
    assert "-A GK-SEP-" in text and "-s 198.18.101.2/32 -j GK-MARK-MASQ" in text
    assert text.splitlines()[-1] == "COMMIT" and "*filter" in text and "-A GK-FORWARD -m conntrack --ctstate DNAT -j ACCEPT" in text
    # Local destinations go to the NodePorts last, as kube-proxy orders them.
    nat = text.split("*filter")[0]
    assert lines(nat, "-A GK-SERVICES")[-1] == "-A GK-SERVICES -m addrtype --dst-type LOCAL -j GK-NODEPORTS"


def test_every_declared_chain_is_used_and_every_jump_target_declared():
    dp = plan([WEB], [WEB_INFO], pods("web", 2))
    declared = {ln[1:].split()[0] for ln in dp.iptables_rules.splitlines() if ln.startswith(":")}
    targets = set(re.findall(r"-j (GK-[A-Z0-9-]+)", dp.iptables_rules))
    assert targets <= declared
    assert {g for _, _, g in JUMPS} <= declared


def test_unready_endpoints_and_no_endpoints_get_no_rule():
    none_ready = plan([WEB], [WEB_INFO], pods("web", 2, ready=False))
    assert "GK-SVC-" not in none_ready.iptables_rules and "-j DNAT" not in none_ready.iptables_rules
    one = plan([WEB], [WEB_INFO], pods("web", 1) + pods("web", 1, ready=False, start=9))
    assert "198.18.101.2:8080" in one.iptables_rules and "198.18.101.9" not in one.iptables_rules
    assert "statistic" not in one.iptables_rules  # one endpoint takes everything


def test_headless_is_skipped_and_udp_kept():
    headless = svc("db", [{"port": 5432}], clusterIP="None")
    dns = svc("dns", [{"name": "dns", "port": 53, "protocol": "UDP"}])
    infos = [ServiceInfo("default", "db", {"app": "db"}, (ServicePortInfo(5432),), headless=True),
             ServiceInfo("default", "dns", {"app": "dns"}, (ServicePortInfo(53, "dns", "UDP"),))]
    dp = plan([headless, dns], infos, pods("db", 1) + pods("dns", 2, start=20))
    text = dp.iptables_rules
    assert "5432" not in text
    assert "-p udp -m udp --dport 53" in text and "--to-destination 198.18.101.20:53" in text


def test_rules_are_deterministic_and_tagged_by_content():
    a = plan([WEB], [WEB_INFO], pods("web", 3)).iptables_rules
    b = plan([WEB], [WEB_INFO], list(reversed(pods("web", 3)))).iptables_rules
    c = plan([WEB], [WEB_INFO], pods("web", 2)).iptables_rules
    assert a == b and a != c
    first, body = a.split("\n", 1)
    assert first == f"# gitkube-rules {rules_tag(body)}"
    assert chain_name("SVC", "default", "web", 80, "TCP") != chain_name("SVC", "default", "web", 81, "TCP")
    assert re.fullmatch(r"GK-SEP-[A-Z2-7]{16}", chain_name("SEP", "a", "b", 1, "TCP", "1.2.3.4", 80))


def test_no_services_still_declares_the_base_chains():
    text = render_iptables([], {})
    assert ":GK-SERVICES - [0:0]" in text and ":GK-FORWARD - [0:0]" in text and "-j DNAT" not in text


def test_rules_carry_the_allocation_record_for_a_rebuild():
    from gitkube.reconcile.services import parse_allocation_record

    dp = plan([WEB], [WEB_INFO], pods("web", 2))
    rec = parse_allocation_record(dp.iptables_rules)
    assert rec is not None and rec.cluster_ips == dp.allocation.cluster_ips and rec.node_ports == dp.allocation.node_ports
    assert rec.node_ports == {"default/web:80": 30080} or 30080 in rec.node_ports.values()
    # The record is inside the tag (a new allocation is a new file) and iptables never sees it (comment lines).
    first, rest = dp.iptables_rules.split("\n", 1)
    assert first == f"# gitkube-rules {rules_tag(rest)}" and rest.startswith("# gitkube-allocation ")
    # No Service: the record still says so (a rebuild then knows the node's rules were read).
    assert parse_allocation_record(plan([], [], []).iptables_rules) is not None


def test_udp_endpoints_are_named_for_the_nodes_conntrack_cleanup():
    dns = svc("dns", [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}], "NodePort")
    info = ServiceInfo("default", "dns", {"app": "dns"}, (ServicePortInfo(53, "dns", "UDP"),))
    dp = plan([dns, WEB], [info, WEB_INFO], pods("dns", 2, start=20) + pods("web", 1))
    cip = dp.allocation.cluster_ips["default/dns"]
    assert lines(dp.iptables_rules, UDP_LINE) == [f"{UDP_LINE} {cip} 53 30053 198.18.101.20",
                                                  f"{UDP_LINE} {cip} 53 30053 198.18.101.21"]
    # TCP needs none (a connection ends), nor does a UDP port without ready endpoints.
    assert not lines(plan([dns], [info], pods("dns", 2, ready=False, start=20)).iptables_rules, UDP_LINE)


def _flush(tmp_path, old: str, new: str) -> list[str]:
    """Run the node's gk_udp_flush (the kernel proxy image's shell, under busybox) with a conntrack that logs."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "conntrack").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n')
    (tmp_path / "bin" / "conntrack").chmod(0o755)
    (tmp_path / "apply").write_bytes(KERNEL_PROXY_APPLY)
    (tmp_path / "old").write_text(old)
    (tmp_path / "new").write_text(new)
    r = subprocess.run([shutil.which("busybox") or "/bin/busybox", "sh", "-c", ". ./apply && gk_udp_flush old new"],
                       cwd=tmp_path, env={"PATH": f"{tmp_path}/bin:/usr/bin:/bin"}, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    calls = tmp_path / "calls"
    return sorted(calls.read_text().splitlines()) if calls.exists() else []


@pytest.mark.skipif(not (shutil.which("busybox") or os.path.exists("/bin/busybox")), reason="busybox-static")
def test_node_clears_udp_flows_of_a_gone_endpoint_and_of_a_newly_served_port(tmp_path):
    old = f"{UDP_LINE} 198.18.200.10 53 0 198.18.101.20\n{UDP_LINE} 198.18.200.10 53 0 198.18.101.21\n*nat\nCOMMIT\n"
    new = (f"{UDP_LINE} 198.18.200.10 53 0 198.18.101.21\n{UDP_LINE} 198.18.200.11 5353 30053 198.18.101.30\n"
           "*nat\nCOMMIT\n")
    assert _flush(tmp_path, old, new) == [
        "-D -p udp --orig-dst 198.18.200.10 --orig-port-dst 53 --reply-src 198.18.101.20",  # .20 left
        "-D -p udp --orig-dst 198.18.200.11 --orig-port-dst 5353",  # first endpoint: flows made while none answered
        "-D -p udp --orig-port-dst 30053",  # and by its NodePort
    ]


@pytest.mark.skipif(not (shutil.which("busybox") or os.path.exists("/bin/busybox")), reason="busybox-static")
def test_node_leaves_udp_flows_alone_when_no_udp_endpoint_changed(tmp_path):
    same = f"{UDP_LINE} 198.18.200.10 53 0 198.18.101.20\n*nat\n-A GK-X -j ACCEPT\nCOMMIT\n"
    assert _flush(tmp_path, same, same.replace("ACCEPT", "RETURN")) == []
