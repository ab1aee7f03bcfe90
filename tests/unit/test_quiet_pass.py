"""The quiet pass (gitkube.controller.quiet) on FakeNodes: after a full pass that changed nothing, a pass whose
inputs have not moved plans nothing; anything that moved (a container, the revision, the clock past a due time)
brings back the full pass, and GITKUBE_VERIFY_QUIET catches a quiet pass that should not have been."""
from __future__ import annotations

import time

import pytest

from gitkube import instruments
from gitkube.controller import quiet as q
from gitkube.reconcile.plan import NODE_STATUS_UPDATE_SECONDS, time_due
from tests.unit.test_controller_pass import pod, world  # noqa: F401 - the FakeNode world (inventory, repo)


def rc(name: str, replicas: int, min_ready: int = 0) -> dict:
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"app": name}, "minReadySeconds": min_ready,
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                      {"name": "app", "image": "gitkube/busybox:latest", "imagePullPolicy": "Never",
                                       "command": ["sleep", "1000"]}]}}}}


@pytest.fixture
def setup(world):  # noqa: F811 - pytest's fixture, imported above
    commit, make = world
    made = []

    def controller():
        made.append(make())
        return made[-1]

    yield commit, controller
    for c in made:
        c.close()


def settle(ctrl, now=None, limit=6):
    """Passes until one is quiet; returns it."""
    for _ in range(limit):
        rep = ctrl.reconcile(now=now)
        if rep.quiet:
            return rep
    raise AssertionError(f"no quiet pass in {limit}: {rep.summary()}")


def test_nothing_moved_means_no_planning_and_only_the_heartbeats_written(setup):
    commit, controller = setup
    commit(pod("a", node="n1"), pod("b", node="n2"))
    ctrl = controller()
    rep = ctrl.reconcile()
    assert not rep.quiet and sum(len(a) for a in rep.node_actions.values()) == 4
    settle(ctrl)
    rv = ctrl.store.resource_version()
    revisions = len(ctrl.store.revisions(limit=100))
    before = ctrl.store.kv_get("heartbeats")["n1"]["last_success"]
    counted = instruments.RECONCILE_QUIET._value.get()
    time.sleep(0.01)
    rep = ctrl.reconcile()
    assert instruments.RECONCILE_QUIET._value.get() == counted + 1  # gitkube_reconcile_quiet_passes_total
    assert rep.quiet and rep.summary() == "no changes" and rep.next_due is not None
    assert ctrl.store.resource_version() == rv, "a quiet pass wrote an object"
    assert len(ctrl.store.revisions(limit=100)) == revisions, "the same revision was recorded again"
    assert ctrl.store.kv_get("heartbeats")["n1"]["last_success"] > before, "the heartbeat did not move"
    assert ctrl.quiet_passes >= 2


def test_a_container_that_died_brings_back_the_full_pass_and_is_restarted(setup):
    commit, controller = setup
    commit(pod("a", node="n1"))
    ctrl = controller()
    settle(ctrl)
    d = ctrl.fleet["n1"].docker
    app = next(cid for cid, c in d.containers.items() if c["Labels"].get("io.gitkube.container.name") == "app")
    d.exit(app, 1)
    rep = ctrl.reconcile()
    assert not rep.quiet
    assert [type(a).__name__ for a in rep.node_actions["n1"]] == ["StartContainer"]


def test_a_new_revision_brings_back_the_full_pass(setup):
    commit, controller = setup
    commit(pod("a", node="n1"))
    ctrl = controller()
    settle(ctrl)
    commit(pod("a", node="n1"), pod("b", node="n2"))
    rep = ctrl.reconcile()
    assert not rep.quiet and rep.synced.added == (("Pod", "default", "b"),)


def test_the_clock_brings_back_the_full_pass(setup):
    commit, controller = setup
    commit(pod("a", node="n1"))
    ctrl = controller()
    rep = settle(ctrl)
    assert rep.next_due <= time.time() + q.FULL_PASS_EVERY
    later = ctrl.reconcile(now=rep.next_due + 0.01)
    assert not later.quiet, "a pass past the plan's due time was not planned"
    # The Node's heartbeat is rewritten every NODE_STATUS_UPDATE_SECONDS, so that is the longest a quiet run lasts.
    at = rep.next_due + 0.02
    rep = settle(ctrl, now=at)
    assert rep.next_due - at <= NODE_STATUS_UPDATE_SECONDS + 1


def test_min_ready_seconds_and_progress_deadlines_are_due_times():
    now = 1000.0
    rc_ = {"kind": "ReplicationController", "metadata": {"name": "r", "namespace": "default", "uid": "u-rc"},
           "spec": {"minReadySeconds": 5}}
    ready = {"kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u-p",
                                         "ownerReferences": [{"kind": "ReplicationController", "name": "r",
                                                              "uid": "u-rc", "controller": True}]},
             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                                                            "lastTransitionTime": "1970-01-01T00:16:38Z"}]}}
    world = {("ReplicationController", "default", "r"): rc_, ("Pod", "default", "p"): ready}
    assert time_due(world, now) == pytest.approx(998 + 5 + 0.001)
    assert time_due(world, 1004) is None  # available since 1003: nothing more to wait for
    dep = {"kind": "Deployment", "metadata": {"name": "d", "namespace": "default", "uid": "u-d"},
           "spec": {"progressDeadlineSeconds": 60},
           "status": {"conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                                      "lastUpdateTime": "1970-01-01T00:16:40Z"}]}}
    assert time_due({("Deployment", "default", "d"): dep}, now) == pytest.approx(1000 + 60 + 0.001)
    done = {**dep, "status": {"conditions": [{"type": "Progressing", "status": "True",
                                              "reason": "NewReplicaSetAvailable",
                                              "lastUpdateTime": "1970-01-01T00:16:40Z"}]}}
    assert time_due({("Deployment", "default", "d"): done}, now) is None


def test_verify_mode_catches_a_quiet_pass_that_should_have_planned(world, monkeypatch):
    """The check the integration tests run under: a mark whose due time is wrong (here: a pod of an RC with
    minReadySeconds becomes available, and the mark ignores it) is caught, not silently skipped."""
    commit, controller = world
    commit(rc("web", 1, min_ready=2))
    ctrl = controller()
    for _ in range(4):
        ctrl.reconcile()
    monkeypatch.setenv("GITKUBE_VERIFY_QUIET", "1")
    rep = ctrl.reconcile()
    assert ctrl.quiet is not None, rep.summary()
    ctrl.quiet.due = float("inf")  # as if time_due did not know minReadySeconds
    with pytest.raises(q.QuietMismatch, match="status"):
        ctrl.reconcile(now=time.time() + 5)
