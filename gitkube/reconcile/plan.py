"""One pass as data. `plan_pass` turns an `Observation` (what the controller read: the revision, the store, the
heartbeats, every node's containers and probe results) into a frozen `PassPlan`: the store writes (revision,
Nodes, evictions, pods created/deleted/bound, statuses, events), each node's actions, and when the next pass is
due. `diff` prints a PassPlan; `apply` and `serve` execute the very same one (gitkube.controller.apply).

A pass has three stages, because the last two depend on what the nodes did:
1. cluster and nodes (`plan_pass`): revision → objects, node lifecycle, RC manager, scheduler, Service allocation,
   then each node's pod actions (pure `podsync.plan_node_pass`);
2. statuses (`podsync.node_statuses`), computed by apply from each node's containers after the actions;
3. endpoints (`plan_endpoints`): computed once per pass from the statuses of stage 2, so readiness seen in this pass
   moves Endpoints, the node proxies and DNS in this pass; the data plane is synced once, after it."""
from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from gitkube.api import parse_object
from gitkube.api.content import authored_content, content_hash, dict_key
from gitkube.api.views import NodeView, PodView, ServiceView, find_condition, iso, parse_time
from gitkube.reconcile import podsync as ps
from gitkube.reconcile.cluster import ClusterPlan, plan_cluster, rc_statuses, service_endpoints
from gitkube.reconcile.containerenv import EnvService
from gitkube.reconcile.nodelifecycle import NodeHeartbeat, ReadyCondition, node_lifecycle
from gitkube.reconcile.apps import TemplateInputs
from gitkube.reconcile.configrefs import config_blocks, env_digests, template_config_inputs
from gitkube.reconcile.scheduler import Scheduler
from gitkube.reconcile.services import Allocation, DataPlane, plan_dataplane

Key = tuple[str, str, str]  # kind, namespace, name
STORE_KINDS = ("Pod", "ReplicationController", "ReplicaSet", "Deployment", "Service", "Node", "Endpoints", "Namespace")
# A Node whose status did not change is rewritten with a new lastHeartbeatTime only this often, as the kubelet's
# nodeStatusUpdateFrequency (10 s); the heartbeat records (kv "heartbeats") still move every pass.
NODE_STATUS_UPDATE_SECONDS = 10.0
DEFAULT_STATUS = {"Pod": {"phase": "Pending"}, "Namespace": {"phase": "Active"}, "ReplicationController": {"replicas": 0},
                  "Service": {"loadBalancer": {}}}


# -- what the controller observed ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeSeen:
    """One inventory node as this pass saw it. `containers` None: not listed (unreachable, or an offline plan)."""

    name: str
    host_ip: str
    node_object: dict  # the Node as the heartbeat shows it (capacity, info), before the lifecycle's Ready condition
    probed: bool = False  # a heartbeat was attempted in this pass (False offline)
    reachable: bool = False
    runtime_error: bool = False
    reason: str = ""  # why the heartbeat failed (NodeUnreachable, DockerUnavailable, HostKeyMismatch...)
    message: str = ""
    containers: tuple[ps.ObservedContainer, ...] | None = None


@dataclass(frozen=True)
class Observation:
    """Everything one pass reads, as plain data: the planner needs nothing else."""

    now: float
    sha: str | None
    problems: tuple = ()  # the revision's (or the inventory's) problems: the revision is refused
    refused_what: str = ""  # "inventory" when the inventory itself could not be read
    desired: tuple[dict, ...] | None = None  # the revision's objects as Kubernetes JSON
    stored: Mapping[str, tuple[dict, ...]] = field(default_factory=dict)  # kind -> stored objects (every kind)
    applied_sha: str | None = None  # the revision the store last applied
    index: Mapping[Key, tuple[str, bool, str]] = field(default_factory=dict)  # key -> (desired hash, deleting, origin)
    kv: Mapping[str, Any] = field(default_factory=dict)
    nodes: Mapping[str, NodeSeen] = field(default_factory=dict)
    readiness: Mapping[tuple[str, str], bool] = field(default_factory=dict)
    waiting: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # last pass's held containers
    first_seen: Mapping[str, float] = field(default_factory=dict)  # node -> this process's first heartbeat of it
    cluster: str = ""  # the installation's cluster id: in the uids and names it makes (see new_uid)
    config: Mapping | None = field(default_factory=dict, compare=False, repr=False)  # ConfigMap/Secret values
    offline: bool = False


# -- what the pass does ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Write:
    """One store write. op: sync_revision, refused, kv, put, set_fields, status, mark_deleted, delete, event."""

    op: str
    args: tuple = ()
    kw: tuple[tuple[str, Any], ...] = ()

    @property
    def heartbeats(self) -> bool:
        """Whether this is the write of the heartbeat records (every pass makes one; it changes no decision input
        but the clocks)."""
        return self.op == "kv" and self.args[0] == "heartbeats"


