"""The controller's pass against FakeNodes at gitkube's Docker seam: which Docker calls observe, plan and apply
make (fast; the sandbox integration tests prove the features on real nodes)."""
from __future__ import annotations

import functools

import pytest
import yaml

from gitkube.controller import Controller, Source
from gitkube.controller.serve import next_wake
from gitkube.reconcile.plan import render_plan
from tests.unit._gitrepo import commit_files
from tests.unit.fakenode import FakeFleet

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc0V1d2Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1"
MUTATING = {"create", "start", "stop", "kill", "restart", "remove", "pull", "create_volume", "remove_volume",
            "put_archive", "exec"}


def pod(name: str, image: str = "gitkube/busybox:latest", policy: str = "Never", node: str | None = None) -> dict:
    spec = {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": image, "imagePullPolicy": policy, "command": ["sleep", "1000"]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def world(tmp_path):
    ident = tmp_path / "id"
    ident.write_text("key")
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"apiVersion": "gitkube/v1", "kind": "Inventory",
                                   "defaults": {"user": "root", "identityFile": str(ident)},
                                   "nodes": [{"name": n, "address": {"host": f"198.18.9.{i + 11}", "port": 22},
                                              "hostKeys": [KEY]} for i, n in enumerate(("n1", "n2"))]}))
    repo = tmp_path / "repo"

    def commit(*objs):
        commit_files(str(repo), {f"manifests/{o['metadata']['name']}.yaml": yaml.safe_dump(o) for o in objs})

    def controller(down=(), state="state", fleet_factory=None, **kw):
        return Controller(str(tmp_path / state), Source(str(repo), None, "manifests", str(inv)),
                          fleet_factory=fleet_factory or functools.partial(FakeFleet, down=set(down)), **kw)

    return commit, controller


def docker(ctrl, node):
    return ctrl.fleet[node].docker


def test_a_pod_is_started_with_its_sandbox_and_a_noop_pass_lists_each_node_once(world):
    commit, controller = world
    commit(pod("web", node="n1"))
    ctrl = controller()
    try:
        rep = ctrl.reconcile()
        d1, d2 = docker(ctrl, "n1"), docker(ctrl, "n2")
        assert [v for v in d1.verbs() if v in MUTATING] == ["create", "start", "create", "start"]
        assert [a[0] for v, a in d1.log if v == "create"] == ["gitkube/pause:3", "gitkube/busybox:latest"]
        assert d2.verbs() == ["info", "version", "list"]
        assert [type(a).__name__ for a in rep.node_actions["n1"]] == ["EnsureSandbox", "StartContainer"]
        st = ctrl.store.get("Pod", "default", "web")["status"]
        assert st["phase"] == "Running" and st["podIP"].startswith("10.1.0.")
        n1, n2 = d1.calls, d2.calls
        rep = ctrl.reconcile()
        assert d1.verbs(n1) == d2.verbs(n2) == ["info", "version", "list"]
        assert rep.summary() == "no changes"
    finally:
        ctrl.close()


def test_a_fresh_process_rebuilds_its_view_from_one_list_call(world):
    commit, controller = world
    commit(pod("web", node="n1"))
    ctrl = controller()
    ctrl.reconcile()
    fleet = ctrl.fleet
    ctrl.close()
    again = controller()
    again.fleet_factory = lambda nodes: fleet  # the same nodes, a new process's view of them
    try:
        before = fleet["n1"].docker.calls
        rep = again.reconcile()
        assert fleet["n1"].docker.verbs(before) == ["info", "version", "list"], "no inspect: the stored status hints"
        assert not rep.node_actions["n1"]
    finally:
        again.close()


def test_diff_observes_only_and_apply_executes_the_printed_plan(world):
    commit, controller = world
    commit(pod("a"), pod("b"), pod("c", node="n2"))
    ctrl = controller()
    try:
        obs, _ = ctrl.observe()
        plan = ctrl.plan(obs)
        for n in ("n1", "n2"):
            assert not set(docker(ctrl, n).verbs()) & MUTATING, "observe + plan changed a node"
        assert ctrl.store.applied_revision() is None, "observe + plan wrote the store"
        printed = render_plan(plan)
        rep = ctrl.reconcile(expect_fingerprint=plan.fingerprint)
        assert rep.refused_fingerprint is None
        assert {n: list(a) for n, a in plan.actions.items()} == rep.node_actions
        assert render_plan(rep.plan) == printed
        started = {n: [a for v, a in docker(ctrl, n).log if v == "create"] for n in ("n1", "n2")}
        assert sum(len(v) for v in started.values()) == 6  # a sandbox and a container for each of the three pods
    finally:
        ctrl.close()


def test_apply_with_a_stale_fingerprint_changes_nothing(world):
    commit, controller = world
    commit(pod("a", node="n1"))
    ctrl = controller()
    try:
        obs, _ = ctrl.observe()
        fp = ctrl.plan(obs).fingerprint
        commit(pod("a", node="n1"), pod("b", node="n2"))  # the world moves: a new revision
        rep = ctrl.reconcile(expect_fingerprint=fp)
        assert rep.refused_fingerprint and rep.refused_fingerprint != fp
        assert ctrl.store.applied_revision() is None and ctrl.store.list("Pod", namespace="*") == []
        for n in ("n1", "n2"):
            assert not set(docker(ctrl, n).verbs()) & MUTATING
    finally:
        ctrl.close()


