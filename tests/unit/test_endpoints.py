"""Endpoints controller: readiness, named target ports, skipped pods, packing and ordering."""

from _pods import pod_view
from gitkube.reconcile.endpoints import (
    EndpointPort,
    ServiceInfo,
    ServicePortInfo,
    compute_all_endpoints,
    compute_endpoints,
)

WEB = {"app": "web"}


def pod(name, ip, ready=True, ports=(("http", 8080),), **kw):
    kw.setdefault("labels", WEB)
    kw.setdefault("phase", "Running")
    return pod_view(name, ip=ip, node="n1", ready=ready, ports=ports, **kw)


SVC = ServiceInfo("default", "web", WEB, (ServicePortInfo(80, name="http", target_port="http"),))


def test_ready_and_not_ready_addresses():
    ep = compute_endpoints(SVC, [pod("b", "10.0.0.2"), pod("a", "10.0.0.3"), pod("c", "10.0.0.1", ready=False)])
    (s,) = ep.subsets
    assert [a.ip for a in s.addresses] == ["10.0.0.2", "10.0.0.3"]
    assert [a.target_name for a in s.not_ready_addresses] == ["c"]
    assert s.ports == (EndpointPort("http", 8080, "TCP"),)
    assert ep.as_dict()["subsets"][0]["notReadyAddresses"][0] == {
        "ip": "10.0.0.1", "nodeName": "n1",
        "targetRef": {"kind": "Pod", "namespace": "default", "name": "c", "uid": "uid-c"}}


def test_named_target_port_resolved_per_pod():
    pods = [pod("old", "10.0.0.1", ports=(("http", 8080),)), pod("new", "10.0.0.2", ports=(("http", 9090),)),
            pod("none", "10.0.0.3", ports=(("metrics", 9100),))]
    ep = compute_endpoints(SVC, pods)
    assert [(s.ports[0].port, [a.target_name for a in s.addresses]) for s in ep.subsets] == [
        (8080, ["old"]), (9090, ["new"])]


def test_protocol_must_match_for_named_port_and_int_target_is_taken_as_is():
    svc = ServiceInfo("default", "dns", WEB, (ServicePortInfo(53, name="dns", protocol="UDP", target_port="dns"),
                                              ServicePortInfo(8053, name="raw", target_port=5353)))
    p = pod("a", "10.0.0.1", ports=(("dns", 53),))  # TCP only
    (s,) = compute_endpoints(svc, [p]).subsets
    assert s.ports == (EndpointPort("raw", 5353, "TCP"),)


def test_skipped_pods():
    pods = [pod("noip", None), pod("done", "10.0.0.1", phase="Succeeded"), pod("dying", "10.0.0.2", deleting=True),
            pod("other", "10.0.0.3", labels={"app": "db"}),
            pod_view("x", uid="u", namespace="elsewhere", labels=WEB, ip="10.0.0.4", ready=True, phase="Running")]
    assert compute_endpoints(SVC, pods).subsets == ()
    assert compute_endpoints(ServiceInfo("default", "manual", None, SVC.ports), pods) is None


def test_publish_not_ready_and_headless():
    svc = ServiceInfo("default", "web", WEB, SVC.ports, publish_not_ready=True)
    (s,) = compute_endpoints(svc, [pod("a", "10.0.0.1", ready=False)]).subsets
    assert [a.target_name for a in s.addresses] == ["a"] and s.not_ready_addresses == ()
    headless = ServiceInfo("default", "web", WEB, (), headless=True)
    (s,) = compute_endpoints(headless, [pod("a", "10.0.0.1", hostname="a", subdomain="web")]).subsets
    assert s.ports == () and s.addresses[0].hostname == "a"


def test_all_services_deterministic():
    pods = [pod(n, f"10.0.0.{i}") for i, n in enumerate("dcba")]
    svcs = [SVC, ServiceInfo("default", "manual", None)]
    a = compute_all_endpoints(svcs, pods)
    b = compute_all_endpoints(svcs, list(reversed(pods)))
    assert a == b and list(a) == [("default", "web")]


def test_serves_deleted_pods_reads_ready_addresses_only():
    from gitkube.reconcile.endpoints import serves_deleted_pods

    eps = [{"subsets": [{"addresses": [{"ip": "10.0.0.1", "targetRef": {"uid": "a"}}],
                         "notReadyAddresses": [{"ip": "10.0.0.2", "targetRef": {"uid": "b"}}]}]}]
    assert serves_deleted_pods(eps, {"a"})
    assert not serves_deleted_pods(eps, {"b"}) and not serves_deleted_pods(eps, set()) and not serves_deleted_pods([], {"a"})


def test_pods_deleted_by_this_pass_leave_unless_published_not_ready():
    pods = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2")]
    (s,) = compute_endpoints(SVC, pods, deleting_uids={"uid-a"}).subsets
    assert [a.target_name for a in s.addresses] == ["b"]
    publish = ServiceInfo("default", "web", WEB, SVC.ports, publish_not_ready=True)
    (s,) = compute_all_endpoints([publish], pods, deleting_uids={"uid-a"})[("default", "web")].subsets
    assert [a.target_name for a in s.addresses] == ["a", "b"]


def test_named_port_found_in_any_container_with_its_protocol():
    p = pod("a", "10.0.0.1", ports=())
    p.raw["spec"]["containers"] += [{"name": "side", "image": "x", "ports": [
        {"name": "dns", "containerPort": 5353, "protocol": "UDP"}, {"name": "dns", "containerPort": 5300}]}]
    assert p.container_port("dns") == 5300 and p.container_port("dns", "UDP") == 5353
    assert p.container_port("http") is None and len(p.container_ports) == 2
    svc = ServiceInfo("default", "dns", WEB, (ServicePortInfo(53, name="dns", protocol="UDP", target_port="dns"),))
    (s,) = compute_endpoints(svc, [p]).subsets
    assert s.ports == (EndpointPort("dns", 5353, "UDP"),)