@dataclass(frozen=True)
class SyncSummary:
    added: tuple[Key, ...] = ()
    changed: tuple[Key, ...] = ()
    removed: tuple[Key, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not (self.added or self.changed or self.removed)


@dataclass(frozen=True)
class PassPlan:
    """Everything one pass decided, frozen. Node actions are keyed by node; pods are named by `works`."""

    now: float
    sha: str | None
    refused: tuple = ()
    offline: bool = False
    sync: SyncSummary = SyncSummary()
    cluster: ClusterPlan | None = None
    evictions: tuple[tuple[str, str, str], ...] = ()  # (namespace, name, message)
    writes: tuple[Write, ...] = ()
    node_plans: Mapping[str, ps.NodePlan] = field(default_factory=dict)
    works: Mapping[str, tuple[ps.PodWork, ...]] = field(default_factory=dict)  # node -> pods bound to it
    sync_nodes: tuple[str, ...] = ()  # nodes whose pods this pass syncs (answered the heartbeat, Ready)
    node_errors: Mapping[str, str] = field(default_factory=dict)  # nodes skipped, and why
    dataplane: DataPlane | None = None
    env: Mapping[str, tuple[EnvService, ...]] = field(default_factory=dict)
    dns_server: str | None = None
    pulls: Mapping[str, Any] = field(default_factory=dict)  # image pull back-off per node, as stored
    config: Mapping | None = field(default_factory=dict, compare=False, repr=False)  # values pods read (memory only)
    world: Mapping[Key, dict] = field(default_factory=dict, compare=False, repr=False)  # objects after the writes
    next_due: float | None = None
    warnings: tuple[str, ...] = ()

    @property
    def actions(self) -> dict[str, tuple[ps.Action, ...]]:
        return {n: p.actions for n, p in self.node_plans.items()}

    def pod_key(self, uid: str) -> str:
        for ws in self.works.values():
            for w in ws:
                if w.uid == uid:
                    return w.key
        return f"(unknown pod {uid[:8]})"

    @property
    def fingerprint(self) -> str:
        """A short digest of what this plan would do (not of timestamps): equal plans, equal fingerprints."""
        body = {"sha": self.sha, "refused": [str(p) for p in self.refused],
                "sync": [list(self.sync.added), list(self.sync.changed), list(self.sync.removed)],
                "plan": render_plan(self, with_header=False)}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]


# -- stage 0: the revision into objects ---------------------------------------------------------------------
def new_uid(sha: str | None, key: Key, cluster: str = "") -> str:
    """The uid of an object a revision adds: derived from the installation, the revision and the key, so that the
    plan `diff` shows and the one `apply` executes name the same pods, and two installations applying one commit
    to the same nodes do not name containers alike."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gitkube:{cluster + ':' if cluster else ''}{sha}:{'/'.join(key)}"))


def ingest(obs: Observation, world: dict[Key, dict], now_s: str) -> tuple[SyncSummary, list[dict]]:
    """The objects after a revision sync, as the store's sync_revision makes them (into `world`), what changed, and
    the desired objects to hand the store (new ones carry the uid the plan used)."""
    added, changed, removed, to_store = [], [], [], []
    seen = set()
    for obj in obs.desired or ():
        key = dict_key(obj)
        seen.add(key)
        content = authored_content(obj)
        row = obs.index.get(key)
        old = world.get(key)
        if row is not None and row[0] == content_hash(content) and not row[1] and row[2] == "git":
            to_store.append(obj)
            continue
        meta = dict(content["metadata"])
        if old is None or row is None:
            meta.update(uid=new_uid(obs.sha, key, obs.cluster), creationTimestamp=now_s, generation=1)
            status = DEFAULT_STATUS.get(key[0])
            new = {**content, "metadata": meta, **({"status": dict(status)} if status else {})}
            added.append(key)
            to_store.append({**obj, "metadata": {**obj.get("metadata", {}), "uid": meta["uid"]}})
        else:
            om = old.get("metadata") or {}
            gen = om.get("generation", 1) + (content_hash(content.get("spec")) != content_hash(old.get("spec")))
            meta.update(uid=om.get("uid"), creationTimestamp=om.get("creationTimestamp"), generation=gen)
            new = {**content, "metadata": meta, **({"status": old["status"]} if "status" in old else {})}
            (added if row[1] else changed).append(key)
            to_store.append(obj)
        world[key] = new
    for key, (_h, deleting, origin) in sorted(obs.index.items()):
        if origin == "git" and not deleting and key not in seen and key in world:
            world[key] = _mark_deleted(world[key], now_s)
            removed.append(key)
    return SyncSummary(tuple(added), tuple(changed), tuple(removed)), to_store


def _mark_deleted(obj: dict, now_s: str) -> dict:
    return {**obj, "metadata": {**obj["metadata"], "deletionTimestamp": now_s}}


def _with_status(obj: dict, status: dict) -> dict:
    return {**obj, "status": status}


def _set(obj: dict, spec: Mapping | None = None, metadata: Mapping | None = None) -> dict:
    out = dict(obj)
    if spec:
        out["spec"] = {**(obj.get("spec") or {}), **spec}
    if metadata:
        out["metadata"] = {k: v for k, v in {**obj["metadata"], **metadata}.items() if v is not None}
    return out


def of_kind(world: Mapping[Key, dict], kind: str) -> list[dict]:
    return [o for k, o in sorted(world.items()) if k[0] == kind]


# -- stage 1a: nodes -----------------------------------------------------------------------------------------
def answered(record: dict, now: float) -> None:
    """A node's heartbeat record after a heartbeat that it answered at `now`."""
    record["last_attempt"] = record["last_success"] = now
    record["last_error"] = record["error_reason"] = None


