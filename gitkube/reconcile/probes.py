"""A probe worker's decisions, pure (the kubelet's prober worker): when a container's next probe is due, what
its liveness/readiness result is after each probe, and when a liveness failure means killing it now."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Literal

from gitkube.api import Probe

Kind = Literal["liveness", "readiness"]
LIVENESS: Kind = "liveness"
READINESS: Kind = "readiness"
NEVER = math.inf


@dataclass(frozen=True)
class ProbeTiming:
    """A probe's timing fields, defaulted as Kubernetes does (liveness successThreshold is always 1)."""

    initial_delay: int = 0
    period: int = 10
    timeout: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def of(cls, kind: Kind, probe: Probe) -> ProbeTiming:
        """The timing a probe spec asks for, with nonsense (zero, negative) replaced by the defaults' floor."""
        return cls(
            initial_delay=max(0, probe.initialDelaySeconds or 0),
            period=max(1, probe.periodSeconds or 10),
            timeout=max(1, probe.timeoutSeconds or 1),
            success_threshold=1 if kind == LIVENESS else max(1, probe.successThreshold or 1),
            failure_threshold=max(1, probe.failureThreshold or 3),
        )


@dataclass(frozen=True)
class ProbeState:
    """One worker: one probe of one container instance. A new container instance gets a fresh worker."""

    kind: Kind
    container_id: str
    timing: ProbeTiming | None  # None: the container has no such probe, which counts as success
    started_at: float  # when the container started (epoch seconds)
    created_at: float  # when the worker started: its ticks fall on created_at + k * period
    result: bool  # the published result: readiness False until proven, liveness True until disproven
    last: bool | None = None  # the most recent probe outcome
    run: int = 0  # how many consecutive probes gave `last`
    on_hold: bool = False  # liveness failed: no more probes until the container is replaced
    next_due: float = NEVER
    in_flight_since: float | None = None
    probes: int = 0  # probes run so far

    @property
    def busy(self) -> bool:
        return self.in_flight_since is not None


@dataclass(frozen=True)
class Outcome:
    """What recording one probe result decided."""

    state: ProbeState
    failed: bool  # this probe failed (the kubelet records an Unhealthy event for each failed probe)
    changed: bool  # the published result changed
    kill: bool  # liveness reached failureThreshold: kill the container now


def _first_tick_at_or_after(created_at: float, period: int, t: float) -> float:
    k = max(0, math.ceil((t - created_at) / period - 1e-9))
    return created_at + k * period


def _first_tick_after(created_at: float, period: int, t: float) -> float:
    k = max(0, math.floor((t - created_at) / period + 1e-9) + 1)
    return created_at + k * period


def start_worker(kind: Kind, probe: Probe | None, container_id: str, started_at: float, now: float,
                 was_ready: bool = False) -> ProbeState:
    """A fresh worker for a running container: first probe now, or at the first tick past initialDelaySeconds.
    `was_ready`: the stored status says this container instance was ready (a restarted controller's first look at
    it): readiness starts from that, not from False, and the usual failureThreshold is needed to drop it."""
    if probe is None:
        return ProbeState(kind, container_id, None, started_at, now, result=True)
    timing = ProbeTiming.of(kind, probe)
    first = _first_tick_at_or_after(now, timing.period, max(now, started_at + timing.initial_delay))
    return ProbeState(kind, container_id, timing, started_at, now, result=kind == LIVENESS or was_ready,
                      next_due=first)


def for_container(st: ProbeState, probe: Probe | None, container_id: str, started_at: float, now: float) -> ProbeState:
    """The worker for the container now running: the same one, or a fresh one after a restart."""
    if st.container_id == container_id:
        return st
    return start_worker(st.kind, probe, container_id, started_at, now)


def is_due(st: ProbeState, now: float) -> bool:
    """Whether a probe should start now."""
    return st.timing is not None and not st.on_hold and not st.busy and now >= st.next_due


def due_at(st: ProbeState) -> float:
    """When this worker next needs attention (NEVER when it has no probe, is on hold or is probing)."""
    if st.timing is None or st.on_hold or st.busy:
        return NEVER
    return st.next_due


def begin(st: ProbeState, now: float) -> ProbeState:
    """A probe starts now; the next is due at the following tick (at once on completion if that has passed)."""
    assert st.timing is not None
    return replace(st, in_flight_since=now, next_due=_first_tick_after(st.created_at, st.timing.period, now))


def timed_out(st: ProbeState, elapsed: float | None) -> bool:
    """Whether a probe that took `elapsed` seconds overran timeoutSeconds (and so failed)."""
    return st.timing is not None and elapsed is not None and elapsed > st.timing.timeout


def record(st: ProbeState, ok: bool, at: float, elapsed: float | None = None) -> Outcome:
    """Take one probe result: the published result changes only after successThreshold / failureThreshold
    consecutive equal outcomes; a liveness failure then puts the worker on hold and asks for the kill."""
    if st.timing is None or st.on_hold:
        return Outcome(replace(st, in_flight_since=None), False, False, False)
    if not st.busy:
        if at - st.started_at < st.timing.initial_delay:
            return Outcome(st, False, False, False)  # the kubelet does not probe before the delay
        st = replace(st, next_due=_first_tick_after(st.created_at, st.timing.period, at))
    ok = ok and not timed_out(st, elapsed)
    run = st.run + 1 if st.last == ok else 1
    st = replace(st, last=ok, run=run, in_flight_since=None, probes=st.probes + 1)
    threshold = st.timing.success_threshold if ok else st.timing.failure_threshold
    if run < threshold or st.result == ok:
        return Outcome(st, not ok, False, False)
    st = replace(st, result=ok)
    if st.kind == LIVENESS and not ok:
        # The container is about to be killed: stop probing it and start counting afresh (kubelet's onHold).
        return Outcome(replace(st, on_hold=True, run=0, next_due=NEVER), True, True, True)
    return Outcome(st, not ok, True, False)


def replay(kind: Kind, probe: Probe | None, started_at: float, created_at: float,
           results: Iterable[tuple[float, bool] | tuple[float, bool, float]]) -> tuple[ProbeState, list[Outcome]]:
    """A worker after a sequence of (time, ok[, elapsed]) results, and what each one decided."""
    st = start_worker(kind, probe, "", started_at, created_at)
    outs = []
    for r in results:
        o = record(st, r[1], r[0], r[2] if len(r) > 2 else None)
        outs.append(o)
        st = o.state
    return st, outs


def http_success(status: int) -> bool:
    """An HTTP probe succeeds on a status from 200 to 399."""
    return 200 <= status < 400
