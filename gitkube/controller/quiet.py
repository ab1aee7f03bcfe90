"""The quiet pass. A pass plans from the revision, the store, each node's containers, the probe results and the
clock. When a full pass changed nothing (no store write but the heartbeat records, no node action, no node error)
and none of those inputs has moved since (the same revision, the store's state version, every node answering with
the same containers, the same readiness and held-back containers), the next pass would plan the same nothing: it
only renews the heartbeats. Time is the one input that moves by itself, so a quiet pass runs only before the plan's
`next_due` (node lifecycle, back-offs, minReadySeconds, progress deadlines, the Node status heartbeat) and at most
FULL_PASS_EVERY seconds after the last full pass, as an informer's resync bounds what a missed change can cost.

GITKUBE_VERIFY_QUIET=1 makes every quiet pass also plan in full and raise QuietMismatch when that plan would have
done anything: the integration tests run with it, so each quiet pass they make is checked against the full one."""
from __future__ import annotations

import os
from dataclasses import dataclass

from gitkube.controller.apply import Applied, NodeOutcome, _pulls_after, _waiting_after, node_writes
from gitkube.nodes.kubelet.runtime import Execution
from gitkube.nodes.transport.fleet import node_facts
from gitkube.reconcile.plan import Observation, PassPlan, Write, answered, plan_endpoints

FULL_PASS_EVERY = 30.0  # seconds: a full pass at least this often, whatever the inputs say


class QuietMismatch(RuntimeError):
    """GITKUBE_VERIFY_QUIET: a pass judged quiet would have done something."""


def verifying() -> bool:
    return os.environ.get("GITKUBE_VERIFY_QUIET", "") not in ("", "0")


@dataclass
class QuietMark:
    """What a full pass that changed nothing planned from, for the passes after it to compare with."""

    sha: str
    nodes: tuple  # the inventory's NodeConfigs
    state: int  # store.state_version() after the pass
    seen: dict  # node -> (containers, system containers, foreign count)
    readiness: dict
    waiting: dict
    hbs: dict  # the heartbeat records as last written
    facts: dict  # node -> what its heartbeat showed of it (fleet.node_facts)
    due: float  # wall time by which a full pass must run
    plan: PassPlan


def quiet_mark(plan: PassPlan, obs: Observation, done: Applied, state: int, nodes: tuple, runtimes: dict,
               started: float, probes: dict | None) -> QuietMark | None:
    """The mark of a full pass that changed nothing, None when it changed something (or could not tell)."""
    if probes is None or set(probes) != set(obs.nodes):
        return None
    if plan.refused or obs.offline or obs.desired is None or plan.evictions or plan.node_errors or done.node_errors:
        return None
    hbs = next((w.args[1] for w in plan.writes if w.heartbeats), None)
    if hbs is None or done.store_writes or done.dataplane_changed or dict(done.waiting) != dict(obs.waiting):
        return None
    if set(plan.node_plans) != set(obs.nodes) or any(p.actions for p in plan.node_plans.values()):
        return None
    seen = {}
    for name, s in obs.nodes.items():
        rt = runtimes.get(name)
        if not s.reachable or s.containers is None or rt is None or rt.has_news():
            return None
        seen[name] = (tuple(s.containers), rt.system, rt.foreign)
    due = started + FULL_PASS_EVERY
    if plan.next_due is not None:
        due = min(due, plan.next_due)
    return QuietMark(sha=obs.sha, nodes=nodes, state=state, seen=seen, readiness=dict(obs.readiness),
                     waiting=dict(obs.waiting), hbs=hbs, due=due, plan=plan,
                     facts={n: node_facts(p) for n, p in probes.items()})


def renewed(hbs: dict, names, now: float) -> dict:
    """The heartbeat records after a quiet pass in which every node in `names` answered at `now`."""
    out = {k: dict(v) for k, v in hbs.items()}
    for n in names:
        h = out[n]
        answered(h, now)
        if h.get("condition"):
            h["condition"] = {**h["condition"], "last_heartbeat_time": now}
    return out


def full_plan_changes(plan: PassPlan, obs: Observation) -> list[str]:
    """What the full plan of a pass judged quiet would do (its stages 1-3; stage 2 with the nodes as they are):
    empty when it would do nothing."""
    out = [f"node {n}: {len(p.actions)} action(s)" for n, p in plan.node_plans.items() if p.actions]
    out += [f"write {w.op} {str(w.args)[:120]}" for w in plan.writes if not w.heartbeats]
    out += [f"evict {e}" for e in plan.evictions] + [f"node {n}: {e}" for n, e in plan.node_errors.items()]
    world = dict(plan.world)
    stage2: list[Write] = []
    waiting: dict = {}
    for name, s in obs.nodes.items():
        if name in plan.node_plans:
            held = _waiting_after(obs, plan, name, Execution())
            waiting.update(held)
            stage2 += node_writes(plan, name, s.host_ip, NodeOutcome(Execution(), list(s.containers or ())),
                                  held, dict(obs.readiness), plan.now, world)
            pulls = _pulls_after(plan, name, Execution(), plan.now)
            if {k: list(v) for k, v in pulls.items()} != {k: list(v) for k, v in (plan.pulls.get(name) or {}).items()}:
                out.append(f"node {name}: image pull records change")
    if waiting != dict(obs.waiting):
        out.append(f"held-back containers change: {sorted(set(waiting) ^ set(obs.waiting))[:5]}")
    stage3: list[Write] = []
    plan_endpoints(world, stage3, plan.now)
    out += [f"write {w.op} {str(w.args)[:120]}" for w in stage2 + stage3]
    return out