def heartbeats_after(obs: Observation) -> dict[str, dict]:
    """The stored heartbeat records with this pass's probes in them."""
    hbs = {k: dict(v) for k, v in (obs.kv.get("heartbeats") or {}).items()}
    for name, n in obs.nodes.items():
        h = hbs.setdefault(name, {"registered_at": obs.now})
        if not n.probed:
            continue
        if n.reachable:
            answered(h, obs.now)
        else:
            h["last_attempt"] = obs.now
            h["last_error"] = n.message or "not probed"
            h["error_reason"] = n.reason or "NotProbed"
            h["runtime_error"] = n.runtime_error
    return hbs


def _heartbeat_only(prev: dict, obj: dict, now: float) -> float | None:
    """When the stored Node differs from `obj` only by a Ready lastHeartbeatTime under NODE_STATUS_UPDATE_SECONDS
    old: when that heartbeat falls due to be written (None: write the Node now)."""
    old, new = find_condition(prev.get("status") or {}, "Ready"), find_condition(obj["status"], "Ready")
    beat = parse_time(old.get("lastHeartbeatTime"))
    if beat is None or now - beat >= NODE_STATUS_UPDATE_SECONDS or not new.get("lastHeartbeatTime"):
        return None
    if {**old, "lastHeartbeatTime": None} != {**new, "lastHeartbeatTime": None}:
        return None
    status = {**obj["status"], "conditions": [c if c.get("type") != "Ready" else old for c in obj["status"]["conditions"]]}
    if prev.get("status") != status or (prev.get("metadata") or {}).get("labels") != obj["metadata"]["labels"]:
        return None
    return beat + NODE_STATUS_UPDATE_SECONDS  # the stored Node stands until then


def _node_writes(obs: Observation, world: dict[Key, dict], hbs: dict, conds: Mapping[str, ReadyCondition],
                 writes: list[Write]) -> float | None:
    """Each inventory Node with the lifecycle's Ready condition; a NodeReady/NodeNotReady event on a change.
    Returns when the next heartbeat-only Node write falls due."""
    dues = []
    for name, seen in sorted(obs.nodes.items()):
        cond = conds.get(name)
        key = ("Node", "", name)
        prev = world.get(key)
        obj = json.loads(json.dumps(seen.node_object))
        if cond is not None:
            hbs[name]["condition"] = {"status": cond.status, "reason": cond.reason, "message": cond.message,
                                      "last_heartbeat_time": cond.last_heartbeat_time,
                                      "last_transition_time": cond.last_transition_time}
            rc = find_condition(obj["status"], "Ready")
            rc.update(status=cond.status, reason=cond.reason, message=cond.message,
                      lastTransitionTime=iso(cond.last_transition_time) or rc.get("lastTransitionTime"))
            if cond.last_heartbeat_time:
                rc["lastHeartbeatTime"] = iso(cond.last_heartbeat_time)
        elif prev is not None:
            continue  # offline: the Node stays as stored
        if prev is not None and (due := _heartbeat_only(prev, obj, obs.now)) is not None:
            dues.append(due)
            continue
        status = NodeView(obj).ready_status
        if prev is not None and NodeView(prev).ready_status != status:
            word = "NodeReady" if status == "True" else "NodeNotReady"
            msg = find_condition(obj["status"], "Ready").get("message", "")
            writes.append(Write("event", ({"kind": "Node", "name": name, "namespace": ""}, word,
                                          f"Node {name} status is now: {word} ({msg})",
                                          "Normal" if status == "True" else "Warning")))
        writes.append(Write("put", (obj,), (("origin", "controller"),)))
        world[key] = {**obj, "metadata": {**(prev or {}).get("metadata", {}), **obj["metadata"]}}
    return min(dues) if dues else None


