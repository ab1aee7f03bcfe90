"""Deployments and ReplicaSets over stored objects (Kubernetes JSON), pure: the planner's views of them, the
ReplicaSet objects a Deployment creates or resizes, and the Deployment status it writes.

`plan_apps` runs the Deployment controller (gitkube.reconcile.deployment) for every Deployment; the
ReplicaSets it leaves (created, resized, untouched) then go through the replication manager like RCs do
(gitkube.reconcile.cluster), so a Deployment's pods come and go in the same pass as its decision.

Extra inputs of the pod-template hash: `template_inputs(deployment) -> list` (e.g. the data of the ConfigMaps
its template references); whatever it returns is hashed with the template, so a change rolls the pods.
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from gitkube.api.labels import Requirement, Selector
from gitkube.reconcile import deployment as dep
from gitkube.api.views import ObjectView, PodView, iso, parse_time

TemplateInputs = Callable[[dict], Sequence]

_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def _meta(o: Mapping) -> dict:
    return o.get("metadata") or {}


def _ns(o: Mapping) -> str:
    return _meta(o).get("namespace") or "default"


def label_selector(sel: Mapping | None) -> Selector | None:
    """The Selector of an apps/v1 selector JSON (matchLabels and matchExpressions); None selects nothing."""
    if sel is None:
        return None
    reqs = [Requirement(k, "=", (v,)) for k, v in sorted((sel.get("matchLabels") or {}).items())]
    reqs += [Requirement(r["key"], _OPS[r["operator"]], tuple(r.get("values") or ()))
             for r in sel.get("matchExpressions") or []]
    return Selector(tuple(reqs))


def pod_counts(pods: Sequence[Mapping], min_ready_seconds: int, now: float) -> tuple[int, int, int, int]:
    """(active, ready, available, running) of a ReplicaSet's pods: active = not terminating nor finished,
    available = Ready for minReadySeconds, running = still on a node (terminating included)."""
    active = ready = available = running = 0
    for v in map(PodView, pods):
        if v.terminal:
            continue
        running += 1
        if v.deleting:
            continue
        active += 1
        if v.ready:
            since = v.ready_since or 0.0
            ready += 1
            if min_ready_seconds <= 0 or since + min_ready_seconds < now:
                available += 1
    return active, ready, available, running


def template_hash(d: Mapping, template_inputs: TemplateInputs | None = None) -> str:
    spec = d.get("spec") or {}
    extra = list(template_inputs(dict(d))) if template_inputs else []
    return dep.pod_template_hash(spec.get("template") or {}, extra, ObjectView(d).status.get("collisionCount") or 0)


def _conditions(d: Mapping) -> tuple[dep.Condition, ...]:
    out = []
    for c in ObjectView(d).conditions:
        out.append(dep.Condition(c.get("type", ""), c.get("status", "Unknown"), c.get("reason", ""), c.get("message", ""),
                                 parse_time(c.get("lastUpdateTime")) or 0.0, parse_time(c.get("lastTransitionTime")) or 0.0))
    return tuple(out)


def deployment_view(d: Mapping, git_commit: str | None, template_inputs: TemplateInputs | None = None) -> dep.DeploymentView:
    """The planner's view of a stored Deployment."""
    spec = d.get("spec") or {}
    st = spec.get("strategy") or {}
    ru = st.get("rollingUpdate") or {}
    ann = _meta(d).get("annotations") or {}
    last = {k: v for k, v in ObjectView(d).status.items() if isinstance(v, int)}
    return dep.DeploymentView(
        name=_meta(d)["name"], generation=_meta(d).get("generation", 1), replicas=spec.get("replicas", 1),
        template_hash=template_hash(d, template_inputs), strategy=st.get("type", "RollingUpdate"),
        max_surge=ru.get("maxSurge", "25%"), max_unavailable=ru.get("maxUnavailable", "25%"),
        min_ready_seconds=spec.get("minReadySeconds", 0), revision_history_limit=spec.get("revisionHistoryLimit", 10),
        paused=bool(spec.get("paused")), progress_deadline_seconds=spec.get("progressDeadlineSeconds", 600),
        rollback_on_failure=ann.get(dep.ROLLBACK_ON_FAILURE) == "true", git_commit=git_commit,
        change_cause=ann.get(dep.CHANGE_CAUSE), conditions=_conditions(d), last_status=last)


def rs_view(rs: Mapping, pods: Sequence[Mapping], min_ready_seconds: int, now: float) -> dep.RSView:
    """The planner's view of a stored ReplicaSet and its pods."""
    m = _meta(rs)
    active, ready, available, running = pod_counts(pods, min_ready_seconds, now)
    ann = m.get("annotations") or {}
    try:
        revision = int(ann.get(dep.REVISION, "0"))
    except ValueError:
        revision = 0
    return dep.RSView(name=m["name"], template_hash=(m.get("labels") or {}).get(dep.TEMPLATE_HASH_LABEL, ""),
                      replicas=(rs.get("spec") or {}).get("replicas", 1), revision=revision,
                      creation_time=parse_time(m.get("creationTimestamp")) or 0.0, pods=active, ready=ready,
                      available=available, running=running, annotations=ann)


