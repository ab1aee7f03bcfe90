"""Sync and health words (Argo CD's) from stored objects: gitkube.reconcile.health."""
from __future__ import annotations

from gitkube.reconcile import health as hl


def pod(name, phase="Running", ready=True, waiting=None, sched=None, deleting=False):
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    if sched:
        conds.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": sched})
    cs = [{"name": "app", "ready": ready, "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}]
    meta = {"name": name, "namespace": "default", **({"deletionTimestamp": "2024-01-01T00:00:00Z"} if deleting else {})}
    return {"kind": "Pod", "metadata": meta, "status": {"phase": phase, "conditions": conds, "containerStatuses": cs}}


def node(name, status="True", reason="KubeletReady", message="ok"):
    return {"kind": "Node", "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": status, "reason": reason, "message": message}]}}


def test_healthy_progressing_degraded_with_reasons():
    assert hl.health([pod("a")], [node("n1")]).status == hl.HEALTHY
    h = hl.health([pod("a"), pod("b", phase="Pending", ready=False, waiting="ContainerCreating")], [node("n1")])
    assert h.status == hl.PROGRESSING and h.reasons == ("pod default/b: Pending (app ContainerCreating)",)
    h = hl.health([pod("a", ready=False, waiting="CrashLoopBackOff")], [node("n1")])
    assert h.status == hl.DEGRADED and h.reasons == ("pod default/a: app CrashLoopBackOff",)
    h = hl.health([pod("a", phase="Pending", ready=False, sched="0/3 nodes are available")], [node("n1")])
    assert h.status == hl.DEGRADED and "Unschedulable: 0/3 nodes are available" in h.reasons[0]
    h = hl.health([], [node("n1", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")])
    assert h.status == hl.DEGRADED and h.reasons[0].startswith("node n1: Unknown NodeStatusUnknown")
    h = hl.health([], [node("n1")], heartbeats={"n1": {"last_error": "node n1: connection refused"}})
    assert h.reasons == ("node n1: unreachable: node n1: connection refused",)
    rc = {"kind": "ReplicationController", "metadata": {"name": "web", "namespace": "default"},
          "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
    assert hl.health([pod("a")], [node("n1")], [rc]).reasons == ("replicationcontroller default/web: 1/2 ready",)


def test_summary_exit_codes_and_lines():
    ok = hl.Summary(hl.SyncStatus(hl.SYNCED, "abc", "abc"), hl.Health(hl.HEALTHY))
    assert ok.exit_code == 0 and ok.lines() == ["revision applied: abc", "sync: Synced", "health: Healthy"]
    out = hl.Summary(hl.SyncStatus(hl.OUT_OF_SYNC, "abc", "def", ("missing: Pod/default/x",)), hl.Health(hl.HEALTHY))
    assert out.exit_code == 1 and "sync: OutOfSync (1 difference(s))" in out.lines()
    refused = hl.Summary(hl.SyncStatus(hl.OUT_OF_SYNC, "abc", "def", refused=("m.yaml:3: spec: bad",)),
                         hl.Health(hl.PROGRESSING, ("pod default/a: Pending",)))
    lines = refused.lines()
    assert refused.exit_code == 1 and any("refused (1 problem(s))" in ln for ln in lines)
    assert "  m.yaml:3: spec: bad" in lines and "health: Progressing" in lines


def test_prune_is_not_an_apply_flag():
    import pytest

    from gitkube.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["apply", "--prune"])
    args = build_parser().parse_args(["apply", "--plan-fingerprint", "abc", "--show-plan"])
    assert args.plan_fingerprint == "abc" and args.show_plan
