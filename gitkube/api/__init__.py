"""Kubernetes v1 objects: which documents are valid objects, and their Kubernetes JSON."""
from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from gitkube.api.errors import InvalidInput, Problem
from gitkube.api.labels import Selector, parse_selector
from gitkube.api.models import (
    API_VERSIONS,
    KINDS,
    NAMESPACED,
    Container,
    ContainerPort,
    ContainerState,
    ContainerStatus,
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSubset,
    EnvVar,
    Event,
    EventSource,
    K8sModel,
    KubeObject,
    Namespace,
    Node,
    NodeAddress,
    NodeCondition,
    NodeStatus,
    ObjectMeta,
    ObjectReference,
    OwnerReference,
    Pod,
    PodCondition,
    PodSpec,
    PodStatus,
    PodTemplateSpec,
    Probe,
    Deployment,
    LabelSelector,
    ReplicaSet,
    ReplicationController,
    ReplicationControllerSpec,
    ReplicationControllerStatus,
    Service,
    ServicePort,
    ServiceSpec,
    Volume,
    VolumeMount,
    default_pull_policy,
)
from gitkube.api.models import ConfigMap, Secret
from gitkube.api.config import HIDDEN, redact
from gitkube.api.quantity import cpu_millis, memory_bytes, parse_quantity
from gitkube.api.validation import VALIDATORS

__all__ = [
    "KINDS", "NAMESPACED", "API_VERSION", "ObjectInvalid", "Problem", "InvalidInput", "KubeObject", "K8sModel",
    "parse_object", "to_k8s", "format_path", "object_key", "Selector", "parse_selector", "parse_quantity",
    "cpu_millis", "memory_bytes", "default_pull_policy",
    "Pod", "PodSpec", "PodStatus", "PodCondition", "PodTemplateSpec", "Container", "ContainerPort", "ContainerState",
    "ContainerStatus", "EnvVar", "Probe", "Volume", "VolumeMount", "ObjectMeta", "ObjectReference", "OwnerReference",
    "ReplicationController", "ReplicationControllerSpec", "ReplicationControllerStatus", "Service", "ServicePort",
    "ServiceSpec", "Namespace", "Node", "NodeAddress", "NodeCondition", "NodeStatus", "Event", "EventSource",
    "Endpoints", "EndpointSubset", "EndpointAddress", "EndpointPort", "API_VERSIONS", "Deployment", "ReplicaSet",
    "LabelSelector",
    "ConfigMap", "Secret", "redact",
]

API_VERSION = "v1"

Loc = tuple[str | int, ...]

# A field name (as opposed to a map key such as a label) prints as `.name`; anything else as `[key]`,
# which is how Kubernetes' field.Path prints map keys.
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def format_path(loc: Loc) -> str:
    """Renders a location tuple the way Kubernetes names a field: `spec.containers[0].ports[1].hostPort`."""
    out = []
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _FIELD_NAME.match(part):
            out.append(("." if out else "") + part)
        else:
            out.append(f"[{part}]")
    return "".join(out)


class ObjectInvalid(ValueError):
    """A document is not a valid object; `.errors` lists every (field path, message), `.locs` the raw locations."""

    def __init__(self, locs: list[tuple[Loc, str]], kind: str | None = None, name: str | None = None):
        self.locs = locs
        self.errors: list[tuple[str, str]] = [(format_path(loc), msg) for loc, msg in locs]
        self.kind, self.name = kind, name
        what = f"{kind or 'object'} {name!r}" if name else (kind or "object")
        super().__init__(f"{what} is invalid: " + "; ".join(f"{p or '<document>'}: {m}" for p, m in self.errors))


