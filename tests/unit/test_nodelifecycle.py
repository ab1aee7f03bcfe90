"""Node lifecycle: Ready/NotReady/Unknown from heartbeats, eviction after the timeout, stale containers."""

from _pods import pod_view
from gitkube.reconcile.nodelifecycle import (
    ReadyCondition,
    NodeHeartbeat,
    node_lifecycle,
    node_ready_condition,
    stale_pod_uids,
)


def hb(node, last_success, **kw):
    kw.setdefault("observed_since", 0.0)  # a controller that has been watching all along
    return NodeHeartbeat(node, last_success=last_success, last_attempt=kw.pop("last_attempt", last_success), **kw)


def test_ready_within_grace_unknown_after():
    c = node_ready_condition(hb("n1", 100), now=115)
    assert (c.status, c.reason, c.message) == ("True", "KubeletReady", "kubelet is posting ready status")
    c = node_ready_condition(hb("n1", 100, last_attempt=125, last_error="ssh: timed out"), now=125)
    assert (c.status, c.reason) == ("Unknown", "NodeStatusUnknown")
    assert c.message == "Kubelet stopped posting node status. Last probe error: ssh: timed out"
    assert c.last_transition_time == 120  # when the 20 s grace ran out
    assert c.last_heartbeat_time == 100


def test_runtime_failure_is_false_with_the_error():
    c = node_ready_condition(hb("n1", 100, last_attempt=105, last_error="docker: connection refused",
                                runtime_error=True), now=106)
    assert (c.status, c.reason, c.message) == ("False", "KubeletNotReady", "docker: connection refused")


def test_never_reached_node():
    c = node_ready_condition(NodeHeartbeat("n9", registered_at=5), now=6)
    assert (c.status, c.reason, c.message) == ("Unknown", "NodeStatusNeverUpdated", "Kubelet never posted node status.")


def test_transition_time_kept_while_status_unchanged():
    prev = ReadyCondition("True", "KubeletReady", "", 10, 3)
    assert node_ready_condition(hb("n1", 100), now=101, previous=prev).last_transition_time == 3
    prev = ReadyCondition("Unknown", "NodeStatusUnknown", "", 10, 50)
    assert node_ready_condition(hb("n1", 10), now=200, previous=prev).last_transition_time == 50


PODS = [
    pod_view("web-abcde", uid="u1", node="n2", owner_uid="rc", ready=True, phase="Running"),
    pod_view("bare", uid="u2", node="n2", ready=True, phase="Running"),
    pod_view("going", uid="u3", node="n2", owner_uid="rc", deleting=True, phase="Running"),
    pod_view("web-fghjk", uid="u4", node="n1", owner_uid="rc", ready=True, phase="Running"),
]


def test_not_ready_node_marks_pods_then_evicts_after_timeout():
    beats = [hb("n1", 200), hb("n2", 100), hb("n3", 200)]
    # n2 went Unknown at 120: pods marked not ready, not evicted yet.
    d = node_lifecycle(beats, PODS, now=140)
    assert d.conditions["n2"].status == "Unknown" and d.conditions["n1"].ready
    assert [p.name for p in d.mark_not_ready] == ["bare", "web-abcde"]
    assert d.evict == ()
    # 30 s after it went Unknown: every pod of n2 not already being deleted, RC-owned or bare.
    d = node_lifecycle(beats, PODS, now=150)
    assert [(e.pod.name, e.owned) for e in d.evict] == [("bare", False), ("web-abcde", True)]
    e = d.evict[1]
    assert e.reason == "NodeLost" and e.message == "Node n2 which was running pod web-abcde is unresponsive"
    assert e.event_reason == "NodeControllerEviction"
    assert e.event_message == "Marking for deletion Pod web-abcde from Node n2"


def test_no_eviction_when_no_node_is_ready():
    beats = [hb("n1", 100), hb("n2", 100)]
    d = node_lifecycle(beats, PODS, now=1000)
    assert d.eviction_suspended and d.evict == ()
    assert {p.name for p in d.mark_not_ready} == {"bare", "web-abcde", "web-fghjk"}


