"""Test helper: a stored Kubernetes Pod (its JSON dict), and that pod wrapped in `PodView`, the one typed view the
controllers read. Unit tests, integration tests and benches build their pods here, not with copies of it."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from gitkube.api.views import PodView, iso


def pod_dict(name: str, *, uid: str | None = None, namespace: str = "default", labels: Mapping[str, str] | None = None,
             node: str | None = None, phase: str | None = None, ready: bool | None = None,
             ready_since: float | None = None, ip: str | None = None, owner_uid: str | None = None,
             deleting: bool = False, created: float | None = None, restart_count: int = 0,
             ports: Iterable[tuple[str | None, int] | tuple[str | None, int, str]] = (),
             hostname: str | None = None, subdomain: str | None = None) -> dict[str, Any]:
    """The pod as the store keeps it. `ready` sets the Ready condition (lastTransitionTime `ready_since`, epoch
    seconds); `ports` are the container's (name, containerPort[, protocol]); `restart_count` is its restarts;
    `owner_uid` is a controlling ReplicationController ownerReference; `deleting` sets deletionTimestamp."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid if uid is not None else f"uid-{name}"}
    if labels is not None:
        meta["labels"] = dict(labels)
    if owner_uid is not None:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ReplicationController", "name": "owner",
                                    "uid": owner_uid, "controller": True, "blockOwnerDeletion": True}]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if created is not None:
        meta["creationTimestamp"] = iso(created)
    container: dict[str, Any] = {"name": "main", "image": "busybox"}
    if ports:
        container["ports"] = [{**({"name": p[0]} if p[0] else {}), "containerPort": p[1],
                               "protocol": p[2] if len(p) > 2 else "TCP"} for p in ports]
    spec: dict[str, Any] = {"containers": [container]}
    if node is not None:
        spec["nodeName"] = node
    if hostname is not None:
        spec["hostname"] = hostname
    if subdomain is not None:
        spec["subdomain"] = subdomain
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if ip is not None:
        status["podIP"] = ip
    if ready is not None:
        cond: dict[str, Any] = {"type": "Ready", "status": "True" if ready else "False"}
        if ready_since is not None:
            cond["lastTransitionTime"] = iso(ready_since)
        status["conditions"] = [cond]
    if restart_count:
        status["containerStatuses"] = [{"name": "main", "restartCount": restart_count}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def pod_view(name: str, **kw: Any) -> PodView:
    """`pod_dict(name, **kw)` wrapped in PodView."""
    return PodView(pod_dict(name, **kw))
