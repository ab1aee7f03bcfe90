"""Apply: execute a `PassPlan`. First its store writes (revision, Nodes, evictions, pods created/deleted/bound),
then each node's actions (exactly the plan's: `Applied.executed` is what ran), then the statuses the nodes now show
(stage 2), then the Endpoints those statuses give, computed once (stage 3), and the Services data plane synced
once with them; last, the deletions that are finished."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from gitkube.api import parse_object
from gitkube.api.views import PodView
from gitkube.nodes.kubelet.runtime import ClusterContext, Execution, PodRuntime
from gitkube.nodes.transport.fleet import Fleet
from gitkube.reconcile import podsync as ps
from gitkube.reconcile.endpoints import serves_deleted_pods
from gitkube.reconcile.plan import Key, Observation, PassPlan, Write, finished_deletions, plan_endpoints
from gitkube.reconcile.services import plan_dataplane
from gitkube.store import Store
from gitkube.store.db import NotFound

log = logging.getLogger(__name__)


@dataclass
class Applied:
    """What executing a plan did."""

    executed: dict[str, tuple[ps.Action, ...]] = field(default_factory=dict)
    node_errors: dict[str, str] = field(default_factory=dict)
    waiting: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    removed_uids: set[str] = field(default_factory=set)
    statuses_written: int = 0
    dataplane_changed: dict[str, Any] = field(default_factory=dict)
    store_writes: int = 0  # writes but the heartbeat records (0: the pass changed nothing in the store)


def write(store: Store, w: Write) -> None:
    """One store write of a plan."""
    kw = dict(w.kw)
    if w.op == "sync_revision":
        store.sync_revision(*w.args)
    elif w.op == "refused":
        store.record_refused(*w.args)
    elif w.op == "kv":
        store.kv_set(*w.args)
    elif w.op == "put":
        store.put(*w.args, **kw)
    elif w.op == "set_fields":
        store.set_fields(*w.args, **kw)
    elif w.op == "status":
        try:
            store.update_status(*w.args)
        except NotFound:
            log.debug("status of %s not written: it is gone", "/".join(w.args[:3]))
    elif w.op == "mark_deleted":
        store.mark_deleted(*w.args)
    elif w.op == "delete":
        store.delete(*w.args)
    elif w.op == "event":
        store.record_event(*w.args, **kw)
    else:
        raise ValueError(f"unknown store write {w.op!r}")


def write_all(store: Store, writes) -> int:
    """Every write in order; returns how many were more than the heartbeat records."""
    n = 0
    for w in writes:
        write(store, w)
        n += not w.heartbeats
    return n


@dataclass
class NodeOutcome:
    """One node's part of a pass after its actions: what it shows now and what carrying them out reported."""

    execution: Execution
    observed: list[ps.ObservedContainer]


def run_node(rt: PodRuntime, plan: PassPlan, obs: Observation) -> NodeOutcome:
    """Execute the plan's actions on one node and look again (only when something was done)."""
    name = rt.node
    np = plan.node_plans[name]
    before = list(obs.nodes[name].containers or ())
    if not np.actions:
        rt.refresh_config_volumes(list(plan.works.get(name, ())), before, plan.config)
        return NodeOutcome(rt.take_events(), before)
    works = {w.uid: w for w in plan.works.get(name, ())}
    ctx = ClusterContext(dns_server=plan.dns_server, services={k: list(v) for k, v in plan.env.items()},
                         config=plan.config, revision=plan.sha or "")  # the revision is labelled on what it makes
    x = rt.execute(np.actions, works, ctx, before, dict(obs.waiting))
    after = rt.observe()
    rt.refresh_config_volumes(list(works.values()), after, plan.config)
    return NodeOutcome(x, after)


def _waiting_after(obs: Observation, plan: PassPlan, node: str, x: Execution) -> dict:
    """Containers held back after this pass: the last pass's (of pods still here) unless released, the planner's
    back-offs, then what execution reported."""
    live = {w.uid for w in plan.works.get(node, ())}
    out = {k: v for k, v in obs.waiting.items() if k[0] in live and k not in x.released}
    out.update(dict(plan.node_plans[node].waiting))
    out.update(x.waiting)
    return out


def _pulls_after(plan: PassPlan, node: str, x: Execution, now: float) -> dict:
    live = {w.uid for w in plan.works.get(node, ())}
    pulls = {k: tuple(v) for k, v in (plan.pulls.get(node) or {}).items() if k.split("/", 1)[0] in live}
    for uid, c in x.pulled:
        pulls.pop(f"{uid}/{c}", None)
    for uid, c, msg in x.pull_failed:
        pulls = ps.pull_failed(pulls, uid, c, now, msg)
    return pulls


def node_writes(plan: PassPlan, node: str, host_ip: str, out: NodeOutcome, waiting: dict,
                readiness: dict, now: float, world: dict[Key, dict]) -> list[Write]:
    """Stage 2 for one node: each pod's status (where it changed) and the events of the pass."""
    writes: list[Write] = []
    works = list(plan.works.get(node, ()))
    statuses, backoffs = ps.node_statuses(works, out.observed, now, host_ip, readiness, waiting)
    by_uid = {w.uid: w for w in works}
    for w in works:
        st = statuses.get(w.uid)
        if st is not None and st != w.last_status:
            key = ("Pod", w.pod.metadata.namespace or "default", w.pod.metadata.name)
            writes.append(Write("status", (*key, st)))
            if key in world:
                world[key] = {**world[key], "status": st}
    for ev in [*plan.node_plans[node].events, *out.execution.events, *backoffs]:
        w = by_uid.get(ev.pod_uid) if ev.pod_uid else None
        if w is not None:
            involved = {"kind": "Pod", "namespace": w.pod.metadata.namespace or "default", "name": w.pod.metadata.name,
                        "uid": w.uid}
        else:
            involved = {"kind": "Node", "namespace": "", "name": node}
        writes.append(Write("event", (involved, ev.reason, ev.message, ev.type), (("host", node),)))
    return writes


