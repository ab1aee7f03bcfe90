"""plan_cluster, pure: the RC manager, cascading deletion, the scheduler and their glue over stored objects."""
from __future__ import annotations

import random
import re

from gitkube.reconcile.cluster import plan_cluster

NOW = 1_700_000_000.0
NAME = re.compile(r"^web-[bcdfghjklmnpqrstvwxz2456789]{5}$")


def node(name: str, ready: bool = True, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]}}


NODES = [node("n1"), node("n2"), node("n3")]


def spec(**extra) -> dict:
    return {"containers": [{"name": "app", "image": "busybox", "command": ["sleep", "1000"]}], **extra}


def rc(name: str = "web", replicas: int = 3, uid: str = "rc-web", deleting: bool = False, selector=None) -> dict:
    m = {"name": name, "namespace": "default", "uid": uid, "generation": 2, "creationTimestamp": "2024-01-01T00:00:00Z"}
    if deleting:
        m["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    sel = selector or {"app": name}
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": m,
            "spec": {"replicas": replicas, "selector": sel, "template": {"metadata": {"labels": dict(sel)}, "spec": spec()}}}


def pod(name: str, uid: str | None = None, labels=None, owner: str | None = None, node_name: str | None = None,
        phase: str = "Running", deleting: bool = False, created: str = "2024-01-01T00:00:00Z", **spec_extra) -> dict:
    m = {"name": name, "namespace": "default", "uid": uid or f"uid-{name}", "labels": labels if labels is not None else {"app": "web"},
         "creationTimestamp": created}
    if owner:
        m["ownerReferences"] = [{"apiVersion": "v1", "kind": "ReplicationController", "name": "web", "uid": owner,
                                 "controller": True, "blockOwnerDeletion": True}]
    if deleting:
        m["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    s = spec(**spec_extra)
    if node_name:
        s["nodeName"] = node_name
    st = {"phase": phase}
    if phase == "Running":
        st["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:10Z"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": s, "status": st}


def plan(pods, rcs, nodes=NODES, seed=1):
    return plan_cluster(pods, rcs, [], nodes, NOW, rng=random.Random(seed))


def test_rc_creates_named_owned_pods_and_spreads_them_over_the_nodes():
    p = plan([], [rc(replicas=3)])
    assert len(p.create) == 3 and not p.delete
    names = {c.pod["metadata"]["name"] for c in p.create}
    assert all(NAME.match(n) for n in names) and len(names) == 3
    for c in p.create:
        m = c.pod["metadata"]
        assert m["ownerReferences"] == [{"apiVersion": "v1", "kind": "ReplicationController", "name": "web", "uid": "rc-web",
                                         "controller": True, "blockOwnerDeletion": True}]
        assert m["labels"] == {"app": "web"} and m["generateName"] == "web-" and m["uid"]
    # Bound in the same pass, one per node (selector spreading).
    assert {b.name for b in p.bindings} == names
    assert sorted(b.node for b in p.bindings) == ["n1", "n2", "n3"]
    assert p.rc_status[("default", "web")]["replicas"] == 0  # status counts what exists now
    assert p.rc_status[("default", "web")]["observedGeneration"] == 2


def test_same_seed_same_plan():
    a, b = plan([], [rc(replicas=2)], seed=7), plan([], [rc(replicas=2)], seed=7)
    assert [c.pod["metadata"]["name"] for c in a.create] == [c.pod["metadata"]["name"] for c in b.create]
    assert [c.pod["metadata"]["uid"] for c in a.create] == [c.pod["metadata"]["uid"] for c in b.create]


def test_scale_1_3_1():
    p = plan([pod("web-aaaaa", owner="rc-web", node_name="n1")], [rc(replicas=3)])
    assert len(p.create) == 2 and not p.delete
    assert {b.node for b in p.bindings} == {"n2", "n3"}, "new pods avoid the node that already runs one"
    three = [pod("web-aaaaa", owner="rc-web", node_name="n1"), pod("web-bbbbb", owner="rc-web", node_name="n2"),
             pod("web-ccccc", owner="rc-web", node_name="n3", phase="Pending")]
    p = plan(three, [rc(replicas=1)])
    assert not p.create and len(p.delete) == 2
    assert "web-ccccc" in {d.name for d in p.delete}, "a Pending pod goes before Running ones"
    assert all("scaled to 1" in d.reason for d in p.delete)
    assert p.rc_status[("default", "web")]["replicas"] == 3 and p.rc_status[("default", "web")]["readyReplicas"] == 2


def test_pods_being_deleted_do_not_count_and_are_not_rescheduled():
    pods = [pod("web-aaaaa", owner="rc-web", node_name="n2", deleting=True), pod("web-bbbbb", owner="rc-web", node_name="n1")]
    p = plan(pods, [rc(replicas=2)], nodes=[node("n1"), node("n2", ready=False), node("n3")])
    assert len(p.create) == 1 and not p.delete
    assert [b.node for b in p.bindings] == ["n3"], "not the NotReady node, not next to its sibling"
    assert "web-aaaaa" not in {b.name for b in p.bindings}


def test_orphan_matching_pod_is_adopted_instead_of_creating_one():
    p = plan([pod("stray", node_name="n1")], [rc(replicas=1)])
    assert not p.create and not p.delete
    (o,) = p.owners
    assert (o.name, o.owner["uid"], o.owner["controller"]) == ("stray", "rc-web", True)


def test_owned_pod_whose_labels_no_longer_match_is_released_and_replaced():
    p = plan([pod("web-aaaaa", labels={"app": "other"}, owner="rc-web", node_name="n1")], [rc(replicas=1)])
    (o,) = p.owners
    assert o.name == "web-aaaaa" and o.owner is None
    assert len(p.create) == 1


def test_pods_of_another_controller_are_left_alone():
    p = plan([pod("x", owner="rc-other", node_name="n1")], [rc(replicas=1), rc("other", 1, uid="rc-other", selector={"app": "web"})])
    assert not p.owners and not p.delete
    assert [c.pod["metadata"]["ownerReferences"][0]["uid"] for c in p.create] == ["rc-web"]


def test_cascading_deletion_when_the_rc_is_deleted_or_gone():
    pods = [pod("web-aaaaa", owner="rc-web", node_name="n1"), pod("web-bbbbb", owner="rc-web", node_name="n2")]
    for rcs in ([rc(deleting=True)], []):
        p = plan(pods, rcs)
        assert sorted(d.name for d in p.delete) == ["web-aaaaa", "web-bbbbb"]
        assert all(d.reason == "owner deleted" for d in p.delete)
        assert not p.create and not p.owners and not p.bindings
    # Pods already being deleted are not deleted again; bare pods are not touched.
    p = plan([pod("web-aaaaa", owner="rc-web", node_name="n1", deleting=True), pod("bare", labels={})], [])
    assert not p.delete


def test_unmatched_node_selector_is_unschedulable_with_kubernetes_text():
    p = plan([pod("picky", labels={}, phase="Pending", nodeSelector={"disktype": "ssd"})], [])
    assert not p.bindings
    (u,) = p.unschedulable
    assert u.name == "picky" and u.message == "0/3 nodes are available: 3 node(s) didn't match node selector."
    p = plan([pod("picky", labels={}, phase="Pending", nodeSelector={"disktype": "ssd"})], [],
             nodes=[node("n1"), node("n2"), node("n3", labels={"disktype": "ssd"})])
    assert [(b.name, b.node) for b in p.bindings] == [("picky", "n3")] and not p.unschedulable


def test_pod_bound_to_a_node_outside_the_inventory_is_reported():
    p = plan([pod("lost", labels={}, node_name="n9")], [])
    (u,) = p.unschedulable
    assert "n9" in u.message and "inventory" in u.message


def test_burst_of_300_replicas_lands_evenly():
    p = plan([], [rc(replicas=300)])
    assert len(p.create) == 300 and len({c.pod["metadata"]["name"] for c in p.create}) == 300
    per = {n: sum(b.node == n for b in p.bindings) for n in ("n1", "n2", "n3")}
    # Kubernetes' scores are integers 0-10: at ~100 pods a node one pod ahead scores the same for spreading
    # (int(10 * 1/100) == 0), so the spread is close to even, not exact.
    assert sum(per.values()) == 300 and max(per.values()) - min(per.values()) <= 12, per


# -- Deployments and ReplicaSets ----------------------------------------------------------------------------
def deployment(replicas: int = 3, image: str = "busybox", uid: str = "dep-web", deleting: bool = False) -> dict:
    m = {"name": "web", "namespace": "default", "uid": uid, "generation": 1, "creationTimestamp": "2024-01-01T00:00:00Z"}
    if deleting:
        m["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": m,
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def test_a_deployment_creates_its_replicaset_and_pods_in_one_pass():
    plan = plan_cluster([], [], [], NODES, NOW, rng=random.Random(1), deployments=[deployment()], git_commit="c" * 40)
    [rs] = plan.apps.rs_create
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h}" and rs["spec"]["replicas"] == 3
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rs["metadata"]["ownerReferences"][0] | {} == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                          "uid": "dep-web", "controller": True, "blockOwnerDeletion": True}
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["metadata"]["annotations"]["gitkube.io/git-commit"] == "c" * 40
    assert len(plan.create) == 3 and len(plan.bindings) == 3
    for c in plan.create:
        m = c.pod["metadata"]
        assert m["labels"] == {"app": "web", "pod-template-hash": h} and m["name"].startswith(f"web-{h}-")
        assert m["ownerReferences"][0]["kind"] == "ReplicaSet" and m["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    st = plan.apps.deployment_status[("default", "web")]
    assert st["observedGeneration"] == 1 and st["replicas"] == 0
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Progressing"] == "NewReplicaSetCreated"
    assert plan.rs_status[("default", rs["metadata"]["name"])]["replicas"] == 0


def test_a_deleted_deployment_takes_its_replicasets_and_pods():
    first = plan_cluster([], [], [], NODES, NOW, rng=random.Random(1), deployments=[deployment()])
    [rs] = first.apps.rs_create
    pods = [c.pod for c in first.create]
    plan = plan_cluster(pods, [], [], NODES, NOW, deployments=[deployment(deleting=True)], replicasets=[rs])
    assert [(ns, n) for ns, n, _ in plan.apps.rs_delete] == [("default", rs["metadata"]["name"])]
    assert sorted(d.name for d in plan.delete) == sorted(p["metadata"]["name"] for p in pods)


def test_a_standalone_replicaset_is_managed_like_an_rc_with_a_set_based_selector():
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "cache", "namespace": "default", "uid": "rs-cache", "generation": 1},
          "spec": {"replicas": 2, "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["cache"]}]},
                   "template": {"metadata": {"labels": {"tier": "cache"}}, "spec": spec()}}}
    orphan = pod("loose", labels={"tier": "cache"}, node_name="n1")
    plan = plan_cluster([orphan], [], [], NODES, NOW, rng=random.Random(2), replicasets=[rs])
    assert [o.name for o in plan.owners] == ["loose"] and plan.owners[0].owner["kind"] == "ReplicaSet"
    assert len(plan.create) == 1 and plan.rs_status[("default", "cache")]["replicas"] == 1
