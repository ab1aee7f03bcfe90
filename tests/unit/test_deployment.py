"""The rollout planner against Kubernetes' documented arithmetic (concepts/workloads/controllers/deployment)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from gitkube.reconcile.deployment import (
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    REVISION,
    ROLLED_BACK_GENERATION,
    Condition,
    DeploymentView,
    RSView,
    plan_deployment,
    pod_template_hash,
    resolve_fenceposts,
    rollout_summary,
    scaled_value,
)


def rs(name, replicas, available=None, revision=1, t=0.0, desired=None, surge=0, pods=None, running=None, **ann):
    available = replicas if available is None else available
    pods = replicas if pods is None else pods
    a = {REVISION: str(revision), DESIRED_REPLICAS: str(desired if desired is not None else replicas),
         MAX_REPLICAS: str((desired if desired is not None else replicas) + surge), **ann}
    return RSView(name=f"web-{name}", template_hash=name, replicas=replicas, revision=revision, creation_time=t,
                  pods=pods, ready=available, available=available, running=pods if running is None else running,
                  annotations=a)


def dep(h="new", replicas=3, **kw):
    return DeploymentView(name="web", generation=2, replicas=replicas, template_hash=h, **kw)


def sizes(decision, rss):
    return {r.template_hash: decision.replicas_of(r.name, r.replicas) for r in rss} | {
        c.template_hash: c.replicas for c in decision.changes if c.create}


@pytest.mark.parametrize("value,total,up,want", [
    ("25%", 10, True, 3), ("25%", 10, False, 2), ("25%", 1, True, 1), ("25%", 1, False, 0), ("50%", 3, True, 2),
    ("50%", 3, False, 1), (2, 10, True, 2), ("0%", 10, True, 0), ("100%", 7, False, 7)])
def test_percent_rounding_surge_up_unavailable_down(value, total, up, want):
    assert scaled_value(value, total, up) == want


def test_fenceposts_both_zero_allow_one_unavailable():
    assert resolve_fenceposts("25%", "25%", 10) == (3, 2)
    assert resolve_fenceposts("10%", "10%", 3) == (1, 0)  # 0.3 up is 1, down is 0
    assert resolve_fenceposts("0%", "0%", 3) == (0, 1)
    assert resolve_fenceposts(0, "10%", 5) == (0, 1)


def test_first_pass_of_a_25_25_rollout_of_10():
    """New RS created at maxSurge (3), old scaled to replicas - maxUnavailable (8), then the new one to 5: total 13."""
    old = rs("old", 10, t=1)
    d = plan_deployment(dep(replicas=10), [old], now=100)
    got = sizes(d, [old])
    assert got == {"old": 8, "new": 5}
    assert sum(got.values()) <= 10 + 3
    created = [c for c in d.changes if c.create][0]
    assert created.name == "web-new" and created.annotations[REVISION] == "2"
    assert created.annotations[DESIRED_REPLICAS] == "10" and created.annotations[MAX_REPLICAS] == "13"


def test_max_surge_1_max_unavailable_0_keeps_3_available_and_at_most_4():
    """Simulated passes: a new pod is available the pass after it exists; bounds hold at every pass."""
    view = dep(max_surge=1, max_unavailable=0)
    rss = [rs("old", 3, t=1)]
    conds, last = (), {}
    for step in range(20):
        d = plan_deployment(replace(view, conditions=tuple(conds), last_status=last), rss, now=100 + step)
        conds, last = d.conditions, d.status
        nxt = []
        for r in rss:
            n = d.replicas_of(r.name, r.replicas)
            nxt.append(replace(r, replicas=n, pods=n, available=min(r.pods, n), ready=min(r.pods, n),
                               annotations=next((c.annotations for c in d.changes if c.name == r.name), r.annotations)))
        for c in d.changes:
            if c.create:
                nxt.append(RSView(c.name, c.template_hash, c.replicas, 2, 50, c.replicas, 0, 0, c.replicas, c.annotations))
        rss = nxt
        assert sum(r.replicas for r in rss) <= 4
        assert sum(r.available for r in rss) >= 3
    assert {r.template_hash: r.replicas for r in rss} == {"old": 0, "new": 3}
    assert {c.type: c.reason for c in conds} == {"Progressing": "NewReplicaSetAvailable", "Available": "MinimumReplicasAvailable"}


def test_no_old_pod_goes_while_new_ones_are_not_available():
    d = plan_deployment(dep(max_surge=1, max_unavailable=0), [rs("old", 3, t=1), rs("new", 1, available=0, revision=2, t=2)], 100)
    assert d.replicas_of("web-old", 3) == 3 and d.replicas_of("web-new", 1) == 1


def test_proportional_scaling_during_a_rollout_matches_the_docs():
    """The documentation's example: 10 replicas, maxSurge 3, maxUnavailable 2, mid-rollout 8 old + 5 new (stuck);
    scaled to 15 → 11 old + 7 new."""
    old = rs("old", 8, t=1, desired=10, surge=3)
    new = rs("new", 5, available=0, revision=2, t=2, desired=10, surge=3)
    d = plan_deployment(dep(replicas=15, max_surge=3, max_unavailable=2), [old, new], 100)
    assert sizes(d, [old, new]) == {"old": 11, "new": 7}
    for c in d.changes:
        assert c.annotations[DESIRED_REPLICAS] == "15" and c.annotations[MAX_REPLICAS] == "18"


def test_scaling_a_settled_deployment_scales_its_one_replicaset():
    cur = rs("new", 3, revision=2, desired=3)
    d = plan_deployment(dep(replicas=5), [cur, rs("old", 0, revision=1, desired=3)], 100)
    assert d.replicas_of("web-new", 3) == 5 and not any(c.create for c in d.changes)


def test_template_change_mid_rollout_rolls_over():
    """v1 → v2 in progress (v2 not available), then v3: v2's unavailable pods go at once, v3 takes the surge."""
    v1 = rs("v1", 3, t=1, desired=3, surge=1)
    v2 = rs("v2", 1, available=0, revision=2, t=2, desired=3, surge=1)
    d = plan_deployment(dep("v3", max_surge=1, max_unavailable=0), [v1, v2], 100)
    got = sizes(d, [v1, v2])
    assert got == {"v1": 3, "v2": 0, "v3": 1}
    assert [c for c in d.changes if c.create][0].annotations[REVISION] == "3"


