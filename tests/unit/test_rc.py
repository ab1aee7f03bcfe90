"""ReplicationController manager: scaling, adoption, release, delete ranking, status."""

import random

from _pods import pod_view
from gitkube.reconcile.rc import (
    GENERATE_NAME_ALPHABET,
    RCInfo,
    RCStatus,
    deletion_rank,
    generate_name,
    manage_replication_controller,
)

SEL = {"app": "web"}


def rc(replicas, generation=1, **kw):
    return RCInfo("rc-uid", "default", "web", generation, replicas, SEL, {"app": "web", "tier": "front"}, **kw)


def running(name, **kw):
    kw.setdefault("labels", {"app": "web", "tier": "front"})
    kw.setdefault("owner_uid", "rc-uid")
    kw.setdefault("phase", "Running")
    kw.setdefault("ready", True)
    kw.setdefault("node", "n1")
    return pod_view(name, **kw)


def test_scaled_1_to_3_to_1_as_successive_decisions():
    rng = random.Random(42)
    pods = [running("web-aaaaa", created=1)]
    d = manage_replication_controller(rc(1), pods, now=100, rng=rng)
    assert d.empty and d.status == RCStatus(1, 1, 1, 1, 1)

    d = manage_replication_controller(rc(3, generation=2), pods, now=100, rng=rng)
    assert d.create_count == 2 and not d.delete
    for name in d.create:
        assert name.startswith("web-") and len(name) == 9
        assert set(name[4:]) <= set(GENERATE_NAME_ALPHABET)
    assert d.status.replicas == 1 and d.status.observed_generation == 2
    # the created pods appear, newer than the first
    pods += [running(n, created=50 + i) for i, n in enumerate(d.create)]
    d = manage_replication_controller(rc(3, generation=2), pods, now=100, rng=rng)
    assert d.empty and d.status.replicas == 3

    d = manage_replication_controller(rc(1, generation=3), pods, now=100, rng=rng)
    assert not d.create and len(d.delete) == 2
    assert "web-aaaaa" not in {p.name for p in d.delete}  # the oldest survives
    pods = [p for p in pods if p not in d.delete]
    d = manage_replication_controller(rc(1, generation=3), pods, now=100, rng=rng)
    assert d.empty and d.status == RCStatus(1, 1, 1, 1, 3)


def test_names_are_deterministic_with_a_seeded_rng_and_avoid_taken_names():
    a = manage_replication_controller(rc(3), [], now=0, rng=random.Random(1)).create
    b = manage_replication_controller(rc(3), [], now=0, rng=random.Random(1)).create
    assert a == b and len(set(a)) == 3
    first = generate_name("web-", random.Random(1))
    assert generate_name("web-", random.Random(1), {first}) != first
    assert len(generate_name("x" * 80 + "-", random.Random(1))) == 63


def test_selector_mismatch_releases_the_pod():
    relabeled = running("web-bbbbb", labels={"app": "debug"})
    d = manage_replication_controller(rc(1), [relabeled], now=0, rng=random.Random(0))
    assert d.release == (relabeled,)
    assert d.status.replicas == 0 and d.create_count == 1  # and a replacement is made


def test_orphan_with_matching_labels_is_adopted():
    orphan = running("hand-made", owner_uid=None)
    other = running("other-owner", owner_uid="someone-else")
    unrelated = running("db", owner_uid=None, labels={"app": "db"})
    dying_orphan = running("dying", owner_uid=None, deleting=True)
    d = manage_replication_controller(rc(2), [orphan, other, unrelated, dying_orphan], now=0, rng=random.Random(0))
    assert d.adopt == (orphan,)
    assert d.status.replicas == 1 and d.create_count == 1


def test_terminal_and_deleting_pods_do_not_count():
    pods = [running("a", phase="Succeeded"), running("b", phase="Failed"), running("c", deleting=True),
            running("d")]
    d = manage_replication_controller(rc(2), pods, now=0, rng=random.Random(0))
    assert d.status.replicas == 1 and d.create_count == 1 and not d.release


def test_delete_ranking():
    pods = [
        running("old-ready", created=1, ready_since=2),
        running("unassigned", node=None, phase="Pending", ready=False),
        running("pending", phase="Pending", ready=False),
        running("unknown", phase="Unknown", ready=False),
        running("not-ready", ready=False),
        running("restarty", created=1, ready_since=2, restart_count=5),
        running("new-ready", created=9, ready_since=2),
        running("just-ready", created=1, ready_since=8),
    ]
    order = [p.name for p in sorted(pods, key=deletion_rank)]
    assert order == ["unassigned", "pending", "unknown", "not-ready", "just-ready", "restarty", "new-ready",
                     "old-ready"]
    d = manage_replication_controller(rc(5), pods, now=0, rng=random.Random(0))
    assert [p.name for p in d.delete] == ["unassigned", "pending", "unknown"]


def test_status_fully_labeled_ready_available():
    pods = [
        running("a", ready_since=0),
        running("b", ready_since=95),  # ready, not yet for minReadySeconds
        running("c", labels={"app": "web"}, ready=False),  # selected but missing a template label
    ]
    d = manage_replication_controller(rc(3, generation=7, min_ready_seconds=10), pods, now=100)
    assert d.status == RCStatus(replicas=3, fully_labeled_replicas=2, ready_replicas=2, available_replicas=1,
                                observed_generation=7)


def test_rc_being_deleted_does_nothing_but_status():
    pods = [running("a"), running("orphan", owner_uid=None), running("moved", labels={"x": "y"})]
    d = manage_replication_controller(rc(5, deleting=True), pods, now=0)
    assert d.empty and d.status.replicas == 1


def test_burst_limits_creations():
    d = manage_replication_controller(rc(1000), [], now=0, rng=random.Random(0), burst_replicas=10)
    assert d.create_count == 10