def plan_nodes(obs: Observation, world: dict[Key, dict], writes: list[Write], grace_period: float,
               eviction_timeout: float) -> tuple[dict[str, bool], list[tuple[str, str, str]], float | None]:
    """Node lifecycle: heartbeats, Ready conditions, Node objects, evictions. Returns which nodes this pass may sync,
    the evictions, and when a node's condition or an eviction next falls due."""
    hbs = heartbeats_after(obs)
    names = set(obs.nodes)
    if obs.offline:
        _node_writes(obs, world, hbs, {}, writes)
        return {n: False for n in names}, [], None
    prev = {n: ReadyCondition(**h["condition"]) for n, h in hbs.items() if h.get("condition") and n in names}
    heartbeats = [NodeHeartbeat(node=k, last_success=v.get("last_success"), last_attempt=v.get("last_attempt"),
                                last_error=v.get("last_error"), runtime_error=bool(v.get("runtime_error")),
                                registered_at=v.get("registered_at", obs.now), observed_since=obs.first_seen.get(k),
                                error_reason=v.get("error_reason")) for k, v in hbs.items() if k in names]
    decision = node_lifecycle(heartbeats, list(map(PodView, of_kind(world, "Pod"))), obs.now, previous=prev,
                              grace_period=grace_period, eviction_timeout=eviction_timeout)
    status_due = _node_writes(obs, world, hbs, decision.conditions, writes)
    writes.append(Write("kv", ("heartbeats", hbs)))
    sync_ok = {n: bool(decision.conditions.get(n) and decision.conditions[n].ready and obs.nodes[n].reachable)
               for n in names}
    evictions = []
    for ev in decision.evict:
        p = ev.pod
        key = ("Pod", p.namespace, p.name)
        if key in world and not PodView(world[key]).deleting:
            world[key] = _mark_deleted(world[key], iso(obs.now))
            writes.append(Write("mark_deleted", key))
            writes.append(Write("event", ({"kind": "Pod", "namespace": p.namespace, "name": p.name, "uid": p.uid},
                                          ev.event_reason, ev.event_message, "Warning")))
            evictions.append((p.namespace, p.name, ev.message))
    dues = [d for d in (status_due, _lifecycle_due(decision.conditions, heartbeats, obs.now, grace_period,
                                                   eviction_timeout)) if d is not None]
    return sync_ok, evictions, min(dues) if dues else None


def _lifecycle_due(conds: Mapping[str, ReadyCondition], heartbeats: list[NodeHeartbeat], now: float, grace: float,
                   eviction: float) -> float | None:
    """When a node's Ready condition or an eviction next falls due without anything else happening."""
    dues = []
    for hb in heartbeats:
        c = conds.get(hb.node)
        if c is None:
            continue
        if not c.ready:
            dues.append(hb.eviction_clock(now, grace) + eviction)  # its pods are evicted then
        elif hb.last_error is not None and hb.last_success is not None:
            dues.append(max(hb.last_success, hb.since_seen(now)) + grace)  # a Ready node that stopped answering
    dues = [d for d in dues if d > now]
    return min(dues) if dues else None


# -- stage 1b: the control plane's objects -------------------------------------------------------------------
def _owner_target(p: PodView) -> dict:
    o = p.owner
    if o:
        return {"kind": o["kind"], "namespace": p.namespace, "name": o["name"], "uid": o["uid"]}
    return {"kind": "Pod", "namespace": p.namespace, "name": p.name, "uid": p.uid}


def _pod_target(p: PodView) -> dict:
    return {"kind": "Pod", "namespace": p.namespace, "name": p.name, "uid": p.uid}


def apply_apps(plan: ClusterPlan, world: dict[Key, dict], writes: list[Write], now_s: str) -> None:
    """The Deployment controller's part: ReplicaSets created, resized and deleted (before the pods they own)."""
    apps = plan.apps
    for rs in apps.rs_create:
        writes.append(Write("put", (rs,), (("origin", "controller"),)))
        world[dict_key(rs)] = rs
    for rs in apps.rs_update:
        body = {k: v for k, v in rs.items() if k != "status"}
        writes.append(Write("put", (body,), (("origin", "controller"),)))
        world[dict_key(rs)] = {**body, **({"status": world[dict_key(rs)]["status"]} if "status" in world.get(dict_key(rs), {}) else {})}
    for ns, name, why in apps.rs_delete:
        key = ("ReplicaSet", ns, name)
        if key in world and not PodView(world[key]).deleting:
            world[key] = _mark_deleted(world[key], now_s)
            writes.append(Write("mark_deleted", key))
            owner = PodView(world[key]).owner
            if owner:
                writes.append(Write("event", ({"kind": owner["kind"], "namespace": ns, "name": owner["name"],
                                               "uid": owner["uid"]}, "DeletedReplicaSet",
                                              f"Deleted replica set {name} ({why})", "Normal")))
    for involved, type_, reason, message in apps.events:
        writes.append(Write("event", (involved, reason, message, type_)))


def apply_app_statuses(plan: ClusterPlan, world: dict[Key, dict], writes: list[Write]) -> None:
    """ReplicaSet and Deployment statuses, and each Deployment's `deployment.kubernetes.io/revision`."""
    from gitkube.reconcile.deployment import REVISION

    for (ns, name), st in plan.rs_status.items():
        key = ("ReplicaSet", ns, name)
        if key in world and world[key].get("status") != st:
            world[key] = _with_status(world[key], st)
            writes.append(Write("status", (*key, st)))
    for (ns, name), st in plan.apps.deployment_status.items():
        key = ("Deployment", ns, name)
        if key not in world:
            continue
        if world[key].get("status") != st:
            world[key] = _with_status(world[key], st)
            writes.append(Write("status", (*key, st)))
        rev = plan.apps.deployment_revision.get((ns, name))
        ann = dict(PodView(world[key]).meta.get("annotations") or {})
        if rev and rev != "0" and ann.get(REVISION) != rev:
            md = {"annotations": {**ann, REVISION: rev}}
            world[key] = _set(world[key], metadata=md)
            writes.append(Write("set_fields", key, (("metadata", md),)))