def test_an_old_template_back_reuses_its_replicaset_with_a_new_revision():
    v1 = rs("v1", 0, revision=1, t=1, desired=3)
    v2 = rs("v2", 3, revision=2, t=2, desired=3)
    d = plan_deployment(dep("v1", max_surge=1, max_unavailable=0), [v1, v2], 100)
    assert not any(c.create for c in d.changes)
    assert next(c for c in d.changes if c.name == "web-v1").annotations[REVISION] == "3"
    assert d.revision == 3 and d.replicas_of("web-v1", 0) == 1


def test_paused_starts_no_rollout_but_scales():
    old = rs("old", 3, desired=3)
    d = plan_deployment(dep(paused=True), [old], 100)
    assert d.changes == [] and d.new_rs is None
    assert {c.type: c.reason for c in d.conditions}["Progressing"] == "DeploymentPaused"
    d = plan_deployment(dep(replicas=6, paused=True), [old], 100)
    assert d.changes and d.replicas_of("web-old", 3) == 6 and not any(c.create for c in d.changes)


def test_recreate_waits_for_old_pods_to_be_gone():
    old = rs("old", 3, desired=3)
    d = plan_deployment(dep(strategy="Recreate"), [old], 100)
    assert d.replicas_of("web-old", 3) == 0 and not any(c.create for c in d.changes)
    terminating = replace(old, replicas=0, pods=0, available=0, running=2)
    d = plan_deployment(dep(strategy="Recreate"), [terminating], 101)
    assert not any(c.create for c in d.changes)
    gone = replace(terminating, running=0)
    d = plan_deployment(dep(strategy="Recreate"), [gone], 102)
    assert [(c.name, c.replicas) for c in d.changes if c.create] == [("web-new", 3)]


def _progressing(at: float, reason="ReplicaSetUpdated"):
    return (Condition("Progressing", "True", reason, 'ReplicaSet "web-new" is progressing.', at, at),)