def test_pod_on_unknown_node_is_evicted():
    d = node_lifecycle([hb("n1", 100)], [pod_view("x", uid="u", node="gone", phase="Running")], now=101)
    assert d.evict[0].message == "Node gone which was running pod x is gone"


def test_configurable_timings():
    beats = [hb("n1", 100), hb("n2", 90)]
    d = node_lifecycle(beats, PODS, now=100, grace_period=5, eviction_timeout=5)
    assert d.conditions["n2"].status == "Unknown" and len(d.evict) == 2


def test_stale_containers_when_node_returns():
    store = {"u1": "n2", "u4": "n1", "moved": "n1"}
    assert stale_pod_uids("n2", ["u1", "replaced", "moved", "u1"], store) == ("moved", "replaced")
    assert stale_pod_uids("n2", ["u1"], store) == ()


def test_a_fresh_process_counts_from_its_own_first_observation():
    """A heartbeat stored hours ago by another process is no reason to go Unknown or evict (one-shot apply)."""
    def beats(now):
        return [hb("n1", now), hb("n2", 100, last_attempt=now, last_error="timed out", observed_since=10_000),
                hb("n3", now)]
    d = node_lifecycle(beats(10_000), PODS, now=10_000)
    assert d.conditions["n2"].ready and d.evict == () and d.mark_not_ready == ()
    # Unknown once the grace period ran out after the first observation, evicted 30 s after that.
    d = node_lifecycle(beats(10_021), PODS, now=10_021)
    assert d.conditions["n2"].status == "Unknown" and d.conditions["n2"].last_transition_time == 10_020
    assert d.evict == ()
    assert node_lifecycle(beats(10_049), PODS, now=10_049).evict == ()
    d = node_lifecycle(beats(10_050), PODS, now=10_050)
    assert [e.pod.name for e in d.evict] == ["bare", "web-abcde"]
    # No observation recorded at all (None): nothing stored counts, whatever its age.
    fresh = NodeHeartbeat("n2", last_success=100, last_attempt=10_000, last_error="timed out")
    assert node_ready_condition(fresh, now=10_000).ready


def test_untrusted_host_key_is_not_ready_at_once_but_evicts_no_sooner():
    def beats(now):
        return [hb("n1", now), hb("n2", 100, last_attempt=now, last_error="host key mismatch for n2",
                                  error_reason="HostKeyMismatch"), hb("n3", now)]
    d = node_lifecycle(beats(101), PODS, now=101)
    c = d.conditions["n2"]
    assert (c.status, c.reason, c.message) == ("False", "HostKeyMismatch", "host key mismatch for n2")
    assert {p.name for p in d.mark_not_ready} == {"bare", "web-abcde"} and d.evict == ()
    assert node_lifecycle(beats(149), PODS, now=149).evict == ()
    assert len(node_lifecycle(beats(150), PODS, now=150).evict) == 2  # as for an unreachable node: 100 + 20 + 30


def test_evictions_are_rate_limited_per_pass():
    pods = [pod_view(f"p{i}", uid=f"u{i}", node=f"n{i}", ready=True, phase="Running") for i in range(5)]
    beats = [hb("n0", 100), hb("n1", 90), hb("n2", 1000), hb("n3", 1000), hb("n4", 1000)]
    d = node_lifecycle(beats, pods, now=1000)
    assert [e.pod.node for e in d.evict] == ["n1"]  # the node that has waited longest first
    d = node_lifecycle(beats, pods, now=1000, evict_nodes_per_pass=2)
    assert sorted(e.pod.node for e in d.evict) == ["n0", "n1"]


def test_full_disruption_when_most_nodes_are_not_ready():
    beats = [hb("n1", 100), hb("n2", 100), hb("n3", 1000)]
    d = node_lifecycle(beats, PODS, now=1000)
    assert d.eviction_suspended and d.evict == ()
    assert {p.name for p in d.mark_not_ready} == {"bare", "web-abcde", "web-fghjk"}
    # One of three is a node failure, not a disruption.
    d = node_lifecycle([hb("n1", 1000), hb("n2", 100), hb("n3", 1000)], PODS, now=1000)
    assert not d.eviction_suspended and len(d.evict) == 2