def apply_cluster(plan: ClusterPlan, world: dict[Key, dict], writes: list[Write], bindings: dict, now: float) -> None:
    """The cluster plan's effects on the objects, as store writes (and into `world`)."""
    now_s = iso(now)
    apply_apps(plan, world, writes, now_s)  # ReplicaSets before the pods they own
    for c in plan.create:
        p = PodView(c.pod)
        world[("Pod", p.namespace, p.name)] = {**c.pod, "status": {"phase": "Pending"}}
        writes.append(Write("put", (c.pod,), (("origin", "controller"),)))
        writes.append(Write("event", (_owner_target(p), "SuccessfulCreate", f"Created pod: {p.name}")))
    for d in plan.delete:
        key = ("Pod", d.namespace, d.name)
        if key in world and not PodView(world[key]).deleting:
            world[key] = _mark_deleted(world[key], now_s)
            writes.append(Write("mark_deleted", key))
            writes.append(Write("event", (_owner_target(PodView(world[key])), "SuccessfulDelete",
                                          f"Deleted pod: {d.name} ({d.reason})")))
    for o in plan.owners:
        key = ("Pod", o.namespace, o.name)
        md = {"ownerReferences": [o.owner] if o.owner else None}
        world[key] = _set(world[key], metadata=md)
        writes.append(Write("set_fields", key, (("metadata", md),)))
    for b in plan.bindings:
        key = ("Pod", b.namespace, b.name)
        world[key] = _set(world[key], spec={"nodeName": b.node})
        writes.append(Write("set_fields", key, (("spec", {"nodeName": b.node}),)))
        bindings[b.uid] = b.node
        st = dict(world[key].get("status") or {})
        st["conditions"] = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"] + [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_s}]
        world[key] = _with_status(world[key], st)
        writes.append(Write("status", (*key, st)))
        writes.append(Write("event", (_pod_target(PodView(world[key])), "Scheduled",
                                      f"Successfully assigned {b.namespace}/{b.name} to {b.node}")))
    if plan.bindings:
        writes.append(Write("kv", ("bindings", dict(bindings))))
    for u in plan.unschedulable:
        key = ("Pod", u.namespace, u.name)
        if key not in world:
            continue
        p = PodView(world[key])
        st = {**p.status, "phase": "Pending"}
        old = p.condition("PodScheduled")
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": u.message,
                "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == "False" else now_s}
        st["conditions"] = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"] + [cond]
        if st != p.status:
            world[key] = _with_status(world[key], st)
            writes.append(Write("status", (*key, st)))
        writes.append(Write("event", (_pod_target(p), "FailedScheduling", u.message, "Warning")))
    for (ns, name), st in plan.rc_status.items():
        key = ("ReplicationController", ns, name)
        if key in world and world[key].get("status") != st:
            world[key] = _with_status(world[key], st)
            writes.append(Write("status", (*key, st)))
    apply_app_statuses(plan, world, writes)


def _reapply_bindings(world: dict[Key, dict], bindings: Mapping[str, str], writes: list[Write]) -> None:
    """Bindings outlive a changed Git spec: the pod stays on its node (the kubelet restarts changed containers)."""
    for key, o in list(world.items()):
        if key[0] == "Pod":
            p = PodView(o)
            if p.uid in bindings and not p.node:
                world[key] = _set(o, spec={"nodeName": bindings[p.uid]})
                writes.append(Write("set_fields", key, (("spec", {"nodeName": bindings[p.uid]}),)))


def plan_services(obs: Observation, world: dict[Key, dict], writes: list[Write],
                  endpoints: Mapping | None = None) -> tuple[DataPlane | None, list[str]]:
    """ClusterIPs and NodePorts (stable, recorded on the Services), and the data plane for given endpoints."""
    svcs = [s for s in of_kind(world, "Service") if not ServiceView(s).deleting]
    prev = obs.kv.get("service_alloc")
    if not svcs and not prev:
        return None, []  # no Services, ever: no proxy or DNS containers on the nodes
    models, warnings = [], []
    for s in svcs:
        try:
            models.append(parse_object({k: v for k, v in s.items() if k != "status"}))
        except Exception as e:  # noqa: BLE001 - a stored object that no longer validates is skipped, and said so
            warnings.append(f"service {'/'.join(ServiceView(s).key)} skipped: {e}")
    prev_alloc = Allocation(prev["cluster_ips"], prev["node_ports"]) if prev else None
    dp = plan_dataplane(models, endpoints or {}, prev_alloc)
    alloc = {"cluster_ips": dp.allocation.cluster_ips, "node_ports": dp.allocation.node_ports}
    if alloc != prev:
        writes.append(Write("kv", ("service_alloc", alloc)))
    for s in map(ServiceView, svcs):
        k = f"{s.namespace}/{s.name}"
        for msg in dp.allocation.errors.get(k) or ():
            writes.append(Write("event", ({"kind": "Service", "namespace": s.namespace, "name": s.name, "uid": s.uid},
                                          "FailedToAllocate", msg, "Warning")))
        if dp.allocation.errors.get(k):
            continue
        ip = dp.allocation.cluster_ips.get(k)
        ports = []
        for p in s.ports:
            np = dp.allocation.node_ports.get(f"{k}:{p['port']}/{p.get('protocol', 'TCP')}")
            ports.append({**p, "nodePort": np} if np else dict(p))
        if s.cluster_ip != ip or list(s.ports) != ports:
            key = ("Service", s.namespace, s.name)
            world[key] = _set(world[key], spec={"clusterIP": ip, "ports": ports})
            writes.append(Write("set_fields", key, (("spec", {"clusterIP": ip, "ports": ports}),)))
    return dp, warnings


