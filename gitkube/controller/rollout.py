"""The Deployment controller's writes: ReplicaSets created, resized and deleted as the plan says, statuses of
ReplicaSets and Deployments, the Deployment's revision annotation, events; and the end of deletions (a
Deployment or ReplicaSet goes once nothing it owns is left). Decisions are gitkube.reconcile.deployment's."""
from __future__ import annotations

from gitkube.reconcile.cluster import ClusterPlan, is_deleting, key_of, meta
from gitkube.reconcile.deployment import REVISION
from gitkube.store import Store


def write_apps(store: Store, plan: ClusterPlan) -> None:
    """Carry out the Deployment part of a cluster plan (before the pods it creates are written)."""
    apps = plan.apps
    for rs in apps.rs_create:
        store.put(rs, origin="controller")
    for rs in apps.rs_update:
        store.put({k: v for k, v in rs.items() if k != "status"}, origin="controller")
    for ns, name, why in apps.rs_delete:
        rs = store.get("ReplicaSet", ns, name)
        if rs is not None and store.mark_deleted("ReplicaSet", ns, name):
            owner = next((r for r in meta(rs).get("ownerReferences") or [] if r.get("controller")), None)
            if owner:
                store.record_event({"kind": owner["kind"], "namespace": ns, "name": owner["name"], "uid": owner["uid"]},
                                   "DeletedReplicaSet", f"Deleted replica set {name} ({why})", "Normal")
    for involved, type_, reason, message in apps.events:
        store.record_event(involved, reason, message, type_)


def write_app_statuses(store: Store, plan: ClusterPlan) -> None:
    """ReplicaSet and Deployment statuses, and each Deployment's `deployment.kubernetes.io/revision`."""
    for (ns, name), st in plan.rs_status.items():
        rs = store.get("ReplicaSet", ns, name)
        if rs is not None and rs.get("status") != st:
            store.update_status("ReplicaSet", ns, name, st)
    for (ns, name), st in plan.apps.deployment_status.items():
        d = store.get("Deployment", ns, name)
        if d is None:
            continue
        if d.get("status") != st:
            store.update_status("Deployment", ns, name, st)
        rev = plan.apps.deployment_revision.get((ns, name))
        ann = meta(d).get("annotations") or {}
        if rev and rev != "0" and ann.get(REVISION) != rev:
            store.set_fields("Deployment", ns, name, metadata={"annotations": {**ann, REVISION: rev}})


def purge_apps(store: Store) -> None:
    """Deleted ReplicaSets go once they own no pod, deleted Deployments once they own no ReplicaSet."""
    pod_owners = {r.get("uid") for p in store.list("Pod", namespace="*") for r in meta(p).get("ownerReferences") or []}
    for rs in store.list("ReplicaSet", namespace="*"):
        if is_deleting(rs) and meta(rs).get("uid") not in pod_owners:
            store.delete("ReplicaSet", *key_of(rs))
    rs_owners = {r.get("uid") for x in store.list("ReplicaSet", namespace="*") for r in meta(x).get("ownerReferences") or []}
    for d in store.list("Deployment", namespace="*"):
        if is_deleting(d) and meta(d).get("uid") not in rs_owners:
            store.delete("Deployment", *key_of(d))
