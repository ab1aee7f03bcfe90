"""Which pods a lost state DB held, decided from the nodes' containers and the Git revision alone.

The nodes are the ground truth: every container gitkube makes carries its pod's names, uids, owner, node, spec
hash, restart count and the Git revision (gitkube.reconcile.podlabels). From one list call per node, plus the
revision, the rebuild decides:
- each pod to ADOPT: its containers run a pod that Git still wants (a bare Pod of that name, a pod of a
  ReplicationController that is still in Git, or a pod of a Deployment's current ReplicaSet — the one whose
  pod-template-hash is the Deployment's template's now; the ReplicaSet is rebuilt too); it is stored again with the same name, uid, owner, node and
  creation time, and a status built from the containers' states, so the next pass finds nothing to change;
- each pod NOT WANTED, and why: its owner is gone from Git, it belongs to a ReplicaSet of an earlier template
  (whose spec no node records: the rollout replaces it), or it duplicates a pod that runs elsewhere (the same
  uid on two nodes, or a second uid for one bare pod); only these containers will be removed;
- the uids the Git objects had (an RC keeps the uid its pods point to, a bare pod keeps its own);
- the containers of another installation (another cluster id): counted and reported, never touched.
Nothing here does I/O; gitkube.controller.rebuild lists the containers and writes the store.
"""
from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

from gitkube.reconcile import apps
from gitkube.reconcile.cluster import _pod_from_template
from gitkube.reconcile.deployment import REVISION, RSChange
from gitkube.reconcile.podlabels import LabelledPod, owned_by, read_labels

INFRA = "POD"  # the sandbox container's name label (podsync.INFRA)


@dataclass(frozen=True)
class ListedContainer:
    """One container as a node's list call shows it."""

    node: str
    id: str
    state: str  # Docker's state word: running, exited, created…
    labels: Mapping[str, str]
    created: float  # seconds since the epoch
    image: str = ""
    image_id: str = ""
    ip: str | None = None


@dataclass(frozen=True)
class Unwanted:
    """A pod's containers on a node that gitkube can show are not wanted, and why."""

    node: str
    pod_uid: str
    pod: str  # namespace/name
    why: str


@dataclass
class RebuildPlan:
    """What the store gets back, and what the nodes showed."""

    pods: list[dict] = field(default_factory=list)  # Pod objects (metadata, spec with nodeName, status)
    replicasets: list[dict] = field(default_factory=list)  # the current ReplicaSet of each Deployment with pods
    uids: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (kind, ns, name) of a Git object -> uid
    bindings: dict[str, str] = field(default_factory=dict)  # pod uid -> node
    unwanted: list[Unwanted] = field(default_factory=list)
    foreign: dict[str, int] = field(default_factory=dict)  # node -> containers of another installation
    revisions: Counter = field(default_factory=Counter)  # Git revisions the adopted pods' containers were made by

    @property
    def adopted(self) -> int:
        return len(self.pods)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(obj: Mapping) -> tuple[str, str, str]:
    m = obj.get("metadata") or {}
    return obj.get("kind", ""), m.get("namespace") or "default", m.get("name", "")


@dataclass
class _Group:
    """The containers of one pod uid on one node."""

    node: str
    info: LabelledPod
    containers: list[tuple[LabelledPod, ListedContainer]] = field(default_factory=list)

    @property
    def infra(self) -> ListedContainer | None:
        return next((c for i, c in self.containers if i.container == INFRA), None)

    @property
    def running(self) -> bool:
        return self.infra is not None and self.infra.state == "running"

    @property
    def created(self) -> float:
        return min(c.created for _, c in self.containers)

    def rank(self) -> tuple:
        """Which copy of a pod to keep: a running sandbox, then the most running containers, then the oldest."""
        return (not self.running, -sum(c.state == "running" for _, c in self.containers), self.created, self.node)


