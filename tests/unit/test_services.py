"""Services data plane decisions: stable ClusterIP/NodePort allocation, conflicts, proxy config and DNS hosts text."""
from _pods import pod_view
from gitkube.api import parse_object
from gitkube.reconcile.endpoints import (
    ServiceInfo,
    ServicePortInfo,
    compute_all_endpoints,
)
from gitkube.reconcile.services import (
    DNS_IP,
    Allocation,
    allocate,
    allocate_cluster_ips,
    allocate_node_ports,
    plan_dataplane,
    proxy_services,
    render_haproxy,
    render_hosts,
)


def svc(name, ns="default", ports=((80, None),), type_="ClusterIP", cluster_ip=None, affinity=None, selector=None):
    spec = {"type": type_, "ports": [], "selector": selector or {"app": name}}
    for i, (port, node_port) in enumerate(ports):
        p = {"port": port, "name": f"p{i}" if len(ports) > 1 else None}
        if node_port:
            p["nodePort"] = node_port
        spec["ports"].append({k: v for k, v in p.items() if v is not None})
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    if affinity:
        spec["sessionAffinity"] = affinity
    return parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec})


# ----------------------------------------------------------------------------------------------- ClusterIP
def test_new_services_get_lowest_free_addresses_skipping_reserved():
    ips, errors = allocate_cluster_ips([svc("b"), svc("a")], {})
    assert errors == {}
    assert ips == {"default/a": "198.19.0.3", "default/b": "198.19.0.4"}
    assert DNS_IP == "198.19.0.2" and DNS_IP not in ips.values()


def test_allocation_is_stable_across_passes_and_after_a_delete():
    first, _ = allocate_cluster_ips([svc("a"), svc("b"), svc("c")], {})
    again, _ = allocate_cluster_ips([svc("c"), svc("a"), svc("b")], first)
    assert again == first
    # b deleted; a new service "aa" sorts before c but must not take c's address.
    later, _ = allocate_cluster_ips([svc("a"), svc("aa"), svc("c")], again)
    assert later["default/a"] == first["default/a"] and later["default/c"] == first["default/c"]
    assert later["default/aa"] == first["default/b"]  # the freed address is reused, nothing else moves


def test_explicit_cluster_ip_is_honoured_when_free_and_in_range():
    ips, errors = allocate_cluster_ips([svc("a", cluster_ip="198.19.7.7"), svc("b")], {})
    assert errors == {} and ips["default/a"] == "198.19.7.7" and ips["default/b"] == "198.19.0.3"


def test_explicit_cluster_ip_conflicts_and_range_errors():
    prev = {"default/holder": "198.19.0.50"}
    ips, errors = allocate_cluster_ips(
        [svc("holder"), svc("thief", cluster_ip="198.19.0.50"), svc("out", cluster_ip="10.0.0.1"),
         svc("dns", cluster_ip="198.19.0.2")], prev)
    assert ips == {"default/holder": "198.19.0.50"}
    assert errors["default/thief"] == ['spec.clusterIP: Invalid value: "198.19.0.50": provided IP is already allocated']
    assert errors["default/out"][0].startswith('spec.clusterIP: Invalid value: "10.0.0.1": provided IP is not in the valid range')
    assert "198.19.0.0/16" in errors["default/out"][0]
    assert "reserved" in errors["default/dns"][0]


def test_two_new_services_asking_for_the_same_address_first_by_key_wins():
    ips, errors = allocate_cluster_ips([svc("z", cluster_ip="198.19.1.1"), svc("m", cluster_ip="198.19.1.1")], {})
    assert ips == {"default/m": "198.19.1.1"} and "already allocated" in errors["default/z"][0]


def test_changed_explicit_address_moves_and_releases_the_old_one():
    prev = {"default/a": "198.19.0.3"}
    ips, errors = allocate_cluster_ips([svc("a", cluster_ip="198.19.9.9"), svc("b")], prev)
    assert errors == {} and ips == {"default/a": "198.19.9.9", "default/b": "198.19.0.3"}