def test_image_pull_back_off_is_the_planners_decision(world):
    commit, controller = world
    commit(pod("bad", image="example.invalid/nope:1", policy="IfNotPresent", node="n1"))
    ctrl = controller()
    try:
        ctrl.reconcile(now=1000.0)
        d = docker(ctrl, "n1")
        assert d.verbs().count("pull") == 1
        cs = ctrl.store.get("Pod", "default", "bad")["status"]["containerStatuses"][0]
        assert cs["state"]["waiting"]["reason"] == "ErrImagePull"
        n = d.calls
        rep = ctrl.reconcile(now=1001.0)  # within the 10 s back-off: no pull, no create
        assert "pull" not in d.verbs(n) and "create" not in d.verbs(n)
        cs = ctrl.store.get("Pod", "default", "bad")["status"]["containerStatuses"][0]
        assert cs["state"]["waiting"]["reason"] == "ImagePullBackOff"
        assert rep.next_due == pytest.approx(1010.0, abs=1.5), "the pass says when the back-off ends"
        n = d.calls
        ctrl.reconcile(now=1011.0)
        assert d.verbs(n).count("pull") == 1
        assert ctrl.store.kv_get("image_pulls")["n1"][f"{ctrl.store.get('Pod', 'default', 'bad')['metadata']['uid']}/app"][0] == 2
    finally:
        ctrl.close()


def test_an_unreachable_node_is_named_and_not_synced(world):
    commit, controller = world
    commit(pod("a", node="n2"))
    ctrl = controller(down={"n2"})
    try:
        rep = ctrl.reconcile()
        assert "n2" in rep.node_errors and "connection refused" in rep.node_errors["n2"]
        assert docker(ctrl, "n2").verbs() == []
        assert "node n2" in rep.summary()
    finally:
        ctrl.close()


def test_offline_plan_contacts_no_node(world):
    commit, controller = world
    commit(pod("a", node="n1"))
    ctrl = controller()
    try:
        ctrl.reconcile()
        calls = {n: docker(ctrl, n).calls for n in ("n1", "n2")}
        obs, _ = ctrl.observe(offline=True)
        plan = ctrl.plan(obs)
        assert {n: docker(ctrl, n).calls for n in ("n1", "n2")} == calls
        assert plan.offline and render_plan(plan)[0].startswith("# offline")
        assert not any(plan.actions.values()), "the stored statuses say the pod runs: nothing to do"
    finally:
        ctrl.close()


def test_a_removed_object_shows_as_would_prune_and_is_deleted(world):
    commit, controller = world
    commit(pod("a", node="n1"), pod("b", node="n1"))
    ctrl = controller()
    try:
        ctrl.reconcile()
        commit(pod("a", node="n1"))
        obs, _ = ctrl.observe()
        assert "- would prune Pod default/b (removed from Git)" in render_plan(ctrl.plan(obs))
        ctrl.reconcile()
        ctrl.runtimes["n1"].drain()
        ctrl.reconcile()
        assert ctrl.store.get("Pod", "default", "b") is None
        assert "stop" in docker(ctrl, "n1").verbs() or "remove" in docker(ctrl, "n1").verbs()
    finally:
        ctrl.close()


def test_serve_sleeps_until_work_is_due_or_the_resync():
    assert next_wake(100.0, 95.0, 10.0, None) == pytest.approx(5.0)
    assert next_wake(100.0, 95.0, 10.0, 102.0) == pytest.approx(2.0)
    assert next_wake(100.0, 95.0, 10.0, 99.0) == pytest.approx(0.2)  # already due: soon, not a busy loop


def test_container_starts_in_flight_are_bounded_across_the_fleet(world, monkeypatch):
    """Each node runs up to 8 pods' actions at once, but the fleet as a whole holds at most INFLIGHT container
    starts: a deploy to many nodes must not drown the controller (and, on the sandbox, the shared cores)."""
    import threading
    import time

    from gitkube.nodes.kubelet import runtime

    monkeypatch.setattr(runtime, "INFLIGHT", threading.BoundedSemaphore(3))
    live, peak, lock = [0], [0], threading.Lock()

    def slow(orig):
        def start(cid):
            with lock:
                live[0] += 1
                peak[0] = max(peak[0], live[0])
            time.sleep(0.02)
            try:
                return orig(cid)
            finally:
                with lock:
                    live[0] -= 1
        return start

    def fleet(nodes):
        f = FakeFleet(nodes)
        for h in f.nodes.values():
            h.docker.start = slow(h.docker.start)
        return f

    commit, controller = world
    commit(*[pod(f"p{i}", node=("n1", "n2")[i % 2]) for i in range(12)])
    ctrl = controller(fleet_factory=fleet)
    try:
        ctrl.reconcile()
        assert peak[0] == 3, peak
        phases = [p["status"].get("phase") for p in ctrl.store.list("Pod", namespace="*")]
        assert phases == ["Running"] * 12, phases
    finally:
        ctrl.close()
