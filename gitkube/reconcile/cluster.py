"""The control plane's decisions for one pass, pure: from the stored objects (pods, RCs, services, nodes) to
which pods to create, delete, adopt, release and bind where, RC statuses and Endpoints. `diff` prints this
plan; `apply` and `serve` carry out the very same plan."""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from gitkube.api import cpu_millis, memory_bytes
from gitkube.reconcile import endpoints as ep
from gitkube.reconcile.apps import AppsPlan, TemplateInputs, label_selector, plan_apps
from gitkube.api.views import NodeView, PodView, ServiceView
from gitkube.reconcile.rc import RCInfo, manage_replication_controller
from gitkube.reconcile.scheduler import Scheduler
from gitkube.reconcile.scheduler.types import NodeInfo, SchedulingRequest


# Where things live in a stored object is gitkube.api.views' to say; these short names read the views.
def meta(o: dict) -> dict:
    return o.get("metadata") or {}


def ns_of(o: dict) -> str:
    return PodView(o).namespace


def key_of(o: dict) -> tuple[str, str]:
    return PodView(o).key


def is_deleting(o: dict) -> bool:
    return PodView(o).deleting


# -- conversions to the controllers' inputs -------------------------------------------------------------
def node_info(n: dict) -> NodeInfo:
    """The scheduler's view of a Node object."""
    v = NodeView(n)
    alloc = v.allocatable
    return NodeInfo(
        name=v.name, labels=dict(v.labels),
        cpu_millis=cpu_millis(alloc.get("cpu", "0")), memory_bytes=memory_bytes(alloc.get("memory", "0")),
        pods=int(alloc.get("pods", 110)), ready=v.ready, unschedulable=v.unschedulable,
    )


def rc_info(rc: dict) -> RCInfo:
    spec = rc.get("spec") or {}
    return RCInfo(uid=meta(rc)["uid"], namespace=ns_of(rc), name=meta(rc)["name"], generation=meta(rc).get("generation", 1),
                  replicas=spec.get("replicas", 1), selector=_rc_selector(rc),
                  template_labels=meta(spec.get("template") or {}).get("labels") or {},
                  min_ready_seconds=spec.get("minReadySeconds") or 0)


def rc_status_dict(s) -> dict:
    return {"replicas": s.replicas, "fullyLabeledReplicas": s.fully_labeled_replicas, "readyReplicas": s.ready_replicas,
            "availableReplicas": s.available_replicas, "observedGeneration": s.observed_generation}


def rc_statuses(pods: list[dict], rcs: list[dict], now: float) -> dict[tuple[str, str, str], dict]:
    """Each live RC's (and ReplicaSet's) status from the pods as they are now (after a pass's pod sync: readiness
    seen in the pass), by (kind, namespace, name)."""
    out = {}
    for rc in rcs:
        if is_deleting(rc):
            continue
        info = rc_info(rc)
        d = manage_replication_controller(info, [v for v in map(PodView, pods) if v.namespace == info.namespace],
                                          now, rng=random.Random(0))
        out[(rc.get("kind", "ReplicationController"), info.namespace, info.name)] = rc_status_dict(d.status)
    return out


def _selects(selector, labels: dict) -> bool:
    if hasattr(selector, "matches"):
        return not selector.empty() and selector.matches(labels)
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# -- the plan -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PodCreate:
    pod: dict  # complete object, uid assigned
    reason: str


@dataclass(frozen=True)
class PodDelete:
    namespace: str
    name: str
    uid: str
    reason: str


@dataclass(frozen=True)
class OwnerChange:
    namespace: str
    name: str
    owner: dict | None  # the controller ownerReference to set, None to release


@dataclass(frozen=True)
class Binding:
    namespace: str
    name: str
    uid: str
    node: str
    why: str


@dataclass(frozen=True)
class Unschedulable:
    namespace: str
    name: str
    uid: str
    message: str