def stored_env(world: Mapping[Key, dict]) -> dict[str, tuple[EnvService, ...]]:
    """The Services' environment variables of each namespace, from the ClusterIPs the Services hold."""
    out: dict[str, list[EnvService]] = {}
    for s in map(ServiceView, of_kind(world, "Service")):
        if s.cluster_ip and not s.deleting:
            out.setdefault(s.namespace, []).append(EnvService(
                s.name, s.cluster_ip, tuple((p.get("name"), p["port"], p.get("protocol", "TCP")) for p in s.ports)))
    return {k: tuple(v) for k, v in out.items()}


# -- stage 1c: each node's pods --------------------------------------------------------------------------------
_MODELS: dict[tuple[str, str], tuple[dict, object]] = {}


def _pod_model(o: dict, uid: str):
    """The validated model of a stored pod (status left out), memoised: an unchanged pod is not validated again on
    every pass (models are immutable). Looked up by uid and resourceVersion, used only when the body is equal (two
    stores in one process, e.g. a dry run's copy, may reuse a resourceVersion)."""
    key = (uid, str((o.get("metadata") or {}).get("resourceVersion", "")))
    body = {k: v for k, v in o.items() if k != "status"}
    hit = _MODELS.get(key)
    if hit is not None and hit[0] == body:
        return hit[1]
    model = parse_object(body)
    if len(_MODELS) > 20_000:
        _MODELS.clear()
    _MODELS[key] = (body, model)
    return model


def works_by_node(world: Mapping[Key, dict], config: Mapping | None = None
                  ) -> tuple[dict[str, list[ps.PodWork]], list[str]]:
    """Pods bound to each node, as the kubelets should run them (and the stored pods that no longer validate).
    A pod's containers carry the digest of the config their env reads, except a ReplicaSet's pods: they keep the
    env they started with, and their Deployment rolls out instead (template_inputs)."""
    out: dict[str, list[ps.PodWork]] = {}
    warnings = []
    for o in of_kind(world, "Pod"):
        p = PodView(o)
        if not p.node:
            continue
        try:
            model = _pod_model(o, p.uid)
        except Exception as e:  # noqa: BLE001 - a stored object that no longer validates is skipped, and said so
            warnings.append(f"pod {p.namespace}/{p.name} skipped: {e}")
            continue
        by_rs = any(r.get("kind") == "ReplicaSet" for r in p.meta.get("ownerReferences") or ())
        digests = {} if by_rs else env_digests(model.spec, p.namespace, config or {})
        out.setdefault(p.node, []).append(ps.PodWork(model, p.uid, deleting=p.deleting, last_status=dict(p.status),
                                                     config_digests=digests))
    return out, warnings


def plan_pods(obs: Observation, works: Mapping[str, list[ps.PodWork]], sync_ok: Mapping[str, bool]
              ) -> tuple[dict[str, ps.NodePlan], dict[str, str]]:
    """Each node's kubelet plan (offline: from the containers the stored statuses report), or why it has none."""
    plans, errors = {}, {}
    pulls = obs.kv.get("image_pulls") or {}
    for name, seen in sorted(obs.nodes.items()):
        ws = works.get(name, [])
        if obs.offline:
            observed = ps.observed_from_status(ws)
        elif not sync_ok.get(name) or seen.containers is None:
            errors[name] = seen.message or "node not Ready"
            continue
        else:
            observed = list(seen.containers)
        plans[name] = ps.plan_node_pass(ws, observed, obs.now, {k: tuple(v) for k, v in (pulls.get(name) or {}).items()},
                                        config_blocks(ws, obs.config))
    return plans, errors


# -- the pass ----------------------------------------------------------------------------------------------
def _refused_writes(obs: Observation) -> list[Write]:
    if obs.refused_what == "inventory":
        return [Write("refused", ("inventory", list(obs.problems)))]
    if obs.kv.get("last_refused") != obs.sha:
        return [Write("refused", (obs.sha, list(obs.problems))), Write("kv", ("last_refused", obs.sha))]
    return []


