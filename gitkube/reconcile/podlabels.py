"""What a pod's containers say of it: the Docker labels gitkube writes on every container it makes, enough to
rebuild the pod (and its owner's identity) from one list call per node when the state DB is lost.

Labels are written once, at create time, and never change; so they hold what does not change over a pod's life
(names, uids, owner, node, spec hashes, creation and start times, the Git revision that made it, and the cluster
that owns it), while what does change (status) is rebuilt from the containers' states."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

L = "io.gitkube."
MANAGED = f"{L}managed"
CLUSTER = f"{L}cluster"  # the owning installation (the cluster id of its state dir)
REVISION = f"{L}revision"  # the Git revision applied when the container was made
POD_UID = f"{L}pod.uid"
POD_NAMESPACE = f"{L}pod.namespace"
POD_NAME = f"{L}pod.name"
POD_SPEC_HASH = f"{L}pod.specHash"
POD_CREATED = f"{L}pod.creationTimestamp"
POD_STARTED = f"{L}pod.startTime"
OWNER_KIND = f"{L}pod.owner.kind"
OWNER_NAME = f"{L}pod.owner.name"
OWNER_UID = f"{L}pod.owner.uid"
CONTAINER_NAME = f"{L}container.name"
CONTAINER_HASH = f"{L}container.hash"
RESTART_COUNT = f"{L}container.restartCount"
NODE = f"{L}node"
ROLE = f"{L}role"  # system containers (proxy, dns, netprep): not pods


def pod_spec_hash(spec: Any) -> str:
    """A short digest of a pod's spec as the kubelet runs it (a model or plain JSON), without the binding."""
    body = spec.model_dump(mode="json", exclude_none=True) if hasattr(spec, "model_dump") else dict(spec or {})
    body.pop("nodeName", None)
    data = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def pod_labels(pod: Any, uid: str, node: str, container: str, container_hash: str, restart: int,
               cluster_id: str = "", revision: str = "", started: str = "") -> dict[str, str]:
    """Decides the labels of one container of `pod` (a Pod model): who it is, whose it is, what made it."""
    m = pod.metadata
    out = {MANAGED: "true", POD_UID: uid, POD_NAMESPACE: m.namespace or "default", POD_NAME: m.name,
           CONTAINER_NAME: container, CONTAINER_HASH: container_hash, RESTART_COUNT: str(restart), NODE: node,
           POD_SPEC_HASH: pod_spec_hash(pod.spec)}
    owner = next((r for r in m.ownerReferences or () if getattr(r, "controller", False)), None)
    if owner is not None:
        out.update({OWNER_KIND: owner.kind, OWNER_NAME: owner.name, OWNER_UID: owner.uid})
    if m.creationTimestamp:
        out[POD_CREATED] = m.creationTimestamp
    if started:
        out[POD_STARTED] = started
    if cluster_id:
        out[CLUSTER] = cluster_id
    if revision:
        out[REVISION] = revision
    return out


def owned_by(labels: Mapping[str, str], cluster_id: str) -> bool:
    """Decides whether a container belongs to the installation `cluster_id`. Containers made before cluster ids
    existed (no cluster label) are taken as this installation's: there was only ever one."""
    theirs = labels.get(CLUSTER)
    return theirs is None or theirs == cluster_id or not cluster_id


@dataclass(frozen=True)
class LabelledPod:
    """What one container's labels say of its pod."""

    uid: str
    namespace: str
    name: str
    node: str
    container: str
    restart_count: int
    spec_hash: str
    owner_kind: str | None
    owner_name: str | None
    owner_uid: str | None
    created: str | None
    started: str | None
    revision: str | None
    cluster: str | None


def read_labels(labels: Mapping[str, str]) -> LabelledPod | None:
    """Decides what a container's labels say of its pod; None for a container that is not a pod's."""
    if labels.get(MANAGED) != "true" or POD_UID not in labels or not labels.get(POD_NAME):
        return None
    try:
        restart = int(labels.get(RESTART_COUNT, "0"))
    except ValueError:
        restart = 0
    return LabelledPod(
        uid=labels[POD_UID], namespace=labels.get(POD_NAMESPACE) or "default", name=labels[POD_NAME],
        node=labels.get(NODE, ""), container=labels.get(CONTAINER_NAME, ""), restart_count=restart,
        spec_hash=labels.get(POD_SPEC_HASH, ""), owner_kind=labels.get(OWNER_KIND), owner_name=labels.get(OWNER_NAME),
        owner_uid=labels.get(OWNER_UID), created=labels.get(POD_CREATED), started=labels.get(POD_STARTED),
        revision=labels.get(REVISION), cluster=labels.get(CLUSTER))
