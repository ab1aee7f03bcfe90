"""Each scheduler priority on its own, with the v1.1 arithmetic worked out by hand."""

from gitkube.reconcile.scheduler import ContainerRequest as C
from gitkube.reconcile.scheduler import NodeInfo, NodeUsage
from gitkube.reconcile.scheduler import SchedulingRequest as Req
from gitkube.reconcile.scheduler import priorities as S

MiB = 1 << 20


def test_least_requested_score():
    assert S.least_requested_score(0, 1000) == 10
    assert S.least_requested_score(250, 1000) == 7  # 7.5 truncated
    assert S.least_requested_score(1000, 1000) == 0
    assert S.least_requested_score(1001, 1000) == 0
    assert S.least_requested_score(1, 0) == 0


def test_least_requested_priority_uses_nonzero_defaults_and_counts_the_pod():
    node = NodeInfo("n", cpu_millis=1000, memory_bytes=1000 * MiB)
    # No requests: 100m and 200Mi assumed -> cpu (900*10)//1000 = 9, mem (800*10)//1000 = 8 -> 17//2 = 8
    assert S.least_requested_priority(Req("p", containers=(C(),)), node, NodeUsage()) == 8
    used = NodeUsage.of([Req("a", containers=(C(500, 500 * MiB),))])
    # cpu (1000-600)*10//1000 = 4, mem (1000-700)*10//1000 = 3 -> 3
    assert S.least_requested_priority(Req("p", containers=(C(),)), node, used) == 3


def test_balanced_resource_allocation():
    node = NodeInfo("n", cpu_millis=1000, memory_bytes=1000 * MiB)
    # 50% cpu, 50% memory -> perfectly balanced
    assert S.balanced_resource_allocation(Req("p", containers=(C(500, 500 * MiB),)), node, NodeUsage()) == 10
    # 20% cpu, 70% memory -> 10 - 5 = 5
    assert S.balanced_resource_allocation(Req("p", containers=(C(200, 700 * MiB),)), node, NodeUsage()) == 5
    # a resource at 100% -> 0
    assert S.balanced_resource_allocation(Req("p", containers=(C(1000, 10 * MiB),)), node, NodeUsage()) == 0


def test_selector_spread():
    assert S.selector_spread_scores([0, 0, 0]) == [10, 10, 10]
    assert S.selector_spread_scores([2, 1, 0]) == [0, 5, 10]
    assert S.selector_spread_scores([3, 1, 0]) == [0, 6, 10]
    rc = frozenset({"rc:default/web"})
    svc = frozenset({"svc:default/web"})
    u1 = NodeUsage.of([Req("a", spread_keys=rc), Req("b", spread_keys=rc | svc)])
    u2 = NodeUsage.of([Req("c", spread_keys=svc), Req("d", spread_keys=frozenset({"rc:default/other"}))])
    u3 = NodeUsage()
    pod = Req("p", spread_keys=rc | svc)
    # a pod matched by either selector counts once
    assert [u.spread_count(pod.spread_keys) for u in (u1, u2, u3)] == [2, 1, 0]
    assert S.selector_spread_priority(pod, [u1, u2, u3]) == [0, 5, 10]


def test_node_label_priority():
    node = NodeInfo("n", labels={"ssd": "true"})
    assert S.node_label_priority(node, "ssd", True) == 10
    assert S.node_label_priority(node, "ssd", False) == 0
    assert S.node_label_priority(node, "gpu", True) == 0
    assert S.node_label_priority(node, "gpu", False) == 10