def new_replicaset(d: Mapping, change: dep.RSChange, rng: random.Random) -> dict:
    """The ReplicaSet object a Deployment creates for its template: NAME-<hash>, owned, pods labelled with the hash."""
    spec = d.get("spec") or {}
    tmpl = spec.get("template") or {}
    tmeta = dict(tmpl.get("metadata") or {})
    labels = {**(tmeta.get("labels") or {}), dep.TEMPLATE_HASH_LABEL: change.template_hash}
    tmeta["labels"] = labels
    sel = dict(spec.get("selector") or {})
    sel["matchLabels"] = {**(sel.get("matchLabels") or {}), dep.TEMPLATE_HASH_LABEL: change.template_hash}
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": change.name, "namespace": _ns(d), "labels": labels, "annotations": dict(change.annotations),
                     "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": _meta(d)["name"],
                                          "uid": _meta(d)["uid"], "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"replicas": change.replicas, "minReadySeconds": spec.get("minReadySeconds", 0), "selector": sel,
                 "template": {**tmpl, "metadata": tmeta}},
    }


def condition_json(c: dep.Condition) -> dict:
    return {"type": c.type, "status": c.status, "lastUpdateTime": iso(c.last_update),
            "lastTransitionTime": iso(c.last_transition), "reason": c.reason, "message": c.message}


@dataclass
class AppsPlan:
    """What the Deployment controller decided in one pass."""

    rs_create: list[dict] = field(default_factory=list)  # complete ReplicaSet objects, uid assigned
    rs_update: list[dict] = field(default_factory=list)  # stored ReplicaSets with new spec.replicas / annotations
    rs_delete: list[tuple[str, str, str]] = field(default_factory=list)  # (namespace, name, why)
    deployment_status: dict[tuple[str, str], dict] = field(default_factory=dict)
    deployment_revision: dict[tuple[str, str], str] = field(default_factory=dict)
    events: list[tuple[dict, str, str, str]] = field(default_factory=list)  # (involved, type, reason, message)
    decisions: dict[tuple[str, str], dep.DeploymentDecision] = field(default_factory=dict)
    replicasets: list[dict] = field(default_factory=list)  # every live ReplicaSet as it is after this pass

    @property
    def empty(self) -> bool:
        return not (self.rs_create or self.rs_update or self.rs_delete)


def plan_apps(deployments: Sequence[dict], replicasets: Sequence[dict], pods: Sequence[dict], now: float,
              rng: random.Random, git_commit: str | None = None,
              template_inputs: TemplateInputs | None = None) -> AppsPlan:
    """One pass of the Deployment controller over stored objects (and garbage collection of orphaned ReplicaSets)."""
    plan = AppsPlan()
    by_uid = {_meta(d).get("uid"): d for d in deployments}
    pods_by_owner: dict[str, list[dict]] = {}
    for p in pods:
        o = PodView(p).owner_uid
        if o:
            pods_by_owner.setdefault(o, []).append(p)
    owned: dict[str, list[dict]] = {}
    live_rs: dict[tuple[str, str], dict] = {}
    for rs in replicasets:
        if _meta(rs).get("deletionTimestamp"):
            continue
        owner = PodView(rs).owner_uid
        d = by_uid.get(owner) if owner else None
        if owner and (d is None or _meta(d).get("deletionTimestamp")):
            plan.rs_delete.append((_ns(rs), _meta(rs)["name"], "owner deleted"))
            continue
        live_rs[(_ns(rs), _meta(rs)["name"])] = rs
        if d is not None:
            owned.setdefault(owner, []).append(rs)
    for d in deployments:
        if _meta(d).get("deletionTimestamp"):
            continue
        _plan_one(plan, d, owned.get(_meta(d)["uid"], []), pods_by_owner, now, rng, git_commit, template_inputs, live_rs)
    plan.replicasets = list(live_rs.values())
    return plan


def _plan_one(plan: AppsPlan, d: dict, rss: list[dict], pods_by_owner: dict, now: float, rng: random.Random,
              git_commit: str | None, template_inputs: TemplateInputs | None, live_rs: dict) -> None:
    ns, name = _ns(d), _meta(d)["name"]
    view = deployment_view(d, git_commit, template_inputs)
    mrs = view.min_ready_seconds
    views = [rs_view(r, pods_by_owner.get(_meta(r).get("uid"), []), mrs, now) for r in rss]
    decision = dep.plan_deployment(view, views, now)
    plan.decisions[(ns, name)] = decision
    stored = {_meta(r)["name"]: r for r in rss}
    for c in decision.changes:
        if c.create:
            obj = new_replicaset(d, c, rng)
            plan.rs_create.append(obj)
            live_rs[(ns, c.name)] = obj
        else:
            old = stored[c.name]
            obj = {**old, "metadata": {**_meta(old), "annotations": dict(c.annotations)},
                   "spec": {**(old.get("spec") or {}), "replicas": c.replicas}}
            plan.rs_update.append(obj)
            live_rs[(ns, c.name)] = obj
    for n in decision.prune:
        plan.rs_delete.append((ns, n, f"revisionHistoryLimit {view.revision_history_limit}"))
        live_rs.pop((ns, n), None)
    status = dict(decision.status)
    status["conditions"] = [condition_json(c) for c in sorted(decision.conditions, key=lambda c: c.type)]
    if ObjectView(d).status.get("collisionCount") is not None:
        status["collisionCount"] = d["status"]["collisionCount"]
    plan.deployment_status[(ns, name)] = status
    plan.deployment_revision[(ns, name)] = str(decision.revision)
    involved = {"kind": "Deployment", "namespace": ns, "name": name, "uid": _meta(d).get("uid")}
    for type_, reason, message in decision.events:
        plan.events.append((involved, type_, reason, message))