def _pydantic_message(err: dict[str, Any], hide: bool = False) -> str:
    t = err["type"]
    if hide:
        err = {**err, "input": _Hidden(err.get("input"))}
    if t == "extra_forbidden":
        return f'unknown field "{err["loc"][-1]}"'
    if t == "missing":
        return "Required value"
    if t == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        expected = expected.replace(" or ", ", ").replace("'", '"')
        return f'Unsupported value: {_show(err.get("input"))}: supported values: {expected}'
    if t == "value_error":
        return f'Invalid value: {_show(err.get("input"))}: {err["ctx"]["error"]}'
    kind = {
        "int_type": "an integer", "string_type": "a string", "bool_type": "a boolean", "dict_type": "an object",
        "model_type": "an object", "list_type": "a list", "tuple_type": "a list", "model_attributes_type": "an object",
    }.get(t)
    if kind:
        return f"Invalid value: {_show(err.get('input'))}: expected {kind}, got {_type_name(err.get('input'))}"
    return err["msg"]


class _Hidden:
    """A value shown as `<secret contents redacted>` whose type still names the original's."""

    def __init__(self, v: Any):
        self.v = v


def _type_name(v: Any) -> str:
    if isinstance(v, _Hidden):
        return _type_name(v.v)
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object",
            type(None): "null"}.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    if isinstance(v, _Hidden):
        return f'"{HIDDEN}"'
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (dict, list)):
        return _type_name(v)
    if v is None:
        return "null"
    return str(v).lower() if isinstance(v, bool) else str(v)


def parse_object(doc: Any) -> KubeObject:
    """Decides whether one document is a valid v1 object, filling Kubernetes' defaults; raises ObjectInvalid with every error."""
    if not isinstance(doc, dict):
        raise ObjectInvalid([((), f"expected an object (a mapping), got {_type_name(doc)}")])
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    head: list[tuple[Loc, str]] = []
    # Each kind lives in one group/version: core `v1`, or `apps/v1` for ReplicaSet and Deployment.
    want = API_VERSIONS.get(kind, API_VERSION) if isinstance(kind, str) and kind in KINDS else None
    if api_version is None:
        head.append((("apiVersion",), "Required value"))
    elif want is not None and api_version != want:
        head.append((("apiVersion",), f'Unsupported value: {_show(api_version)}: supported values: "{want}"'))
    elif want is None and (not isinstance(api_version, str) or api_version not in (API_VERSION, *API_VERSIONS.values())):
        head.append((("apiVersion",), f'Unsupported value: {_show(api_version)}: supported values: "v1", "apps/v1"'))
    if kind is None:
        head.append((("kind",), "Required value"))
    elif not isinstance(kind, str) or kind not in KINDS:
        head.append((("kind",), f'Unsupported value: {_show(kind)}: supported values: '
                                + ", ".join(f'"{k}"' for k in KINDS)))
    if head:
        raise ObjectInvalid(head, kind if isinstance(kind, str) else None, name if isinstance(name, str) else None)
    model = KINDS[kind]
    if kind in NAMESPACED and isinstance(meta, dict) and not meta.get("namespace"):
        # A missing namespace means `default`, as kubectl does with the default context.
        doc = {**doc, "metadata": {**meta, "namespace": "default"}}
    try:
        obj = model.model_validate(doc)
    except ValidationError as e:
        locs: list[tuple[Loc, str]] = []
        seen = set()
        for err in e.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            # A Secret's value never appears in a message.
            item = (loc, _pydantic_message(err, kind == "Secret" and loc[:1] in (("data",), ("stringData",))))
            if item not in seen:
                seen.add(item)
                locs.append(item)
        raise ObjectInvalid(locs, kind, name if isinstance(name, str) else None) from None
    errs = VALIDATORS[kind](obj)
    if errs:
        raise ObjectInvalid(errs, kind, name if isinstance(name, str) else None)
    return obj  # type: ignore[return-value]


def to_k8s(obj: K8sModel) -> dict[str, Any]:
    """Gives the Kubernetes JSON of an object (defaults included, unset fields left out)."""
    return obj.model_dump(mode="json", exclude_none=True, by_alias=True)


def object_key(obj: KubeObject) -> tuple[str, str, str]:
    """Gives an object's identity: (kind, namespace or "", name)."""
    return (obj.kind, obj.metadata.namespace or "", obj.metadata.name or "")