def test_headless_and_custom_range():
    ips, _ = allocate_cluster_ips([svc("h", cluster_ip="None"), svc("a")], {}, cidr="198.19.200.0/29", dns_ip=None)
    assert ips == {"default/h": "None", "default/a": "198.19.200.2"}
    full, errors = allocate_cluster_ips([svc(f"s{i}") for i in range(7)], {}, cidr="198.19.200.0/29", dns_ip=None)
    assert len(full) == 5 and "full" in " ".join(m for ms in errors.values() for m in ms)


# ----------------------------------------------------------------------------------------------- NodePort
def test_node_ports_given_allocated_stable_and_conflicting():
    services = [svc("web", type_="NodePort", ports=((80, 30001),)), svc("api", type_="NodePort", ports=((80, None), (443, None))),
                svc("plain")]
    ports, errors = allocate_node_ports(services, {})
    assert errors == {}
    assert ports == {"default/web:80/TCP": 30001, "default/api:80/TCP": 30000, "default/api:443/TCP": 30002}
    again, _ = allocate_node_ports(list(reversed(services)), ports)
    assert again == ports
    clash, errors = allocate_node_ports(services + [svc("late", type_="NodePort", ports=((80, 30001),)),
                                                    svc("far", type_="NodePort", ports=((80, 30020),))], ports,
                                           port_range=(30000, 30010))
    assert errors["default/late"] == ["spec.ports[0].nodePort: Invalid value: 30001: provided port is already allocated"]
    assert "not in the valid range. The range of valid ports is 30000-30010" in errors["default/far"][0]


def test_allocate_drops_everything_of_a_service_with_an_error():
    prev = allocate([svc("web", type_="NodePort", ports=((80, 30001),))])
    a = allocate([svc("web", type_="NodePort", ports=((80, 30001),)),
                  svc("bad", type_="NodePort", ports=((80, 30005), (81, 30001)))], prev)
    assert "default/bad" not in a.cluster_ips and not any(k.startswith("default/bad") for k in a.node_ports)
    assert a.cluster_ips["default/web"] == prev.cluster_ips["default/web"]
    assert list(a.errors) == ["default/bad"]


# ----------------------------------------------------------------------------------------------- rendering
def _pods_and_endpoints(services):
    infos = [ServiceInfo("default", "web", {"app": "web"}, (ServicePortInfo(80, target_port="http"),)),
             ServiceInfo("default", "db", {"app": "db"}, (ServicePortInfo(6379),))]
    pods = [
        pod_view("web-1", uid="u1", labels={"app": "web"}, ip="198.18.111.5", node="n1", ready=True, phase="Running",
                 ports=(("http", 8080),)),
        pod_view("web-2", uid="u2", labels={"app": "web"}, ip="198.18.112.3", node="n2", ready=True, phase="Running",
                 ports=(("http", 8080),)),
        pod_view("web-3", uid="u3", labels={"app": "web"}, ip="198.18.113.9", node="n3", ready=False,  # not ready
                 phase="Running", ports=(("http", 8080),)),
    ]
    return compute_all_endpoints(infos, pods)


def test_haproxy_config_has_frontends_nodeport_and_only_ready_servers():
    services = [svc("web", type_="NodePort", ports=((80, 30001),)), svc("db", ports=((6379, None),))]
    alloc = allocate(services)
    ps = proxy_services(services, alloc)
    cfg = render_haproxy(ps, _pods_and_endpoints(services))
    db_ip, web_ip = alloc.cluster_ips["default/db"], alloc.cluster_ips["default/web"]
    assert "mode tcp" in cfg
    web = cfg[cfg.index("frontend fe.default.web.80"):]
    assert web.startswith(f"frontend fe.default.web.80\n    bind {web_ip}:80\n    default_backend be.default.web.80\n")
    assert "frontend np.default.web.80\n    bind *:30001\n    default_backend be.default.web.80\n" in cfg
    be = cfg[cfg.index("\nbackend be.default.web.80") + 1:]
    assert be.splitlines()[1:4] == ["    balance roundrobin", "    server 198.18.111.5:8080 198.18.111.5:8080",
                                    "    server 198.18.112.3:8080 198.18.112.3:8080"]
    assert "198.18.113.9" not in cfg  # not ready: no traffic
    # db has no endpoints: frontend bound, backend empty (connections refused), no NodePort frontend.
    assert f"bind {db_ip}:6379\n" in cfg and "np.default.db" not in cfg
    assert cfg.index("fe.default.db.6379") < cfg.index("fe.default.web.80")  # sorted by namespace/name