def test_no_progress_for_the_deadline_is_progress_deadline_exceeded():
    old, new = rs("old", 3, t=1, surge=1), rs("new", 1, available=0, revision=2, t=2, surge=1)
    status = {"replicas": 3, "updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3}
    view = dep(max_surge=1, max_unavailable=0, progress_deadline_seconds=10, last_status=status)
    d = plan_deployment(replace(view, conditions=_progressing(100)), [old, new], 105)
    assert {c.type: c.reason for c in d.conditions}["Progressing"] == "ReplicaSetUpdated"
    d = plan_deployment(replace(view, conditions=_progressing(100)), [old, new], 111)
    prog = {c.type: c for c in d.conditions}["Progressing"]
    assert (prog.status, prog.reason) == ("False", "ProgressDeadlineExceeded")
    assert d.replicas_of("web-old", 3) == 3 and d.replicas_of("web-new", 1) == 1  # Kubernetes stops there
    assert not any(e[1] == "RolledBack" for e in d.events)


def test_rollback_on_failure_scales_back_and_holds():
    old, new = rs("old", 3, t=1, surge=1), rs("new", 1, available=0, revision=2, t=2, surge=1, gitkube_commit="x")
    view = dep(max_surge=1, max_unavailable=0, progress_deadline_seconds=10, rollback_on_failure=True,
               git_commit="abcdef1234567890", last_status={"replicas": 3, "updatedReplicas": 1, "readyReplicas": 3,
                                                            "availableReplicas": 3})
    d = plan_deployment(replace(view, conditions=_progressing(100)), [old, new], 111)
    assert d.rolled_back and d.replicas_of("web-new", 1) == 0 and d.replicas_of("web-old", 3) == 3
    mark = next(c for c in d.changes if c.name == "web-new").annotations
    assert mark[ROLLED_BACK_GENERATION] == "2"
    warn = [e for e in d.events if e[0] == "Warning"]
    assert warn and warn[0][1] == "RolledBack" and "abcdef123456" in warn[0][2]
    # later passes: the refused ReplicaSet stays at 0, the stable one follows spec.replicas
    held = replace(new, replicas=0, pods=0, annotations=mark)
    d2 = plan_deployment(replace(view, replicas=4, conditions=tuple(d.conditions)), [old, held], 120)
    assert d2.replicas_of("web-new", 0) == 0 and d2.replicas_of("web-old", 3) == 4
    # a new generation (a new commit) rolls again
    d3 = plan_deployment(replace(view, generation=3, conditions=tuple(d.conditions)), [old, held], 130)
    assert d3.replicas_of("web-new", 0) == 1


def test_a_new_commit_after_a_timed_out_rollout_starts_a_new_progress_window():
    """Recreate back to an existing ReplicaSet after a timeout: `rollout status` must not fail on the stale condition."""
    stable, back = rs("stable", 3, revision=3, t=3), rs("new", 0, revision=1, t=1)
    timed_out = (Condition("Progressing", "False", "ProgressDeadlineExceeded", "timed out", 50, 50),)
    last = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 0, "readyReplicas": 3, "availableReplicas": 3}
    view = replace(dep(strategy="Recreate", progress_deadline_seconds=120, conditions=timed_out, last_status=last),
                   generation=3)
    d = plan_deployment(view, [stable, back], 200)
    prog = {c.type: c for c in d.conditions}["Progressing"]
    assert (prog.status, prog.reason) == ("True", "ReplicaSetUpdated") and prog.last_update == 200
    assert d.replicas_of("web-stable", 3) == 0
    # the same generation seen again keeps a timeout (no new commit, no new window)
    same = replace(view, generation=2)
    d2 = plan_deployment(same, [stable, back], 200)
    assert {c.type: c.reason for c in d2.conditions}["Progressing"] == "ProgressDeadlineExceeded"


def test_revision_history_limit_prunes_oldest_empty_replicasets():
    rss = [rs(f"r{i}", 0, revision=i, t=i) for i in range(1, 5)] + [rs("new", 3, revision=5, t=9)]
    d = plan_deployment(dep(revision_history_limit=1), rss, 100)
    assert d.prune == ["web-r1", "web-r2", "web-r3"]


def test_template_hash_is_stable_ignores_its_label_and_takes_extra_inputs():
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}
    h = pod_template_hash(t)
    assert len(h) == 10 and h == pod_template_hash({**t, "metadata": {"labels": {"app": "web", "pod-template-hash": h}}})
    assert pod_template_hash(t, extra=[{"configmap": "a", "data": {"k": "1"}}]) != h
    assert pod_template_hash(t, collision_count=1) != h


def test_diff_summary_names_versions_and_bounds():
    view = dep("v2", max_surge=1, max_unavailable=0)
    assert rollout_summary(view, [rs("v1", 3)], {"v1": "v1", "v2": "v2"}) == "web: 3 pods v1 → v2, maxSurge 1, maxUnavailable 0"
    assert rollout_summary(view, [rs("v2", 3)], {}) is None
