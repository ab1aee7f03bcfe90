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
