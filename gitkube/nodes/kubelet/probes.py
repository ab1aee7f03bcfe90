"""Liveness and readiness probing of running containers from the nodes' side: one timing thread decides what
is due (gitkube.reconcile.probes), a bounded pool runs the probes, so the controller's sync pass never waits."""
from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from gitkube import instruments
from gitkube.nodes.kubelet import hooks
from gitkube.nodes.transport.fleet import Fleet, NodeHandle
from gitkube.nodes.kubelet.runtime import PodRuntime
from gitkube.reconcile import probes as pr
from gitkube.api.views import parse_time
from gitkube.reconcile.podsync import ObservedContainer, PodWork, group, pod_ip, was_ready

log = logging.getLogger(__name__)

EventSink = Callable[[str, str, str, str, str, str], None]  # node, pod uid, pod key, reason, message, type
TITLE = {pr.LIVENESS: "Liveness", pr.READINESS: "Readiness"}


@dataclass
class _Worker:
    node: str
    kind: pr.Kind
    work: PodWork
    container: object  # gitkube.api.Container
    probe: object  # gitkube.api.Probe
    pod_ip: str
    state: pr.ProbeState

    @property
    def cid(self) -> str:
        return self.state.container_id

    @property
    def named_ports(self) -> dict[str, int]:
        return {p.name: p.containerPort for p in self.container.ports or () if p.name}


