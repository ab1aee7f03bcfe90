"""The probe worker state machine (kubelet prober/worker.go semantics), pure."""
import math

import pytest

from gitkube.api import Probe
from gitkube.reconcile import probes as pr

T0 = 1_000_000.0  # container start


def probe(**kw) -> Probe:
    return Probe(exec={"command": ["true"]}, **kw)


def drive(kind, p, outcomes, started=T0, created=T0, elapsed=None):
    """Run a worker the way the timing loop does: wait for due, begin, record the next outcome."""
    st = pr.start_worker(kind, p, "c1", started, created)
    log = []
    for ok in outcomes:
        t = pr.due_at(st)
        assert t != math.inf, "worker stopped probing"
        st = pr.begin(st, t)
        out = pr.record(st, ok, t + 0.05, elapsed)
        st = out.state
        log.append((t - started, out))
    return st, log


def test_defaults_are_kubernetes():
    t = pr.ProbeTiming.of(pr.READINESS, Probe(exec={"command": ["true"]}))
    assert (t.initial_delay, t.period, t.timeout, t.success_threshold, t.failure_threshold) == (0, 10, 1, 1, 3)


def test_missing_probe_counts_as_success_and_never_probes():
    for kind in (pr.LIVENESS, pr.READINESS):
        st = pr.start_worker(kind, None, "c1", T0, T0)
        assert st.result is True
        assert pr.due_at(st) == math.inf and not pr.is_due(st, T0 + 1e6)


def test_readiness_false_until_first_success_then_true():
    st = pr.start_worker(pr.READINESS, probe(periodSeconds=2), "c1", T0, T0)
    assert st.result is False and pr.is_due(st, T0)
    st, log = drive(pr.READINESS, probe(periodSeconds=2), [True])
    assert st.result is True and log[0][1].changed


def test_readiness_initial_delay_not_probed_and_not_ready_before():
    p = probe(initialDelaySeconds=8, periodSeconds=1)
    st = pr.start_worker(pr.READINESS, p, "c1", T0, T0 + 0.3)  # the worker starts a little after the container
    assert st.result is False
    assert not pr.is_due(st, T0 + 7.9)
    assert pr.due_at(st) >= T0 + 8 and pr.due_at(st) < T0 + 9
    # Ticks stay on the worker's grid (created + k * period).
    assert pr.due_at(st) == pytest.approx(T0 + 8.3)
    # A result claimed before the delay (impossible from the loop) changes nothing.
    assert pr.record(st, True, T0 + 5).state.result is False
    st, log = drive(pr.READINESS, p, [True], created=T0 + 0.3)
    assert st.result is True and log[0][0] >= 8


def test_readiness_success_threshold():
    st, log = drive(pr.READINESS, probe(periodSeconds=1, successThreshold=3), [True, True, False, True, True, True])
    assert [o.state.result for _, o in log] == [False, False, False, False, False, True]
    assert [o.changed for _, o in log] == [False] * 5 + [True]


def test_readiness_failure_threshold_after_ready():
    st, log = drive(pr.READINESS, probe(periodSeconds=1, failureThreshold=3), [True, False, False, True, False, False, False])
    assert [o.state.result for _, o in log] == [True, True, True, True, True, True, False]
    assert [o.failed for _, o in log] == [False, True, True, False, True, True, True]
    assert not any(o.kill for _, o in log)
    # Readiness keeps probing after a failure, and recovers.
    assert pr.due_at(st) < math.inf
    st = pr.record(pr.begin(st, pr.due_at(st)), True, pr.due_at(st) + 0.1).state
    assert st.result is True


