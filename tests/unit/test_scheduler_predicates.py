"""Each scheduler predicate on its own: a node that fits, a node that does not, and the reason."""

from gitkube.reconcile.scheduler import ContainerRequest as C
from gitkube.reconcile.scheduler import NodeInfo, NodeUsage, SchedulingRequest
from gitkube.reconcile.scheduler import predicates as P

GiB = 1 << 30
NODE = NodeInfo("n1", labels={"disk": "ssd", "zone": "a"}, cpu_millis=2000, memory_bytes=4 * GiB, pods=3)


def pod(uid="p", **kw):
    return SchedulingRequest(uid, name=uid, **kw)


def usage(*pods):
    return NodeUsage.of(pods)


def test_check_node_condition():
    assert P.check_node_condition(pod(), NODE) == ()
    assert P.check_node_condition(pod(), NodeInfo("n", ready=False)) == (P.REASON_NOT_READY,)
    assert P.check_node_condition(pod(), NodeInfo("n", unschedulable=True)) == (P.REASON_UNSCHEDULABLE,)


def test_pod_fits_host():
    assert P.pod_fits_host(pod(), NODE) == ()
    assert P.pod_fits_host(pod(node_name="n1"), NODE) == ()
    assert P.pod_fits_host(pod(node_name="n2"), NODE) == ("node(s) didn't match the requested node name",)


def test_pod_selector_matches():
    assert P.pod_selector_matches(pod(), NODE) == ()
    assert P.pod_selector_matches(pod(node_selector={"disk": "ssd", "zone": "a"}), NODE) == ()
    assert P.pod_selector_matches(pod(node_selector={"disk": "hdd"}), NODE) == ("node(s) didn't match node selector",)
    assert P.pod_selector_matches(pod(node_selector={"gpu": "yes"}), NODE) == (P.REASON_NODE_SELECTOR,)


def test_pod_fits_resources_cpu_memory_and_pod_count():
    big = pod("big", containers=(C(1500, 3 * GiB),))
    assert P.pod_fits_resources(big, NODE, usage()) == ()
    used = usage(pod("a", containers=(C(600, 2 * GiB),), node_name="n1"))
    assert P.pod_fits_resources(big, NODE, used) == ("Insufficient cpu", "Insufficient memory")
    only_cpu = pod("c", containers=(C(1500),))
    assert P.pod_fits_resources(only_cpu, NODE, used) == ("Insufficient cpu",)
    full = usage(*(pod(f"x{i}", node_name="n1") for i in range(3)))
    assert P.pod_fits_resources(pod(), NODE, full) == ("Too many pods",)


def test_pod_fits_resources_unset_request_counts_as_zero():
    # A node already over-committed still takes a pod that requests nothing.
    used = usage(pod("a", containers=(C(2000, 4 * GiB),)))
    assert P.pod_fits_resources(pod(containers=(C(),)), NODE, used) == ()
    assert P.pod_fits_resources(pod(containers=(C(1),)), NODE, used) == ("Insufficient cpu",)


def test_pod_fits_host_ports():
    used = usage(pod("a", host_ports=(("", 80, "TCP"), ("10.0.0.1", 53, "UDP"))))
    ok = P.pod_fits_host_ports
    assert ok(pod(host_ports=(("", 81, "TCP"),)), NODE, used) == ()
    assert ok(pod(host_ports=(("", 80, "UDP"),)), NODE, used) == ()  # other protocol
    # 0.0.0.0 (or empty) on either side conflicts with any IP of the same port/protocol
    assert ok(pod(host_ports=(("10.0.0.9", 80, "TCP"),)), NODE, used) == (P.REASON_PORTS,)
    assert ok(pod(host_ports=(("0.0.0.0", 53, "UDP"),)), NODE, used) == (P.REASON_PORTS,)
    assert ok(pod(host_ports=(("10.0.0.1", 53, "UDP"),)), NODE, used) == (P.REASON_PORTS,)
    assert ok(pod(host_ports=(("10.0.0.2", 53, "UDP"),)), NODE, used) == ()  # different IPs
    assert P.REASON_PORTS == "node(s) didn't have free ports for the requested pod ports"
    assert P.pod_fits_ports is P.pod_fits_host_ports  # v1.1 name


def test_no_disk_conflict_hostpath_rule():
    rw = usage(pod("a", host_paths=(("/data/", False),)))
    ro = usage(pod("a", host_paths=(("/data", True),)))
    nd = P.no_disk_conflict
    assert nd(pod(host_paths=(("/data", False),)), NODE, rw) == ("node(s) had no available disk",)
    assert nd(pod(host_paths=(("/data", True),)), NODE, rw) == (P.REASON_DISK_CONFLICT,)
    assert nd(pod(host_paths=(("/data", False),)), NODE, ro) == (P.REASON_DISK_CONFLICT,)
    assert nd(pod(host_paths=(("/data", True),)), NODE, ro) == ()  # read-only is shareable
    assert nd(pod(host_paths=(("/other", False),)), NODE, rw) == ()
    assert nd(pod(), NODE, rw) == ()


def test_check_node_label_presence():
    must_have = P.node_label_presence_predicate(["disk", "zone"], presence=True)
    must_lack = P.node_label_presence_predicate(["retiring"], presence=False)
    assert must_have(pod(), NODE) == ()
    assert must_have(pod(), NodeInfo("n", labels={"disk": "x"})) == ("node(s) didn't have the requested labels",)
    assert must_lack(pod(), NODE) == ()
    assert must_lack(pod(), NodeInfo("n", labels={"retiring": ""})) == (P.REASON_LABEL_PRESENCE,)
    assert P.check_node_label_presence(NODE, ["zone"], True) is True
    assert P.check_node_label_presence(NODE, ["zone"], False) is False


def test_failed_scheduling_message_single_and_several_reasons():
    assert (P.failed_scheduling_message(3, {P.REASON_NODE_SELECTOR: 3})
            == "0/3 nodes are available: 3 node(s) didn't match node selector.")
    assert (P.failed_scheduling_message(3, {P.REASON_NODE_SELECTOR: 2, P.REASON_INSUFFICIENT_CPU: 1})
            == "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match node selector.")