@dataclass
class ClusterPlan:
    """Everything the control plane decided in one pass; plain data, printed by diff, executed by apply."""

    create: list[PodCreate] = field(default_factory=list)
    delete: list[PodDelete] = field(default_factory=list)
    owners: list[OwnerChange] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)
    unschedulable: list[Unschedulable] = field(default_factory=list)
    rc_status: dict[tuple[str, str], dict] = field(default_factory=dict)
    rs_status: dict[tuple[str, str], dict] = field(default_factory=dict)
    apps: AppsPlan = field(default_factory=AppsPlan)  # Deployments: ReplicaSets created, resized, pruned; statuses

    @property
    def empty(self) -> bool:
        return not (self.create or self.delete or self.owners or self.bindings) and self.apps.empty


def _pod_from_template(rc: dict, name: str, rng: random.Random) -> dict:
    tmpl = rc["spec"]["template"]
    m = dict(tmpl.get("metadata") or {})
    m.pop("name", None)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {**m, "name": name, "namespace": ns_of(rc), "generateName": f"{meta(rc)['name']}-",
                     "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                     "ownerReferences": [_owner_ref(rc)]},
        "spec": dict(tmpl["spec"]),
    }


def _owner_ref(rc: dict) -> dict:
    return {"apiVersion": rc.get("apiVersion", "v1"), "kind": rc.get("kind", "ReplicationController"),
            "name": meta(rc)["name"], "uid": meta(rc)["uid"], "controller": True, "blockOwnerDeletion": True}


def _rc_selector(rc: dict):
    """An RC's equality selector (a dict), or a ReplicaSet's set-based one (a Selector)."""
    sel = (rc.get("spec") or {}).get("selector")
    return label_selector(sel) if rc.get("kind") == "ReplicaSet" else (sel or {})


def _manage_replicas(plan: ClusterPlan, rcs: list[dict], pods_by_ns: dict[str, list[dict]], now: float,
                     rng: random.Random) -> list[dict]:
    """The RC/ReplicaSet manager's decisions into the plan; returns the pods it creates (scheduled this pass)."""
    new_pods: list[dict] = []
    for rc in rcs:
        if is_deleting(rc):
            continue
        info = rc_info(rc)
        candidates = [PodView(p) for p in pods_by_ns.get(ns_of(rc), [])]
        d = manage_replication_controller(info, candidates, now, rng=rng)
        kind = rc.get("kind", "ReplicationController")
        for name in d.create:
            pod = _pod_from_template(rc, name, rng)
            new_pods.append(pod)
            plan.create.append(PodCreate(pod, f"{kind} {ns_of(rc)}/{meta(rc)['name']} wants {info.replicas}"))
        for p in d.delete:
            plan.delete.append(PodDelete(info.namespace, p.name, p.uid, f"{kind} {info.name} scaled to {info.replicas}"))
        for p in d.adopt:
            plan.owners.append(OwnerChange(info.namespace, p.name, _owner_ref(rc)))
        for p in d.release:
            plan.owners.append(OwnerChange(info.namespace, p.name, None))
        (plan.rs_status if kind == "ReplicaSet" else plan.rc_status)[(info.namespace, info.name)] = rc_status_dict(d.status)
    return new_pods