def apply_plan(store: Store, plan: PassPlan, obs: Observation, fleet: Fleet | None, runtimes: dict[str, PodRuntime],
               probes=None, sync_dataplane: Callable | None = None) -> Applied:
    """Execute a plan: store writes, node actions, statuses, endpoints and the data plane, finished deletions."""
    done = Applied()
    done.store_writes += write_all(store, plan.writes)
    names = [n for n in plan.sync_nodes if n in runtimes]
    done.store_writes += _drain_deleted(store, plan, sync_dataplane, names)
    results = fleet.map(lambda h: run_node(runtimes[h.name], plan, obs), names, timeout=600) if names else {}
    world = dict(plan.world)
    stage2: list[Write] = []
    pulls = {n: p for n, p in (plan.pulls or {}).items() if n not in results}
    for name, res in sorted(results.items()):
        if isinstance(res, Exception):
            log.warning("node %s: pod sync failed: %s", name, res)
            done.node_errors[name] = f"pod sync failed: {res}"
            continue
        done.executed[name] = plan.node_plans[name].actions
        waiting = _waiting_after(obs, plan, name, res.execution)
        done.waiting.update(waiting)
        if p := _pulls_after(plan, name, res.execution, plan.now):
            pulls[name] = p
        stage2 += node_writes(plan, name, obs.nodes[name].host_ip, res, waiting, dict(obs.readiness), plan.now, world)
        seen = {o.pod_uid for o in res.observed}
        done.removed_uids |= {w.uid for w in plan.works.get(name, ()) if w.deleting and w.uid not in seen}
        if probes is not None:
            probes.update(name, list(plan.works.get(name, ())), res.observed)
    as_stored = {n: {k: list(v) for k, v in p.items()} for n, p in pulls.items() if p}
    if as_stored != {n: {k: list(v) for k, v in p.items()} for n, p in (plan.pulls or {}).items() if p}:
        stage2.append(Write("kv", ("image_pulls", as_stored)))
    done.store_writes += write_all(store, stage2)
    stage3: list[Write] = []
    eps = plan_endpoints(world, stage3, plan.now)
    done.store_writes += write_all(store, stage3)
    if plan.dataplane is not None and sync_dataplane is not None:
        dp = _render(plan, world, eps)
        done.dataplane_changed = sync_dataplane(dp, [n for n in names if n not in done.node_errors])
    inventory = set(obs.nodes)
    done.store_writes += write_all(store, [Write("delete", k) for k in finished_deletions(world, inventory,
                                                                                         done.removed_uids)])
    return done


def _drain_deleted(store: Store, plan: PassPlan, sync_dataplane: Callable | None, names: list[str]) -> int:
    """Traffic leaves a pod before its node stops it (issue 11): when this pass deletes pods the stored Endpoints
    still route to, their Endpoints and every node's proxy drop them now, before the node syncs run."""
    if plan.dataplane is None or sync_dataplane is None:
        return 0
    world = plan.world
    deleting = {PodView(o).uid for k, o in world.items() if k[0] == "Pod" and PodView(o).deleting}
    if not deleting or not serves_deleted_pods([o for k, o in world.items() if k[0] == "Endpoints"], deleting):
        return 0
    writes: list[Write] = []
    eps = plan_endpoints(world, writes)
    n = write_all(store, [w for w in writes if w.op == "put"])  # stage 3 writes the rest (and these again, unchanged)
    sync_dataplane(_render(plan, world, eps), names)
    return n + 1  # the data plane moved


def _render(plan: PassPlan, world: dict[Key, dict], eps: dict):
    """The data plane (proxy config, DNS hosts) for this pass's endpoints, on the allocation stage 1 made."""
    models = []
    for key, o in sorted(world.items()):
        if key[0] == "Service" and not PodView(o).deleting:
            try:
                models.append(parse_object({k: v for k, v in o.items() if k != "status"}))
            except Exception as e:  # noqa: BLE001 - reported by the planner's warnings too
                log.warning("service %s/%s skipped: %s", key[1], key[2], e)
    return plan_dataplane(models, eps, plan.dataplane.allocation)


@dataclass
class NodeSync:
    """One node's pod sync on its own (observe → plan → execute → statuses), for tools and tests driving a node."""

    statuses: dict[str, dict]
    events: list[ps.PodEvent]
    observed: list[ps.ObservedContainer]
    actions: tuple[ps.Action, ...]
    waiting: dict[tuple[str, str], tuple[str, str]]


def sync_node(rt: PodRuntime, works: list[ps.PodWork], ctx: ClusterContext, ready: dict | None = None,
              waiting: dict | None = None, now: float | None = None) -> NodeSync:
    """The same stages a pass runs for one node, without a store: what the node shows, the plan, its execution,
    and the statuses after it."""
    import time

    now = now or time.time()
    observed = rt.observe(ps.status_hints(works))
    np = ps.plan_node_pass(works, observed, now, {})
    x = rt.execute(np.actions, {w.uid: w for w in works}, ctx, observed, waiting) if np.actions else rt.take_events()
    if np.actions:
        observed = rt.observe()
    live = {w.uid for w in works}
    held = {k: v for k, v in (waiting or {}).items() if k[0] in live and k not in x.released}
    held.update(dict(np.waiting))
    held.update(x.waiting)
    statuses, backoffs = ps.node_statuses(works, observed, time.time(), rt.host_ip, ready, held)
    return NodeSync(statuses, [*x.events, *backoffs], observed, np.actions, held)
