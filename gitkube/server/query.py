"""What a read of the API returns: objects of a resource in a namespace (or all), filtered by label and field
selectors, shaped as Kubernetes serves them. Shared by the API server and `gitkube get`, so both tell one story."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from gitkube.api import parse_selector
from gitkube.api.printers import kube_object
from gitkube.api.resources import Resource

# Field selectors each kind answers (beyond metadata.name and metadata.namespace, which every kind has), as the
# Kubernetes API server registers them.
FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "status.phase",
            "status.podIP", "status.nominatedNodeName"),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
              "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
              "reportingComponent", "source", "type"),
    "Node": ("spec.unschedulable",),
    "Namespace": ("status.phase",),
    "ReplicationController": ("status.replicas",),
    "Service": ("spec.clusterIP", "spec.type"),
}
DEFAULT_NAMESPACE = "default"


class BadRequest(ValueError):
    """A request the API refuses as Kubernetes does (400 BadRequest), with its message."""


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str


def parse_field_selector(text: str | None, kind: str) -> list[FieldRequirement]:
    """Decides the requirements of a fieldSelector (`a=b,c!=d`, `==` same as `=`); unknown fields are refused."""
    out: list[FieldRequirement] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            field, value = part.split("!=", 1)
            op = "!="
        elif "==" in part:
            field, value = part.split("==", 1)
            op = "="
        elif "=" in part:
            field, value = part.split("=", 1)
            op = "="
        else:
            raise BadRequest(f'invalid selector: \'{text}\'; can\'t understand \'{part}\'')
        field = field.strip()
        if field not in ("metadata.name", "metadata.namespace") + FIELDS.get(kind, ()):
            raise BadRequest(f'field label not supported: {field}')
        out.append(FieldRequirement(field, op, value.strip()))
    return out


def field_value(obj: Mapping, field: str) -> str:
    """Decides the string a field selector compares: booleans as true/false, absent as ''."""
    if field == "source" and obj.get("kind") == "Event":
        return str((obj.get("source") or {}).get("component", ""))
    cur: object = obj
    for part in field.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if field == "metadata.namespace" and cur is None:
        return ""
    return "" if cur is None else str(cur)


def fields_match(obj: Mapping, reqs: Iterable[FieldRequirement]) -> bool:
    """Decides whether an object meets every field requirement. An event recorded without its object's uid
    (gitkube records some by name) matches any involvedObject.uid, as `gitkube describe` reads them."""
    for r in reqs:
        have = field_value(obj, r.field)
        if r.field == "involvedObject.uid" and have == "" and r.op == "=":
            continue
        if (have == r.value) != (r.op == "="):
            return False
    return True


def label_matcher(text: str | None) -> Callable[[Mapping], bool] | None:
    """A predicate for a labelSelector, or None when there is none; a bad one is a BadRequest."""
    if not text:
        return None
    try:
        sel = parse_selector(text)
    except ValueError as e:
        raise BadRequest(f"unable to parse requirement: {e}") from None
    return lambda obj: sel.matches((obj.get("metadata") or {}).get("labels") or {})


def default_namespace(created: str | None) -> dict:
    """The `default` namespace every cluster has, when Git does not declare it (objects live there all the same)."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": DEFAULT_NAMESPACE, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, "gitkube:namespace/default")),
                         "resourceVersion": "1", "creationTimestamp": created or "1970-01-01T00:00:00Z",
                         "labels": {"kubernetes.io/metadata.name": DEFAULT_NAMESPACE}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def stored(store, res: Resource, namespace: str | None) -> list[dict]:
    """Decides which stored objects of a resource a read sees, namespace None meaning all, sorted by key."""
    if res.kind == "Event":
        return store.events(namespace=namespace)
    objs = store.list(res.kind, namespace=namespace if res.namespaced else None)
    if res.kind == "Namespace" and not any(o["metadata"]["name"] == DEFAULT_NAMESPACE for o in objs):
        objs = sorted([*objs, default_namespace(store.first_revision_time())],
                      key=lambda o: o["metadata"]["name"])
    return objs


def select(store, res: Resource, namespace: str | None, label_selector: str | None = None,
           field_selector: str | None = None) -> list[dict]:
    """The objects of a list request, served shape (kube_object), after label and field selectors."""
    labels = label_matcher(label_selector)
    fields = parse_field_selector(field_selector, res.kind)
    out = []
    for o in stored(store, res, namespace):
        if labels is not None and not labels(o):
            continue
        o = kube_object(o)
        if fields and not fields_match(o, fields):
            continue
        out.append(o)
    return out


def matches(obj: Mapping, label_selector: str | None, fields: list[FieldRequirement]) -> bool:
    """Whether one (served) object passes a list's selectors: what a watch filters its events by."""
    labels = label_matcher(label_selector)
    return (labels is None or labels(obj)) and fields_match(obj, fields)


def get_one(store, res: Resource, namespace: str | None, name: str) -> dict | None:
    """One object by name, served shape, or None."""
    if res.kind in ("Event", "Namespace"):
        obj = next((o for o in stored(store, res, namespace) if o["metadata"]["name"] == name), None)
    else:
        obj = store.get(res.kind, namespace or DEFAULT_NAMESPACE, name)
    return kube_object(obj) if obj is not None else None
