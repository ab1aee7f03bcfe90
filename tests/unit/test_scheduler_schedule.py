"""The Scheduler as a whole: choices, incremental binding, FailedScheduling text, fast == naive."""

import random
from collections import Counter

from _pods import pod_dict
from gitkube.api.views import PodView
from gitkube.reconcile.scheduler import ClusterState, NodeInfo, Scheduler, SchedulerConfig, schedule_naive
from gitkube.reconcile.scheduler import SchedulingRequest as Req
from gitkube.reconcile.scheduler import ContainerRequest as C
from gitkube.reconcile.scheduler import num_feasible_nodes_to_find

GiB = 1 << 30


def nodes(n=3, **kw):
    return [NodeInfo(f"n{i + 1}", labels={"name": f"n{i + 1}"}, cpu_millis=2000, memory_bytes=4 * GiB, **kw)
            for i in range(n)]


def test_unmatched_node_selector_gives_kubernetes_text():
    r = Scheduler().schedule(Req("p", node_selector={"disk": "ssd"}), nodes(), ClusterState())
    assert r.node is None
    assert r.reasons == Counter({"node(s) didn't match node selector": 3})
    assert r.message == "0/3 nodes are available: 3 node(s) didn't match node selector."


def test_mixed_reasons_sorted_like_kubernetes():
    ns = nodes()
    ns[0] = NodeInfo("n1", labels={"disk": "ssd"}, cpu_millis=100, memory_bytes=GiB)
    p = Req("p", node_selector={"disk": "ssd"}, containers=(C(500),))
    r = Scheduler().schedule(p, ns, ClusterState())
    assert r.message == "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match node selector."


def test_not_ready_and_cordoned_nodes():
    ns = [NodeInfo("a", ready=False), NodeInfo("b", unschedulable=True), NodeInfo("c", ready=False)]
    r = Scheduler().schedule(Req("p"), ns, ClusterState())
    assert r.message == "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) were not ready."


def test_schedule_all_sees_previous_bindings():
    # Each node fits exactly one 1500m pod: the second and third must go elsewhere, the fourth nowhere.
    pods = [Req(f"p{i}", containers=(C(1500),)) for i in range(4)]
    res = Scheduler().schedule_all(pods, nodes())
    assert sorted(r.node for r in res[:3]) == ["n1", "n2", "n3"]
    assert res[3].node is None and res[3].message == "0/3 nodes are available: 3 Insufficient cpu."


def test_host_port_pods_land_on_distinct_nodes():
    pods = [Req(f"p{i}", host_ports=(("", 80, "TCP"),)) for i in range(4)]
    res = Scheduler().schedule_all(pods, nodes())
    assert len({r.node for r in res[:3]}) == 3
    assert res[3].message == "0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports."


def test_rc_pods_spread_over_nodes():
    key = frozenset({"rc:default/web"})
    res = Scheduler().schedule_all([Req(f"web-{i}", spread_keys=key) for i in range(6)], nodes())
    assert Counter(r.node for r in res) == Counter({"n1": 2, "n2": 2, "n3": 2})


def test_node_name_and_label_priority():
    s = Scheduler(SchedulerConfig(node_label_priorities=(("name", True, 1),)))
    assert s.schedule(Req("p", node_name="n2"), nodes(), ClusterState()).node == "n2"
    ns = nodes()
    ns[2] = NodeInfo("n3", labels={"ssd": ""}, cpu_millis=2000, memory_bytes=4 * GiB)
    s = Scheduler(SchedulerConfig(node_label_priorities=(("ssd", True, 5),)))
    assert all(r.node == "n3" for r in s.schedule_all([Req(f"p{i}") for i in range(3)], ns))


def test_label_presence_predicate_configured():
    s = Scheduler(SchedulerConfig(label_presence=((("name",), False),)))
    r = s.schedule(Req("p"), nodes(), ClusterState())
    assert r.message == "0/3 nodes are available: 3 node(s) didn't have the requested labels."


def test_deterministic_tie_break():
    a = [r.node for r in Scheduler().schedule_all([Req(f"p{i}") for i in range(5)], nodes(5))]
    b = [r.node for r in Scheduler().schedule_all([Req(f"p{i}") for i in range(5)], nodes(5))]
    assert a == b


