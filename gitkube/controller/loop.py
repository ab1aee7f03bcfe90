"""The control loop: one pass is observe → plan → apply. `Controller` owns what lives across passes — the store,
the fleet of node connections, each node's PodRuntime, the probe manager — and starts and shuts them down in order.
Decisions are gitkube.reconcile's (plan.plan_pass); I/O is observe's and apply's."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time

from gitkube import instruments
from gitkube.controller import apply as applier
from gitkube.controller import observe as observer
from gitkube.controller.configwire import config_at_applied
from gitkube.controller import quiet as q
from gitkube.controller.context import PassReport, Source
from gitkube.controller.quiet import QuietMark
from gitkube.nodes.fleetlock import FleetLock, engine_key, holder_name
from gitkube.nodes.inventory import NodeConfig
from gitkube.nodes.kubelet.runtime import PodRuntime
from gitkube.nodes.transport.fleet import Fleet, node_facts
from gitkube.reconcile.plan import Observation, PassPlan, SyncSummary, plan_pass
from gitkube.reconcile.scheduler import Scheduler
from gitkube.source.secrets import identity_path, load_identities
from gitkube.store import Store, open_store

log = logging.getLogger(__name__)


class Controller:
    """One controller per state directory (the store's writer lock); its passes are idempotent.

    Owns, and closes in this order: the probe manager (its timer and pools), each node's PodRuntime (terminations
    under way are waited for), the fleet (its pools, then the SSH+Docker connections), the store."""

    def __init__(self, state_dir: str, source: Source, *, writer: bool = True, progress=None,
                 grace_period: float = 20.0, eviction_timeout: float = 30.0, probe_timeout: float = 6.0,
                 fleet_factory=Fleet, store_url: str | None = None, elect: bool = True, fresh_store: bool = False):
        self.source = source
        self.fleet_factory = fleet_factory  # Fleet: real SSH+Docker; unit tests pass a fleet of FakeNodes
        # elect=False: an etcd store's writer that waits for the leadership (serve) instead of taking it now (apply)
        # fresh_store: `gitkube state rebuild` moves the SQLite DB aside first
        self.store = (Store.open(state_dir, writer=writer, fresh=True) if fresh_store
                      else open_store(state_dir, writer=writer, url=store_url, elect=elect))
        self.may_act = lambda: None  # raises (Fenced) when this process may not act on nodes: an etcd standby
        self.cluster_id = self.store.cluster_id()  # labelled on every container this installation makes
        self.rebuilt = None  # the RebuildReport, when this process rebuilt a lost state from the nodes
        # The lock record on each node that says this installation manages it (None: take none, as diff does).
        self.fleet_lock: FleetLock | None = (FleetLock(self.cluster_id, holder_name(state_dir))
                                             if writer and fleet_factory is Fleet else None)
        self.progress = progress or (lambda m: None)
        self.grace_period = grace_period
        self.eviction_timeout = eviction_timeout
        self.probe_timeout = probe_timeout
        self.scheduler = Scheduler()
        self.fleet: Fleet | None = None
        self._fleet_key: tuple | None = None
        self.runtimes: dict[str, PodRuntime] = {}
        self.probes = None  # a ProbeManager, started by serve/apply --wait (start_probes)
        self.proxy_mode = "iptables"  # how nodes answer Services: "iptables" (kernel NAT, the default) or "haproxy"
        self.lock = threading.RLock()
        self.waiting: dict[tuple[str, str], tuple[str, str]] = {}  # containers held back in the last pass
        self.first_seen: dict[str, float] = {}  # node -> this process's first heartbeat of it (eviction clocks)
        self.template_inputs = None  # None: a Deployment's pod-template hash reads its env's config (plan.py)
        self.identities = load_identities(identity_path(source.age_identity))
        self.config: dict | None = None  # ConfigMap/Secret values of the applied revision (memory only, never stored)
        self.last_plan: PassPlan | None = None
        self.quiet: QuietMark | None = None  # set by a full pass that changed nothing (gitkube.controller.quiet)
        self.quiet_passes = 0  # passes that needed no planning, since this controller started
        self._inventory: list[NodeConfig] | None = None  # the nodes the last observe read
        self._probed: dict | None = None  # the heartbeats the last observe used
        self._last_rev = None  # the last Revision read (reused while its commit is the one the source names)

    def close(self) -> None:
        """Shut down what this controller started, in order (see the class docstring)."""
        if self.probes is not None:
            self.probes.close()
            self.probes = None
        for rt in self.runtimes.values():
            rt.drain()
        if self.fleet is not None and self.fleet_lock is not None:
            self.fleet_lock.release(self.fleet)  # as Kamal's deploy lock: held while this controller runs
        if self.fleet is not None:
            self.fleet.close()
        self.store.close()

    def start_probes(self, on_event, wake) -> None:
        """Start the probe manager (once there is a fleet): liveness/readiness probes of running containers."""
        from gitkube.nodes.kubelet.probes import ProbeManager

        if self.probes is None and self.fleet is not None:
            self.probes = ProbeManager(self.fleet, self.runtimes, on_event=on_event, wake=wake)

    def _ensure_fleet(self, nodes: list[NodeConfig]) -> Fleet:
        key = tuple((n.name, n.host, n.port, n.user, n.identity_file, n.host_keys, n.docker_host) for n in nodes)
        if self.fleet is None or key != self._fleet_key:
            if self.fleet is not None:
                for rt in self.runtimes.values():
                    rt.drain()
                self.fleet.close()
            self.fleet = self.fleet_factory(nodes)
            self._fleet_key = key
            self.runtimes = {n: PodRuntime(self.fleet[n]) for n in self.fleet.names()}
            for rt in self.runtimes.values():
                rt.may_act = lambda: self.may_act()
                rt.cluster_id = self.cluster_id
            if self.probes is not None:
                self.probes.fleet, self.probes.runtimes = self.fleet, self.runtimes
        return self.fleet

    # -- observe → plan → apply ------------------------------------------------------------------------
    def observe(self, offline: bool = False, now: float | None = None, probes: dict | None = None
                ) -> tuple[Observation, dict[str, int]]:
        """One snapshot (offline: from the store alone, no node contacted; `probes`: this pass's heartbeats, already
        made). Also each node's Docker list calls."""
        rev, nodes, problems = self._read_revision()
        self._inventory = nodes
        if rev is not None and not rev.problems:
            self.config = rev.config
        elif self.config is None:  # a refused revision: the values of the one last applied
            self.config = config_at_applied(self.store, self.source, self.identities)
        read = observer.read_store(self.store)
        seen, calls = {}, {}
        if nodes is not None:
            if offline:
                seen = observer.observe_offline(nodes, read[0])
            else:
                fleet = self._ensure_fleet(nodes)
                self._probed = probes = probes if probes is not None else fleet.probe(timeout=self.probe_timeout)
                seen, calls = observer.observe_nodes(fleet, self.runtimes, nodes, read[0], probes)
        now = now or time.time()
        if not offline:
            for n in seen:
                self.first_seen.setdefault(n, now)
        readiness = self.probes.readiness() if self.probes is not None else {}
        obs = observer.snapshot(self.store, read, rev=rev, problems=problems, node_seen=seen, readiness=readiness,
                                waiting=self.waiting, offline=offline, now=now, first_seen=self.first_seen,
                                config=self.config, cluster=self.cluster_id)
        return obs, calls

    def _read_revision(self):
        """observer.read_revision, keeping the last Revision read: an unchanged commit is not read again."""
        rev, nodes, problems = observer.read_revision(self.source, self.identities,
                                                      self.store.state_dir if self.store.writer else None,
                                                      reuse=self._last_rev)
        if rev is not None:
            self._last_rev = rev
        return rev, nodes, problems

    def plan(self, obs: Observation) -> PassPlan:
        return plan_pass(obs, grace_period=self.grace_period, eviction_timeout=self.eviction_timeout,
                         scheduler=self.scheduler, template_inputs=self.template_inputs)

    def apply(self, plan: PassPlan, obs: Observation) -> applier.Applied:
        for w in plan.warnings:
            log.warning("%s", w)
        done = applier.apply_plan(self.store, plan, obs, self.fleet, self.runtimes, self.probes, self._sync_dataplane)
        self.waiting = done.waiting
        self.last_plan = plan
        return done

    def reconcile(self, now: float | None = None, expect_fingerprint: str | None = None) -> PassReport:
        """One level-triggered pass: observe, plan, apply. With `expect_fingerprint`, a plan that differs from it
        is not applied (nothing changes) and the report says so."""
        with self.lock:
            t0 = time.monotonic()
            try:
                report = self._pass(now, expect_fingerprint, t0)
            except Exception:
                instruments.pass_done(None, time.monotonic() - t0, raised=True)
                raise
            instruments.pass_done(report, time.monotonic() - t0)
            return report

    def rebuild(self, rev=None, nodes=None):
        """Rebuild the store from the nodes and the revision (gitkube.controller.rebuild); says why and what it
        found. Run by the first pass of a controller whose store was found lost (missing, empty or corrupt)."""
        from gitkube.controller.rebuild import rebuild_state

        if rev is None or nodes is None:
            rev, nodes, _ = self._read_revision()
        lost = getattr(self.store, "lost", None)
        if lost:
            self.progress(f"{lost}; rebuilding the state from the nodes")
        if rev is None or nodes is None:
            return None  # no readable revision or inventory: the pass reports why
        self.rebuilt = rebuild_state(self, rev, nodes)
        if lost or self.rebuilt.adopted or self.rebuilt.unwanted or self.rebuilt.foreign:
            self.progress(f"state rebuilt from the nodes: {self.rebuilt.summary()}")
        return self.rebuilt

    def _hold_fleet(self, obs: Observation) -> Observation:
        """The fleet lock on every node that answered (FleetLocked if another installation holds one). A node whose
        record could not be checked this pass (an SFTP hiccup) is still synced, with a warning, and checked again
        next pass: the cluster-id labels, not the lock, are what keep another installation's containers safe."""
        if self.rebuilt is not None and self.rebuilt.blocked:  # see RebuildReport.blocked
            why = f"state not rebuilt: {self.rebuilt.blocked}"
            return dataclasses.replace(obs, nodes={n: dataclasses.replace(
                s, reachable=False, reason="StateNotRebuilt", message=why, containers=None)
                for n, s in obs.nodes.items()})
        self._lock_nodes([n for n, s in obs.nodes.items() if s.reachable], obs.now)
        return obs

    def _lock_nodes(self, ok: list[str], now: float) -> None:
        if self.fleet_lock is None or self.fleet is None:
            return
        infos = getattr(self.fleet, "last_info", {})
        unverified = self.fleet_lock.ensure(self.fleet, ok, {n: engine_key(infos[n], n) for n in ok if n in infos},
                                            now)
        for n, why in sorted(unverified.items()):
            log.warning("node %s: %s (synced anyway; checked again next pass)", n, why)

    def _quiet_pass(self, now: float | None, t0: float) -> tuple[PassReport | None, dict | None]:
        """A pass with nothing to plan (gitkube.controller.quiet), or (None, the heartbeats it made, if any) when
        something moved and the pass must plan in full."""
        m, self.quiet = self.quiet, None
        wall = now or time.time()
        if wall >= m.due or self.fleet is None or self.store.state_version() != m.state:
            return None, None
        if (self.probes.readiness() if self.probes is not None else {}) != m.readiness or self.waiting != m.waiting:
            return None, None
        rev, nodes, _ = self._read_revision()
        if rev is None or rev.problems or rev.sha != m.sha or tuple(nodes) != m.nodes:
            return None, None
        if any(rt.has_news() for rt in self.runtimes.values()):
            return None, None
        # A node whose containers its event stream vouches for gets no call this pass: it may share the heartbeat
        # of a pass less than a second ago. A node that needs a list gets a heartbeat first.
        names = sorted(m.seen)
        cached = {n: self.runtimes[n].cached() for n in names if n in self.runtimes}
        probes = self.fleet.probe(timeout=self.probe_timeout, share=lambda n: cached.get(n) is not None)
        fresh = probes if not getattr(self.fleet, "last_shared", None) else None  # what a full pass may reuse
        if {n: node_facts(p) for n, p in probes.items()} != m.facts:
            return None, fresh  # a node down, back, or reporting other capacity or identity

        def look(h):
            calls0 = h.docker.calls
            rt = self.runtimes[h.name]
            return (tuple(rt.observe()), rt.system, rt.foreign), h.docker.calls - calls0

        seen = {}
        for n, c in cached.items():  # what each node's event stream vouches for needs no call, nor a thread
            if c is not None:
                seen[n] = ((tuple(c), self.runtimes[n].system, self.runtimes[n].foreign), 0)
        if len(seen) < len(names):
            seen.update(self.fleet.map(look, [n for n in names if n not in seen], timeout=60))
        if any(isinstance(r, Exception) or r[0] != m.seen[n] for n, r in seen.items()):
            return None, fresh
        if q.verifying():
            self._verify_quiet(wall, probes)
        self._lock_nodes(names, wall)
        m.hbs = q.renewed(m.hbs, names, wall)
        self.store.kv_set("heartbeats", m.hbs)
        self.quiet = m
        self.quiet_passes += 1
        return PassReport(sha=m.sha, synced=SyncSummary(), plan=m.plan, node_actions={n: [] for n in names},
                          api_calls={n: r[1] for n, r in seen.items()}, next_due=m.due, quiet=True,
                          seconds=time.monotonic() - t0), None

    def _verify_quiet(self, wall: float, probes: dict) -> None:
        """GITKUBE_VERIFY_QUIET: plan this pass in full too; raise QuietMismatch when it would do anything."""
        obs, _ = self.observe(now=wall, probes=probes)
        changes = q.full_plan_changes(self.plan(obs), obs)
        if changes:
            raise q.QuietMismatch("a pass judged quiet would have done: " + "; ".join(changes[:10]))

    def _pass(self, now: float | None, expect_fingerprint: str | None, t0: float) -> PassReport:
        self.may_act()
        if ((self.rebuilt is None or self.rebuilt.blocked) and self.store.writer and getattr(self.store, "lost", None)
                and self.store.applied_revision() is None):
            self.rebuild()  # a lost state: what runs on the nodes is adopted, not restarted
        probes = None
        if self.quiet is not None and expect_fingerprint is None:
            quiet, probes = self._quiet_pass(now, t0)
            if quiet is not None:
                return quiet
        self.quiet = None
        state = self.store.state_version() if self.store.writer else None
        obs, calls = self.observe(now=now, probes=probes)
        obs = self._hold_fleet(obs)
        plan = self.plan(obs)
        report = PassReport(sha=plan.sha, refused=list(plan.refused), synced=plan.sync, plan=plan,
                            api_calls=calls, next_due=plan.next_due)
        if expect_fingerprint is not None and plan.fingerprint != expect_fingerprint:
            report.refused_fingerprint = plan.fingerprint
            report.seconds = time.monotonic() - t0
            return report
        if any(w.op == "refused" and w.args[0] != "inventory" for w in plan.writes):
            instruments.revision_refused()
        done = self.apply(plan, obs)
        if state is not None and self.store.state_version() == state:
            self.quiet = q.quiet_mark(plan, obs, done, state, tuple(self._inventory or ()), self.runtimes, obs.now,
                                      self._probed)
        report.node_actions = {n: list(a) for n, a in done.executed.items()}
        report.node_errors = {**plan.node_errors, **done.node_errors}
        report.seconds = time.monotonic() - t0
        return report

    def _sync_dataplane(self, dp, names: list[str]) -> dict:
        """The Services data plane (addresses, proxy, DNS) on every node synced this pass; failures are reported
        per node (a log line naming it) and retried by the next pass."""
        from gitkube.nodes.dataplane.proxy import sync_services

        def one(h):
            self.may_act()
            return sync_services(h, list(dp.cluster_ips), dp.haproxy_cfg, dp.dns_hosts, dp.dns_ip,
                                 self.proxy_mode, dp.iptables_rules, self.cluster_id)

        out = {}
        for name, res in (self.fleet.map(one, names, timeout=300) if names else {}).items():
            instruments.proxy_synced(name, res)
            if isinstance(res, Exception):
                log.warning("node %s: services data plane: %s (retried next pass)", name, res)
                out[name] = res
            elif res:
                log.info("node %s: services data plane changed: %s", name, ", ".join(sorted(res)))
                out[name] = res
        return out
