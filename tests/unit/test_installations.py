"""Two installations (two state dirs, two cluster ids) on the same nodes, on FakeNodes: applying one commit, each
names its pods' containers apart (uids derive from the cluster id too), and a container name held by the other
installation is reported and left alone, never taken as made by an earlier pass of this one."""
from __future__ import annotations

import pytest

from gitkube.nodes.kubelet.runtime import docker_name
from gitkube.reconcile.plan import new_uid
from tests.unit.fakenode import FakeFleet
from tests.unit.test_controller_pass import pod, world  # noqa: F401 - the FakeNode world (inventory, repo)


@pytest.fixture
def install(world):  # noqa: F811 - pytest's fixture, imported above
    """Installations (each its own state dir) of one repo holding pod web on n1, all on the very same nodes."""
    commit, controller = world
    commit(pod("web", node="n1"))
    shared = []

    def one_fleet(nodes):
        if not shared:
            shared.append(FakeFleet(nodes))
        return shared[0]

    return lambda name: controller(state=name, fleet_factory=one_fleet)


def running_pods(d) -> dict[str, str]:
    return {c["Labels"]["io.gitkube.pod.uid"]: c["Labels"].get("io.gitkube.cluster")
            for c in d.containers.values() if c["State"]["Status"] == "running"
            and c["Labels"].get("io.gitkube.container.name") == "app"}


def test_one_commit_applied_by_two_installations_runs_twice_apart(install):
    a, b = install("a"), install("b")
    try:
        a.reconcile()
        b.reconcile()
        d = a.fleet["n1"].docker
        uid_a = a.store.get("Pod", "default", "web")["metadata"]["uid"]
        uid_b = b.store.get("Pod", "default", "web")["metadata"]["uid"]
        assert uid_a != uid_b
        assert running_pods(d) == {uid_a: a.cluster_id, uid_b: b.cluster_id}
        for _ in range(3):  # and it stays so: neither restarts nor removes the other's
            a.reconcile()
            b.reconcile()
        assert running_pods(d) == {uid_a: a.cluster_id, uid_b: b.cluster_id}
        assert not [v for v, _ in d.log if v in ("remove", "kill", "stop")]
    finally:
        b.close()
        a.close()


def test_a_name_held_by_another_installation_is_reported_not_taken(install):
    b = install("b")
    try:
        # The name b's pod container would get, held by another installation's container (as when both derived
        # the same uid before uids carried the cluster id).
        sha = b.observe()[0].sha
        uid = new_uid(sha, ("Pod", "default", "web"), b.cluster_id)
        d = b.fleet["n1"].docker
        theirs = d.create("gitkube/busybox:latest", name=docker_name("k8s", "app", "web", "default", uid, "0"),
                          labels={"io.gitkube.managed": "true", "io.gitkube.cluster": "someone-else",
                                  "io.gitkube.pod.uid": "x", "io.gitkube.container.name": "app"}, host={})
        for _ in range(3):
            b.reconcile()
        ev = [e for e in b.store.events() if "another gitkube installation" in e.get("message", "")]
        assert ev and "is held by container" in ev[0]["message"], b.store.events()
        st = b.store.get("Pod", "default", "web")["status"]
        waiting = st["containerStatuses"][0]["state"]["waiting"]
        assert waiting["reason"] == "CreateContainerError", st
        assert d.containers[theirs]["Labels"]["io.gitkube.cluster"] == "someone-else"
        assert not [a for v, a in d.log if v in ("start", "remove", "kill", "stop") and a and a[0] == theirs]
        assert len([v for v, a in d.log if v == "create" and "_app_" in a[1]]) <= 1 + 3  # ours; one try a pass
    finally:
        b.close()