def plan_pass(obs: Observation, *, grace_period: float = 20.0, eviction_timeout: float = 30.0,
              scheduler: Scheduler | None = None, rng: random.Random | None = None,
              template_inputs: TemplateInputs | None = None) -> PassPlan:
    """One pass, planned: revision → objects → node lifecycle → RC manager and scheduler → Services → node pods."""
    if obs.refused_what == "inventory":
        return PassPlan(obs.now, obs.sha, tuple(obs.problems), obs.offline, writes=tuple(_refused_writes(obs)))
    world: dict[Key, dict] = {dict_key(o): o for objs in obs.stored.values() for o in objs}
    writes: list[Write] = []
    now_s = iso(obs.now)
    sync = SyncSummary()
    if obs.problems:
        writes += _refused_writes(obs)
    elif obs.desired is not None:
        sync, to_store = ingest(obs, world, now_s)
        if not sync.in_sync or obs.applied_sha != obs.sha:  # the same revision, all in sync: nothing to record
            writes.append(Write("sync_revision", (obs.sha, to_store)))
    sync_ok, evictions, lifecycle_due = plan_nodes(obs, world, writes, grace_period, eviction_timeout)
    bindings = dict(obs.kv.get("bindings") or {})
    _reapply_bindings(world, bindings, writes)
    inventory = set(obs.nodes)
    applied = obs.sha if obs.desired is not None and not obs.problems else obs.applied_sha
    template_inputs = template_inputs or _config_template_inputs(obs, writes)
    cluster = plan_cluster(of_kind(world, "Pod"), of_kind(world, "ReplicationController"), of_kind(world, "Service"),
                           [n for n in of_kind(world, "Node") if NodeView(n).name in inventory], obs.now,
                           scheduler, rng or random.Random(seed_of(obs)), deployments=of_kind(world, "Deployment"),
                           replicasets=of_kind(world, "ReplicaSet"), git_commit=applied, template_inputs=template_inputs)
    apply_cluster(cluster, world, writes, bindings, obs.now)
    dp, warnings = plan_services(obs, world, writes)
    works, bad = works_by_node(world, obs.config)
    node_plans, errors = plan_pods(obs, works, sync_ok)
    dues = [t for t in [lifecycle_due, time_due(world, obs.now), *(p.next_due for p in node_plans.values())]
            if t is not None]
    return PassPlan(
        now=obs.now, sha=obs.sha, refused=tuple(obs.problems), offline=obs.offline, sync=sync, cluster=cluster,
        evictions=tuple(evictions), writes=tuple(writes), node_plans=node_plans,
        works={n: tuple(ws) for n, ws in works.items()}, sync_nodes=tuple(sorted(node_plans)) if not obs.offline else (),
        node_errors=errors, dataplane=dp, env=dp.env if dp is not None else stored_env(world),
        dns_server=dp.dns_ip if dp is not None else obs.kv.get("cluster_dns"), pulls=obs.kv.get("image_pulls") or {},
        config=obs.config,
        world=world, next_due=min(dues) if dues else None, warnings=tuple(warnings + bad))


def time_due(world: Mapping[Key, dict], now: float) -> float | None:
    """When the cluster's decisions next change with time alone: a Ready pod of an RC or ReplicaSet with
    minReadySeconds becomes available, or a Deployment still progressing reaches its progressDeadlineSeconds."""
    deploy_mrs = {PodView(d).uid: (d.get("spec") or {}).get("minReadySeconds") or 0 for d in of_kind(world, "Deployment")}
    mrs = {}
    for o in of_kind(world, "ReplicationController") + of_kind(world, "ReplicaSet"):
        v = PodView(o)
        m = (o.get("spec") or {}).get("minReadySeconds") or deploy_mrs.get(v.owner_uid or "", 0)
        if m > 0:
            mrs[v.uid] = m
    dues = []
    if mrs:
        for p in map(PodView, of_kind(world, "Pod")):
            m = mrs.get(p.owner_uid or "")
            since = p.ready_since if m else None
            if since is not None and since + m >= now:
                dues.append(since + m + 0.001)  # available once Ready for more than minReadySeconds
    for d in of_kind(world, "Deployment"):
        spec = d.get("spec") or {}
        c = find_condition(d.get("status") or {}, "Progressing")
        if spec.get("paused") or c.get("reason") in (None, "NewReplicaSetAvailable", "ProgressDeadlineExceeded",
                                                     "DeploymentPaused"):
            continue
        t = parse_time(c.get("lastUpdateTime"))
        if t is not None and t + spec.get("progressDeadlineSeconds", 600) >= now:
            dues.append(t + spec.get("progressDeadlineSeconds", 600) + 0.001)
    return min(dues) if dues else None


def _config_template_inputs(obs: Observation, writes: list[Write]):
    """A Deployment's pod-template-hash input from the config its env reads; kept in the store (config values are
    not) so that a pass whose config cannot be read (a refused revision) keeps the hash."""
    saved = dict(obs.kv.get("config_template_inputs") or {})

    def inputs(d: dict) -> list:
        key = "/".join(ServiceView(d).key)
        if obs.config is None:
            return saved.get(key, [])
        got = template_config_inputs(d, obs.config)
        if saved.get(key, []) != got:
            saved[key] = got
            writes.append(Write("kv", ("config_template_inputs", dict(saved))))
        return got

    return inputs


def seed_of(obs: Observation) -> int:
    """The RC manager's random names and uids come from the revision and the pods there are, so `diff` and the
    `apply` after it (the world unchanged) create the same pods."""
    pods = sorted((PodView(p).uid, PodView(p).name) for p in obs.stored.get("Pod", ()))
    h = hashlib.sha256(json.dumps([obs.sha, pods] + ([obs.cluster] if obs.cluster else [])).encode()).digest()
    return int.from_bytes(h[:8], "big")