class ProbeManager:
    """Probe workers for every running container with probes, keyed by container ID (a restart starts afresh).

    `on_event` and `wake` are called from the manager's threads, never while it holds its lock."""

    def __init__(self, fleet: Fleet | None, runtimes: dict[str, PodRuntime], on_event: EventSink | None = None,
                 wake: Callable[[], None] | None = None, max_concurrent: int = 16, max_kills: int = 8,
                 clock: Callable[[], float] = time.time):
        self.fleet = fleet
        self.runtimes = runtimes
        self.on_event = on_event
        self.wake = wake
        self.clock = clock
        self._workers: dict[tuple[str, str, str], _Worker] = {}  # (node, container id, kind) -> worker
        self._current: dict[tuple[str, str], tuple[str, str]] = {}  # (pod uid, container) -> (node, container id)
        self._killed: set[str] = set()  # container ids being killed for a failed liveness probe
        self._cond = threading.Condition()
        self._closed = False
        self._pool = cf.ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="probe")
        self._kill_pool = cf.ThreadPoolExecutor(max_workers=max_kills, thread_name_prefix="probe-kill")
        self._timer = threading.Thread(target=self._loop, name="probe-timer", daemon=True)
        self._timer.start()

    # -- the controller's side ----------------------------------------------------------------------
    def update(self, node: str, works: list[PodWork], observed: list[ObservedContainer]) -> None:
        """Start workers for the node's running containers that have probes; stop those of containers gone."""
        now = self.clock()
        by_pod = group(observed)
        runtime = self.runtimes.get(node)
        host_ip = runtime.host_ip if runtime is not None else (self.fleet[node].config.host if self.fleet else "")
        wanted: dict[tuple[str, str, str], tuple] = {}
        current: dict[tuple[str, str], tuple[str, str]] = {}
        for w in works:
            if w.deleting:
                continue  # a terminating pod is not probed (nor killed by its liveness probe)
            seen = by_pod.get(w.uid, {})
            ip = pod_ip(w, seen, host_ip) or host_ip
            for c in w.pod.spec.containers:
                attempts = seen.get(c.name) or []
                latest = attempts[-1] if attempts else None
                if latest is None or latest.state != "running":
                    continue
                current[(w.uid, c.name)] = (node, latest.id)
                started = parse_time(latest.started_at) or now
                for kind, probe in ((pr.LIVENESS, c.livenessProbe), (pr.READINESS, c.readinessProbe)):
                    if probe is not None:
                        wanted[(node, latest.id, kind)] = (w, c, probe, ip, started,
                                                           kind == pr.READINESS and was_ready(w, c.name, latest.id))
        with self._cond:
            for key in [k for k in self._workers if k[0] == node and k not in wanted]:
                del self._workers[key]
            for key, (w, c, probe, ip, started, ready_before) in wanted.items():
                wk = self._workers.get(key)
                if wk is None:
                    st = pr.start_worker(key[2], probe, key[1], started, now, was_ready=ready_before)
                    self._workers[key] = _Worker(node, key[2], w, c, probe, ip, st)
                else:
                    wk.work, wk.pod_ip = w, ip
            self._current = {k: v for k, v in self._current.items() if v[0] != node}
            self._current.update(current)
            live = {k[1] for k in self._workers}
            self._killed &= live
            self._cond.notify_all()

    def readiness(self) -> dict[tuple[str, str], bool]:
        """(pod uid, container name) -> ready, for running containers with a readiness probe."""
        out = {}
        with self._cond:
            for (uid, name), (node, cid) in self._current.items():
                wk = self._workers.get((node, cid, pr.READINESS))
                if wk is not None:
                    out[(uid, name)] = wk.state.result and cid not in self._killed
        return out

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._workers.clear()
            self._cond.notify_all()
        self._timer.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._kill_pool.shutdown(wait=False, cancel_futures=True)

    # -- timing -------------------------------------------------------------------------------------
    def _loop(self) -> None:
        with self._cond:
            while not self._closed:
                now = self.clock()
                nxt = pr.NEVER
                for key, wk in self._workers.items():
                    if pr.is_due(wk.state, now):
                        wk.state = pr.begin(wk.state, now)
                        try:
                            self._pool.submit(self._probe, key, wk)
                        except RuntimeError:  # pool shut down under us: closing
                            return
                    nxt = min(nxt, pr.due_at(wk.state))
                self._cond.wait(timeout=min(max(nxt - self.clock(), 0.01), 1.0))

    def _handle(self, node: str) -> NodeHandle:
        if self.fleet is not None:
            return self.fleet[node]
        return self.runtimes[node].h

    def _probe(self, key: tuple[str, str, str], wk: _Worker) -> None:
        handler = wk.probe
        timeout = wk.state.timing.timeout if wk.state.timing else 1
        t0 = time.monotonic()
        try:
            ok, msg = hooks.run_handler(self._handle(wk.node), wk.cid, handler, wk.pod_ip, timeout, wk.named_ports)
        except Exception as e:  # noqa: BLE001 - a probe that cannot run has failed
            ok, msg = False, str(e)
        elapsed = time.monotonic() - t0
        with self._cond:
            if self._workers.get(key) is not wk:
                return  # the container went away (or the manager closed) while probing
            out = pr.record(wk.state, ok, self.clock(), elapsed)
            wk.state = out.state
            self._cond.notify_all()
        if out.failed and ok:
            msg = f"probe timed out after {elapsed:.1f}s (timeoutSeconds {timeout})"
        instruments.probe_result(wk.kind, ok and not out.failed, wk.work.pod.metadata.namespace or "default",
                                 wk.work.pod.metadata.name, wk.container.name)
        self._after(wk, out, msg)

    def _after(self, wk: _Worker, out: pr.Outcome, msg: str) -> None:
        title = TITLE[wk.kind]
        if out.failed:
            self._event(wk, "Unhealthy", f"{title} probe failed: {msg}".rstrip(), "Warning")
        if out.kill:
            with self._cond:
                self._killed.add(wk.cid)
            try:
                self._kill_pool.submit(self._kill, wk)
            except RuntimeError:
                return
        elif out.changed and wk.kind == pr.READINESS:
            self._wake()

    def _kill(self, wk: _Worker) -> None:
        rt = self.runtimes.get(wk.node)
        if rt is None:
            log.warning("probes: no runtime for node %s, cannot kill %s", wk.node, wk.cid[:12])
            return
        try:
            rt.kill_container(wk.work, wk.cid, wk.container, wk.work.pod.spec.terminationGracePeriodSeconds,
                              "failed liveness probe")
        except Exception as e:  # noqa: BLE001 - reported; the next sync pass sees the container as it is
            log.warning("probes: killing %s on %s failed: %s", wk.cid[:12], wk.node, e)
            self._event(wk, "FailedKillPod", f"error killing container {wk.container.name}: {e}", "Warning")
        self._wake()

    def _event(self, wk: _Worker, reason: str, message: str, type_: str) -> None:
        if self.on_event is None:
            log.info("%s %s/%s: %s %s", wk.node, wk.work.key, wk.container.name, reason, message)
            return
        try:
            self.on_event(wk.node, wk.work.uid, wk.work.key, reason, message, type_)
        except Exception:  # noqa: BLE001 - a broken sink must not stop probing
            log.exception("probes: event sink failed")

    def _wake(self) -> None:
        if self.wake is not None:
            try:
                self.wake()
            except Exception:  # noqa: BLE001
                log.exception("probes: wake failed")