def test_liveness_success_until_failure_threshold_then_kill_once():
    p = probe(periodSeconds=2, failureThreshold=3)
    st, log = drive(pr.LIVENESS, p, [False, False, True, False, False])
    assert st.result is True and not any(o.kill for _, o in log)  # a success in between resets the count
    st, log = drive(pr.LIVENESS, p, [False, False, False])
    assert [o.state.result for _, o in log] == [True, True, False]
    assert [o.kill for _, o in log] == [False, False, True]
    assert [t for t, _ in log] == [0, 2, 4]  # period honoured from the first tick
    # On hold: no more probes of this container, and late results change nothing.
    assert st.on_hold and pr.due_at(st) == math.inf and not pr.is_due(st, T0 + 1e6)
    assert pr.record(st, False, T0 + 10).kill is False


def test_liveness_success_threshold_is_always_one():
    assert pr.ProbeTiming.of(pr.LIVENESS, probe(successThreshold=5)).success_threshold == 1


def test_probe_that_times_out_fails():
    p = probe(periodSeconds=1, timeoutSeconds=2, failureThreshold=1)
    st, log = drive(pr.LIVENESS, p, [True], elapsed=2.5)
    assert log[0][1].failed and log[0][1].kill and st.result is False
    st, log = drive(pr.LIVENESS, p, [True], elapsed=1.9)
    assert not log[0][1].failed and st.result is True


def test_period_and_slow_probe():
    p = probe(periodSeconds=5)
    st = pr.start_worker(pr.LIVENESS, p, "c1", T0, T0)
    st = pr.begin(st, T0)
    assert st.busy and pr.due_at(st) == math.inf and not pr.is_due(st, T0 + 100)  # one probe in flight at most
    assert pr.record(st, True, T0 + 0.2).state.next_due == T0 + 5
    # A probe overrunning its period: the next one is due at once when it finishes (a Go ticker keeps one tick).
    slow = pr.record(st, True, T0 + 7).state
    assert pr.is_due(slow, T0 + 7) and slow.next_due == T0 + 5
    st2 = pr.begin(slow, T0 + 7)
    assert st2.next_due == T0 + 10


def test_restart_starts_afresh():
    p = probe(periodSeconds=1, failureThreshold=2, initialDelaySeconds=3)
    st, _ = drive(pr.LIVENESS, p, [False, False])
    assert st.on_hold and st.result is False
    same = pr.for_container(st, p, "c1", T0, T0 + 20)
    assert same is st
    fresh = pr.for_container(st, p, "c2", T0 + 30, T0 + 30.5)
    assert fresh.container_id == "c2" and fresh.result is True and not fresh.on_hold and fresh.run == 0
    assert fresh.next_due == pytest.approx(T0 + 33.5)  # its own initial delay again
    r, _ = drive(pr.READINESS, probe(periodSeconds=1), [True])
    assert r.result is True
    assert pr.for_container(r, probe(periodSeconds=1), "c9", T0, T0).result is False


def test_replay_sequence():
    st, outs = pr.replay(pr.READINESS, probe(periodSeconds=1, successThreshold=2), T0, T0,
                         [(T0, True), (T0 + 1, True), (T0 + 2, False), (T0 + 3, False), (T0 + 4, False)])
    assert [o.state.result for o in outs] == [False, True, True, True, False]
    assert st.next_due == T0 + 5 and st.probes == 5


def test_http_success_range():
    assert [pr.http_success(c) for c in (199, 200, 302, 399, 400, 404, 500)] == [False, True, True, True, False, False, False]


def test_a_readiness_worker_for_a_container_stored_ready_starts_ready_and_needs_the_threshold_to_drop():
    p = probe(periodSeconds=1, failureThreshold=2)
    st = pr.start_worker(pr.READINESS, p, "c1", T0, T0, was_ready=True)
    assert st.result is True
    st = pr.record(pr.begin(st, T0), False, T0 + 0.05).state
    assert st.result is True  # one failure of two
    st = pr.record(pr.begin(st, T0 + 1), False, T0 + 1.05).state
    assert st.result is False
    assert pr.start_worker(pr.READINESS, p, "c1", T0, T0).result is False