# -- stage 3: endpoints, once per pass, from the statuses this pass wrote -------------------------------------
def plan_endpoints(world: Mapping[Key, dict], writes: list[Write], now: float | None = None) -> dict:
    """The Endpoints of every Service from the pods as they now are; writes for the changed ones and for the
    Endpoints of Services that are gone (and, given `now`, each RC's status: its ready replicas too). Returns the
    Endpoints objects (reconcile.endpoints) by (namespace, name)."""
    if now is not None:
        owners = of_kind(world, "ReplicationController") + of_kind(world, "ReplicaSet")
        for key, st in rc_statuses(of_kind(world, "Pod"), owners, now).items():
            if world[key].get("status") != st:
                writes.append(Write("status", (*key, st)))
    eps = service_endpoints(of_kind(world, "Pod"), of_kind(world, "Service"))
    for (ns, name), e in eps.items():
        d = e.as_dict()
        old = world.get(("Endpoints", ns, name))
        if old is None or old.get("subsets") != d.get("subsets"):
            writes.append(Write("put", (d,), (("origin", "controller"),)))
    live = {ServiceView(s).key for s in of_kind(world, "Service") if not ServiceView(s).deleting}
    for e in of_kind(world, "Endpoints"):
        if ServiceView(e).key not in live:
            writes.append(Write("delete", dict_key(e)))
    return eps


def finished_deletions(world: Mapping[Key, dict], inventory: set[str], removed_uids: set[str]) -> list[Key]:
    """Deleted objects that may go now: pods their node has removed (or that have no node to run on), RCs no pod
    refers to, Services and Namespaces."""
    out = []
    gone_pods = set()
    for p in map(PodView, of_kind(world, "Pod")):
        if p.deleting and (not p.node or p.node not in inventory or p.uid in removed_uids):
            out.append(("Pod", p.namespace, p.name))
            gone_pods.add(p.uid)
    owners = {r.get("uid") for o in of_kind(world, "Pod") if PodView(o).uid not in gone_pods
              for r in PodView(o).meta.get("ownerReferences") or ()}
    gone_rs = set()
    for kind in ("ReplicationController", "ReplicaSet", "Service", "Namespace"):
        for o in of_kind(world, kind):
            v = PodView(o)
            if v.deleting and not (kind in ("ReplicationController", "ReplicaSet") and v.uid in owners):
                out.append(dict_key(o))
                gone_rs.add(v.uid)
    rs_owners = {r.get("uid") for o in of_kind(world, "ReplicaSet") if PodView(o).uid not in gone_rs
                 for r in PodView(o).meta.get("ownerReferences") or ()}
    for o in of_kind(world, "Deployment"):
        if PodView(o).deleting and PodView(o).uid not in rs_owners:
            out.append(dict_key(o))
    return out


# -- how a plan reads ----------------------------------------------------------------------------------------
def render_action(plan: PassPlan, node: str, a: ps.Action) -> str:
    pod = plan.pod_key(a.pod_uid)
    if isinstance(a, ps.EnsureSandbox):
        return f"node {node}: start pod sandbox for {pod}"
    if isinstance(a, ps.StartContainer):
        return f"node {node}: start container {pod}:{a.container} (restart #{a.restart_count}, {a.reason})"
    if isinstance(a, ps.KillContainer):
        return f"node {node}: kill container {pod}:{a.container} ({a.reason}, grace {a.grace}s)"
    if isinstance(a, ps.RemoveContainer):
        return f"node {node}: remove old container {a.container_id[:12]} of {pod}"
    return f"node {node}: terminate pod {pod} ({a.reason}, grace {a.grace}s)"


def render_plan(plan: PassPlan, with_header: bool = True) -> list[str]:
    """Human lines for a plan: pods created/deleted/bound/evicted, objects pruned, and what each node would do."""
    lines = []
    for kind, ns, name in plan.sync.removed:
        lines.append(f"- would prune {kind} {ns + '/' if ns else ''}{name} (removed from Git)")
    c = plan.cluster
    if c is not None:
        for x in c.create:
            lines.append(f"+ pod {x.pod['metadata']['namespace']}/{x.pod['metadata']['name']} (generated name): {x.reason}")
        for d in c.delete:
            lines.append(f"- pod {d.namespace}/{d.name}: {d.reason}")
        for o in c.owners:
            lines.append(f"~ pod {o.namespace}/{o.name}: " + (f"adopted by {o.owner['kind']} {o.owner['name']}"
                                                             if o.owner else "released by its controller"))
        for b in c.bindings:
            lines.append(f"> pod {b.namespace}/{b.name} → node {b.node} ({b.why})")
        for u in c.unschedulable:
            lines.append(f"! pod {u.namespace}/{u.name} stays Pending: {u.message}")
    for ns, name, msg in plan.evictions:
        lines.append(f"- pod {ns}/{name}: evicted ({msg})")
    for node in sorted(set(plan.node_plans) | set(plan.node_errors)):
        if node in plan.node_errors:
            lines.append(f"? node {node}: not synced ({plan.node_errors[node]})")
            continue
        lines += ["  " + render_action(plan, node, a) for a in plan.node_plans[node].actions]
    if with_header and plan.offline:
        lines.insert(0, "# offline: planned from the store's last observation; no node was contacted")
    return lines
