"""Which part of an object (as Kubernetes JSON) its author owns, and how an object is keyed: one rule for the
store (what a revision sync compares) and the diff (what it shows)."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

# Kinds without a namespace; everything else defaults to "default".
CLUSTER_SCOPED = frozenset({"Node", "Namespace"})
# Metadata the server owns: never taken from Git, never part of a comparison.
SERVER_METADATA = frozenset({"uid", "creationTimestamp", "generation", "resourceVersion", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "managedFields", "selfLink"})


def dict_key(obj: Mapping) -> tuple[str, str, str]:
    """An object's (kind, namespace, name): namespace '' for cluster-scoped kinds, 'default' when unset."""
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    ns = "" if kind in CLUSTER_SCOPED else (meta.get("namespace") or "default")
    return kind, ns, meta.get("name", "")


def authored_content(obj: Mapping) -> dict:
    """The part of an object its author owns: all of it but status and server-owned metadata, namespace settled."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_METADATA}
    if obj.get("kind", "") in CLUSTER_SCOPED:
        meta.pop("namespace", None)
    elif not meta.get("namespace"):
        meta["namespace"] = "default"
    out["metadata"] = meta
    return out


def content_hash(value: Any) -> str:
    """Decides a stable hash of JSON data (key order does not matter): what the store and the manifest cache compare."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(data.encode(), digest_size=16).hexdigest()


def without_controller_fields(stored: list[dict], desired: list[dict]) -> list[dict]:
    """Stored objects minus what the controller added (a pod's binding, an adopting owner): not Git's changes."""
    want = {(d.get("kind"), (d.get("metadata") or {}).get("namespace") or "default", d["metadata"].get("name")): d for d in desired}
    out = []
    for o in stored:
        d = want.get((o.get("kind"), o["metadata"].get("namespace") or "default", o["metadata"].get("name")))
        if o.get("kind") == "Pod" and d is not None:
            o = dict(o)
            if "nodeName" not in (d.get("spec") or {}) and "nodeName" in (o.get("spec") or {}):
                o["spec"] = {k: v for k, v in o["spec"].items() if k != "nodeName"}
            if "ownerReferences" not in d["metadata"] and "ownerReferences" in o["metadata"]:
                o["metadata"] = {k: v for k, v in o["metadata"].items() if k != "ownerReferences"}
        elif o.get("kind") == "Deployment" and d is not None:
            # The revision annotation is the Deployment controller's, unless Git wrote it.
            rev_key = "deployment.kubernetes.io/revision"
            ann = o["metadata"].get("annotations") or {}
            if rev_key in ann and rev_key not in (d["metadata"].get("annotations") or {}):
                ann = {k: v for k, v in ann.items() if k != rev_key}
                o = {**o, "metadata": {**o["metadata"], "annotations": ann}}
                if not ann:
                    o["metadata"].pop("annotations")
        elif o.get("kind") == "Service" and d is not None:
            # Allocated ClusterIP and NodePorts are the controller's, unless Git asked for them.
            o, dspec = dict(o), d.get("spec") or {}
            spec = dict(o.get("spec") or {})
            if "clusterIP" not in dspec:
                spec.pop("clusterIP", None)
            dports = {p.get("port"): p for p in dspec.get("ports") or []}
            if "ports" in spec:
                spec["ports"] = [({k: v for k, v in p.items() if k != "nodePort"} if "nodePort" not in dports.get(p.get("port"), {}) else p)
                                 for p in spec.get("ports") or []]
            o["spec"] = spec
        out.append(o)
    return out