def test_percentage_of_nodes_to_score():
    assert num_feasible_nodes_to_find(50, 0) == 50
    assert num_feasible_nodes_to_find(1000, 0) == 420  # 50 - 1000/125 = 42 %
    assert num_feasible_nodes_to_find(5000, 0) == 500
    assert num_feasible_nodes_to_find(1000, 100) == 1000
    assert num_feasible_nodes_to_find(1000, 5) == 100


def test_fast_path_matches_naive_reference():
    rng = random.Random(7)
    ns = [NodeInfo(f"n{i}", labels={"zone": "ab"[i % 2], **({"ssd": ""} if i % 3 == 0 else {})},
                   cpu_millis=rng.choice([1000, 2000, 4000]), memory_bytes=rng.choice([1, 2, 4]) * GiB,
                   pods=rng.choice([4, 8, 20]), ready=i != 5, unschedulable=i == 7) for i in range(12)]
    svc = frozenset({"svc:default/s"})
    keys = [frozenset({f"rc:default/r{j}"}) | (svc if j % 2 else frozenset()) for j in range(4)]
    pods = [Req(f"u{i}", containers=(C(rng.choice([None, 100, 300, 700]), rng.choice([None, 256 << 20, GiB])),),
                host_ports=((("", 8080, "TCP"),) if i % 9 == 0 else ()),
                host_paths=((("/d", i % 2 == 0),) if i % 7 == 0 else ()),
                node_selector=({"zone": "a"} if i % 5 == 0 else {}),
                spread_keys=keys[i % 4]) for i in range(120)]
    bound = [Req("b1", node_name="n0", containers=(C(500),), spread_keys=keys[0]),
             Req("b2", node_name="n1", host_ports=(("", 8080, "TCP"),))]
    cfg = SchedulerConfig(node_label_priorities=(("ssd", True, 2),))
    fast = Scheduler(cfg).schedule_all(pods, ns, bound)
    slow = schedule_naive(pods, ns, bound, cfg)
    assert [(r.node, r.scores[:1], r.message) for r in fast] == [(r.node, r.scores[:1], r.message) for r in slow]
    assert any(r.node is None for r in fast) and any(r.node for r in fast)


def test_a_stored_pod_compiles_into_its_scheduling_request():
    raw = pod_dict("web-1", uid="u1", labels={"app": "web"}, node="n2")
    raw["spec"] = {**raw["spec"], "nodeSelector": {"disk": "ssd"}, "volumes": [
        {"name": "logs", "hostPath": {"path": "/var/log/"}}, {"name": "conf", "hostPath": {"path": "/etc/app"}},
        {"name": "tmp", "emptyDir": {}}]}
    raw["spec"]["containers"] = [
        {"name": "a", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}},
         "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}],
         "volumeMounts": [{"name": "logs", "mountPath": "/l"}, {"name": "conf", "mountPath": "/c", "readOnly": True}]},
        {"name": "b", "image": "y", "resources": {"limits": {"cpu": "1"}},
         "ports": [{"containerPort": 53, "hostPort": 53, "hostIP": "198.18.0.1", "protocol": "UDP"}],
         "volumeMounts": [{"name": "logs", "mountPath": "/l", "readOnly": True}]}]
    keys = frozenset({"rc:default/web"})
    r = Req.from_pod(PodView(raw), keys)
    assert r == Req(
        "u1", "default", "web-1", {"app": "web"}, containers=(C(250, 128 << 20), C(None, None)),
        host_ports=(("", 8080, "TCP"), ("198.18.0.1", 53, "UDP")),
        host_paths=(("/var/log/", False), ("/etc/app", True)),  # read-only only when every mount of it is
        node_name="n2", node_selector={"disk": "ssd"}, spread_keys=keys)
    assert (r.cpu_millis, r.memory_bytes, r.nonzero_cpu_millis) == (250, 128 << 20, 350)
    assert r.ports == {("0.0.0.0", 8080, "TCP"), ("198.18.0.1", 53, "UDP")} and r.paths[0] == ("/var/log", False)