def plan_rebuild(desired: Iterable[Mapping], containers: Iterable[ListedContainer], cluster_id: str,
                 template_hash_of: Callable[[Mapping], str] | None = None) -> RebuildPlan:
    """Decides which pods the lost state held, from the revision's objects (Kubernetes JSON) and the listed
    containers of every node. `template_hash_of(deployment)` is its current pod-template-hash (apps.template_hash
    with the controller's config inputs): a ReplicaSet of that hash is the Deployment's current one. Over 60 lines:
    one walk of the containers, grouped by pod, then one decision per group read best in order (adopt, duplicate,
    owner gone, foreign)."""
    plan = RebuildPlan()
    by_key = {_key(o): o for o in desired}
    groups: dict[tuple[str, str], _Group] = {}
    for c in containers:
        info = read_labels(c.labels)
        if info is None:
            continue
        if not owned_by(c.labels, cluster_id):
            plan.foreign[c.node] = plan.foreign.get(c.node, 0) + 1
            continue
        g = groups.setdefault((info.uid, c.node), _Group(c.node, info))
        if info.container == INFRA or g.info.container != INFRA:
            g.info = info  # the sandbox's labels speak for the pod
        g.containers.append((info, c))

    # One copy per pod uid; one uid per bare pod name.
    by_uid: dict[str, list[_Group]] = {}
    for g in groups.values():
        by_uid.setdefault(g.info.uid, []).append(g)
    keep: list[_Group] = []
    for copies in by_uid.values():
        copies.sort(key=_Group.rank)
        keep.append(copies[0])
        for dup in copies[1:]:
            plan.unwanted.append(_unwanted(dup, f"duplicates pod {copies[0].info.uid} that runs on {copies[0].node}"))
    keep.sort(key=_Group.rank)

    owner_uid = _owner_uids(keep)
    owners: dict[tuple[str, str, str], dict | str] = {}  # (kind, ns, name) -> the owner object, or why it is unwanted
    bare_seen: dict[tuple[str, str], _Group] = {}
    for g in keep:
        i = g.info
        if i.owner_kind in ("ReplicationController", "ReplicaSet"):
            okey = (i.owner_kind, i.namespace, i.owner_name or "")
            if okey not in owners:
                owners[okey] = _owner(plan, by_key, okey, owner_uid[okey[1:]], template_hash_of)
            owner = owners[okey]
            if isinstance(owner, str):
                plan.unwanted.append(_unwanted(g, owner))
                continue
            pod = _pod_from_template(owner, i.name, _NoRandom())
            pod["metadata"]["uid"] = i.uid
            if i.created:
                pod["metadata"]["creationTimestamp"] = i.created
        else:
            src = by_key.get(("Pod", i.namespace, i.name))
            if src is None:
                plan.unwanted.append(_unwanted(g, f"pod {i.namespace}/{i.name} is gone from Git"))
                continue
            first = bare_seen.get((i.namespace, i.name))
            if first is not None:
                plan.unwanted.append(_unwanted(g, f"duplicates pod {i.namespace}/{i.name} ({first.info.uid}) that "
                                                  f"runs on {first.node}"))
                continue
            bare_seen[(i.namespace, i.name)] = g
            plan.uids[_key(src)] = i.uid
            pod = _bare_pod(src, i)
        pod["spec"]["nodeName"] = g.node
        pod["status"] = status_from_containers(g)
        plan.pods.append(pod)
        plan.bindings[i.uid] = g.node
        if i.revision:
            plan.revisions[i.revision] += 1
    plan.pods.sort(key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
    return plan


def _unwanted(g: _Group, why: str) -> Unwanted:
    return Unwanted(g.node, g.info.uid, f"{g.info.namespace}/{g.info.name}", why)


def _owner_uids(groups: list[_Group]) -> dict[tuple[str, str], str]:
    """The uid each RC or ReplicaSet had: the one most of its pods point to (ties: the oldest pod's)."""
    votes: dict[tuple[str, str], Counter] = {}
    for g in groups:
        i = g.info
        if i.owner_kind and i.owner_uid:
            votes.setdefault((i.namespace, i.owner_name or ""), Counter())[i.owner_uid] += 1
    return {k: c.most_common(1)[0][0] for k, c in votes.items()}


class _NoRandom:
    """cluster._pod_from_template draws a uid; the rebuild replaces it with the one the labels name."""

    @staticmethod
    def getrandbits(n: int) -> int:
        return 0


def _owner(plan: RebuildPlan, by_key: Mapping, okey: tuple[str, str, str], uid: str,
           template_hash_of: Callable[[Mapping], str] | None) -> dict | str:
    """The RC (from Git) or ReplicaSet (rebuilt from its Deployment in Git) that owns pods, with the uid its pods
    point to; or why its pods are not wanted."""
    kind, ns, name = okey
    if kind == "ReplicationController":
        rc = by_key.get(okey)
        if rc is None:
            return f"its ReplicationController {ns}/{name} is gone from Git"
        plan.uids[_key(rc)] = uid
        return {**rc, "metadata": {**rc["metadata"], "namespace": ns, "uid": uid}}
    dname, _, rs_hash = name.rpartition("-")
    d = by_key.get(("Deployment", ns, dname))
    if d is None:
        return f"its ReplicaSet {ns}/{name} belongs to Deployment {ns}/{dname}, which is gone from Git"
    current = template_hash_of(d) if template_hash_of else rs_hash
    if current != rs_hash:
        return (f"its ReplicaSet {ns}/{name} runs an earlier template of Deployment {ns}/{dname} (now {current}): "
                "the rollout replaces it")
    # The Deployment gets a uid of its own here (its ReplicaSet points to it); the ReplicaSet keeps its pods' one.
    d_uid = plan.uids.setdefault(_key(d), str(uuid.uuid5(uuid.NAMESPACE_OID, f"deployment-of:{uid}")))
    replicas = int((d.get("spec") or {}).get("replicas", 1))
    rs = apps.new_replicaset({**d, "metadata": {**d["metadata"], "namespace": ns, "uid": d_uid}},
                             RSChange(name, rs_hash, replicas, {REVISION: "1"}, create=True), _NoRandom())
    rs["metadata"]["uid"] = uid
    plan.replicasets.append(rs)
    return rs


def _meta(i: LabelledPod, created_fallback: float) -> dict:
    return {"name": i.name, "namespace": i.namespace, "uid": i.uid,
            "creationTimestamp": i.created or _iso(created_fallback)}


def _bare_pod(src: Mapping, i: LabelledPod) -> dict:
    m = dict(src.get("metadata") or {})
    m.update(uid=i.uid, namespace=i.namespace)
    if i.created:
        m["creationTimestamp"] = i.created
    return {**{k: v for k, v in src.items() if k != "status"}, "metadata": m, "spec": dict(src.get("spec") or {})}


def status_from_containers(g: _Group) -> dict:
    """A pod status from the list call alone: phase, start time, and per container its latest attempt's id,
    state and restart count. The next sync takes these as hints (podsync.status_hints) instead of inspecting
    every container, and recomputes the full status (readiness, IPs) from them."""
    infra = g.infra
    latest: dict[str, tuple[LabelledPod, ListedContainer]] = {}
    for i, c in g.containers:
        if i.container == INFRA:
            continue
        cur = latest.get(i.container)
        if cur is None or (i.restart_count, c.created) > (cur[0].restart_count, cur[1].created):
            latest[i.container] = (i, c)
    statuses = []
    for name, (i, c) in sorted(latest.items()):
        cs: dict[str, Any] = {"name": name, "containerID": f"docker://{c.id}", "image": c.image,
                              "imageID": c.image_id, "restartCount": i.restart_count, "ready": False}
        if c.state == "running":
            cs["state"] = {"running": {"startedAt": _iso(c.created)}}
        else:
            cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
        statuses.append(cs)
    running = infra is not None and infra.state == "running"
    status: dict[str, Any] = {"phase": "Running" if running and statuses and all(
        "running" in s["state"] for s in statuses) else "Pending", "containerStatuses": statuses}
    if infra is not None:
        status["startTime"] = g.info.started or _iso(infra.created)
        if infra.ip:
            status["podIP"] = infra.ip
    return status