def test_rendering_is_deterministic_and_changes_only_with_endpoints():
    services = [svc("web", type_="NodePort", ports=((80, 30001),)), svc("db", ports=((6379, None),))]
    eps = _pods_and_endpoints(services)
    p1 = plan_dataplane(services, eps)
    p2 = plan_dataplane(list(reversed(services)), dict(reversed(list(eps.items()))), p1.allocation)
    assert p1.haproxy_cfg == p2.haproxy_cfg and p1.dns_hosts == p2.dns_hosts and p1.allocation == p2.allocation
    p3 = plan_dataplane(services, {}, p1.allocation)
    assert p3.haproxy_cfg != p1.haproxy_cfg and "    server " not in p3.haproxy_cfg
    assert p1.cluster_ips == tuple(sorted(p1.allocation.cluster_ips.values()))
    assert p1.dns_ip == DNS_IP


def test_udp_ports_are_left_out_and_client_ip_affinity_uses_source_balance():
    s = parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
                      "spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                                                       {"name": "tcp", "port": 53}]}})
    # ClientIP affinity is refused by validation today; the renderer is ready for it.
    s = s.model_copy(update={"spec": s.spec.model_copy(update={"sessionAffinity": "ClientIP"})})
    cfg = render_haproxy(proxy_services([s], allocate([s])), {})
    assert "port 53/UDP: not proxied" in cfg and "balance source" in cfg and cfg.count("frontend ") == 1


def test_hosts_file_names_and_headless_and_ambiguous_short_names():
    services = [svc("redis-master"), svc("redis-master", ns="other"), svc("web", ns="other"),
                svc("h", cluster_ip="None")]
    alloc = allocate(services)
    ps = proxy_services(services, alloc)
    eps = {("default", "h"): _pods_and_endpoints(services)[("default", "web")]}
    hosts = render_hosts(ps, eps).splitlines()
    rm = alloc.cluster_ips["default/redis-master"]
    assert f"{rm} redis-master redis-master.default redis-master.default.svc.cluster.local" in hosts
    other_rm = alloc.cluster_ips["other/redis-master"]
    assert f"{other_rm} redis-master.other redis-master.other.svc.cluster.local" in hosts
    assert f"{alloc.cluster_ips['other/web']} web web.other web.other.svc.cluster.local" in hosts
    assert "198.18.111.5 h h.default h.default.svc.cluster.local" in hosts  # headless: ready pod IPs
    assert not any("198.18.113.9" in h for h in hosts)


def test_env_services_feed_the_runtime_context():
    services = [svc("redis-master", ports=((6379, None),)), svc("h", cluster_ip="None")]
    p = plan_dataplane(services, {})
    (info,) = p.env["default"]
    assert info.name == "redis-master" and info.cluster_ip == p.allocation.cluster_ips["default/redis-master"]
    assert info.ports == ((None, 6379, "TCP"),)


def test_allocation_round_trips_as_plain_maps():
    a = allocate([svc("web", type_="NodePort", ports=((80, None),))])
    b = allocate([svc("web", type_="NodePort", ports=((80, None),))], Allocation(dict(a.cluster_ips), dict(a.node_ports)))
    assert a == b


def test_allocation_record_round_trips_through_the_proxy_config():
    from gitkube.reconcile.services import Allocation, allocation_record, parse_allocation_record

    a = Allocation({"default/web": "10.96.0.12", "default/headless": "None"}, {"default/web:80/TCP": 30080})
    text = "global\n  daemon\n" + allocation_record(a)
    assert parse_allocation_record(text) == a
    assert max(len(x) for x in text.splitlines()) < 200
    assert parse_allocation_record(allocation_record(Allocation({}, {}))) == Allocation({}, {})
    assert parse_allocation_record("global\n") is None


def test_the_haproxy_config_carries_the_allocation_record():
    from gitkube.api import parse_object
    from gitkube.reconcile.services import parse_allocation_record, plan_dataplane

    svc = parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}})
    dp = plan_dataplane([svc], {})
    a = parse_allocation_record(dp.haproxy_cfg)
    assert a is not None and a.cluster_ips == dp.allocation.cluster_ips and a.node_ports == dp.allocation.node_ports