def plan_cluster(pods: list[dict], rcs: list[dict], services: list[dict], nodes: list[dict], now: float,
                 scheduler: Scheduler | None = None, rng: random.Random | None = None, *,
                 deployments: list[dict] = (), replicasets: list[dict] = (), git_commit: str | None = None,
                 template_inputs: TemplateInputs | None = None) -> ClusterPlan:
    """One pass of the Deployment controller, RC/ReplicaSet manager, garbage collection, scheduler and endpoints
    controller over stored objects."""
    rng = rng or random.Random()
    scheduler = scheduler or Scheduler()
    plan = ClusterPlan()
    # Deployments first: the ReplicaSets they leave are managed below like RCs, in this same pass.
    plan.apps = plan_apps(list(deployments), list(replicasets), pods, now, rng, git_commit, template_inputs)
    rcs = list(rcs) + plan.apps.replicasets
    pods_by_ns: dict[str, list[dict]] = {}
    for p in pods:
        pods_by_ns.setdefault(ns_of(p), []).append(p)
    rc_by_uid = {meta(r).get("uid"): r for r in rcs}

    # Pods whose controller is gone are deleted with it (cascading deletion, as the garbage collector does).
    for p in pods:
        owner = PodView(p).owner_uid
        if owner and not is_deleting(p):
            rc = rc_by_uid.get(owner)
            if rc is None or is_deleting(rc):
                plan.delete.append(PodDelete(ns_of(p), meta(p)["name"], meta(p).get("uid", ""), "owner deleted"))

    # ReplicationController (and ReplicaSet) manager.
    new_pods = _manage_replicas(plan, rcs, pods_by_ns, now, rng)

    # Scheduler: pending pods without a node, RC pods created this pass included.
    deleting_uids = {d.uid for d in plan.delete}
    live = [p for p in pods if not is_deleting(p) and meta(p).get("uid") not in deleting_uids] + new_pods
    spread: dict[str, frozenset[str]] = {}
    for p in live:
        labels = meta(p).get("labels") or {}
        keys = {f"rc:{ns_of(r)}/{meta(r)['name']}" for r in rcs if ns_of(r) == ns_of(p) and _selects(_rc_selector(r), labels)}
        keys |= {f"svc:{ns_of(s)}/{meta(s)['name']}" for s in services if ns_of(s) == ns_of(p) and _selects((s.get("spec") or {}).get("selector"), labels)}
        spread[meta(p)["uid"]] = frozenset(keys)
    node_infos = [node_info(n) for n in nodes]
    node_names = {n.name for n in node_infos}
    request = SchedulingRequest.from_pod
    bound = [request(v, spread[v.uid]) for v in map(PodView, live) if v.node and not v.terminal]
    pending = [p for p in live if not PodView(p).node]
    pending.sort(key=lambda p: (meta(p).get("creationTimestamp") or "", ns_of(p), meta(p)["name"]))
    for p, r in zip(pending, scheduler.schedule_all([request(PodView(p), spread[meta(p)["uid"]]) for p in pending],
                                                    node_infos, bound)):
        if r.node:
            best = ", ".join(f"{n}={s}" for n, s in r.scores[:3])
            plan.bindings.append(Binding(ns_of(p), meta(p)["name"], meta(p)["uid"], r.node, f"scores {best}"))
        else:
            plan.unschedulable.append(Unschedulable(ns_of(p), meta(p)["name"], meta(p)["uid"], r.message))
    # A pod bound (in Git) to a node that is not in the inventory cannot run anywhere: say so.
    for p in live:
        n = (p.get("spec") or {}).get("nodeName")
        if n and n not in node_names:
            plan.unschedulable.append(Unschedulable(ns_of(p), meta(p)["name"], meta(p)["uid"],
                                                    f"node {n!r} (spec.nodeName) is not in the inventory"))
    return plan


def service_endpoints(pods: list[dict], services: list[dict], deleting_uids: set[str] | frozenset[str] = frozenset()) -> dict:
    """The Endpoints of every live Service from the pods as stored: Ready pods as addresses, the rest not ready."""
    infos = []
    for s in map(ServiceView, services):
        if s.deleting:
            continue
        ports = tuple(ep.ServicePortInfo(port=x["port"], name=x.get("name") or "", protocol=x.get("protocol", "TCP"),
                                         target_port=x.get("targetPort")) for x in s.ports)
        infos.append(ep.ServiceInfo(namespace=s.namespace, name=s.name, selector=s.selector, ports=ports,
                                    headless=s.headless))
    return dict(ep.compute_all_endpoints(infos, map(PodView, pods), deleting_uids))
