"""Read-only views over stored objects (Kubernetes JSON dicts), in the manner of kopf's Body/Meta/Spec: one place that
knows where a pod's readiness, IP, node, phase, conditions and owner live, and one reading of Kubernetes timestamps.

Every decision that used to be repeated as `.get("status") or {}` walking is a property here. Views never copy or
change the object they wrap: `raw` is the stored dict itself."""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

_EMPTY: Mapping[str, Any] = {}
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


# -- time ---------------------------------------------------------------------------------------------------
def parse_time(ts: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (Docker's nanosecond form too), None when unset or zero."""
    if not ts or ts.startswith("0001-01-01"):
        return None
    return _parse_time(ts)


@functools.lru_cache(maxsize=65536)
def _parse_time(ts: str) -> float | None:
    # Every pass reads the same few thousand timestamps (containers' start times, conditions): strptime was a
    # fifth of a no-op pass at 500 pods.
    m = _RFC3339.match(ts)
    if not m:
        return None
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    frac = float("0" + m.group(2)) if m.group(2) else 0.0
    tz = m.group(3) or "Z"
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        base -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return base + frac


def iso(t: float | None) -> str | None:
    """RFC 3339 (seconds, UTC) of an epoch time, as Kubernetes prints timestamps."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the views ----------------------------------------------------------------------------------------------
def _d(v: Any) -> Mapping[str, Any]:
    # Stored objects are plain dicts: the exact type check first (isinstance against the Mapping ABC was a
    # quarter of a no-op pass's own time at 330 pods).
    return v if type(v) is dict or isinstance(v, Mapping) else _EMPTY


def find_condition(status: Mapping | None, type_: str) -> Mapping[str, Any]:
    """The condition of that type in a status ({} when absent)."""
    for c in _d(status).get("conditions") or ():
        if c.get("type") == type_:
            return c
    return _EMPTY


class ObjectView:
    """Any stored object: metadata, spec and status as read-only mappings."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = raw

    @property
    def kind(self) -> str:
        return self.raw.get("kind", "")

    @property
    def meta(self) -> Mapping[str, Any]:
        return _d(self.raw.get("metadata"))

    @property
    def spec(self) -> Mapping[str, Any]:
        return _d(self.raw.get("spec"))

    @property
    def status(self) -> Mapping[str, Any]:
        return _d(self.raw.get("status"))

    @property
    def name(self) -> str:
        return self.meta.get("name", "")

    @property
    def namespace(self) -> str:
        return self.meta.get("namespace") or "default"

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    @property
    def uid(self) -> str:
        return self.meta.get("uid") or ""

    @property
    def labels(self) -> Mapping[str, str]:
        return _d(self.meta.get("labels"))

    @property
    def deleting(self) -> bool:
        return bool(self.meta.get("deletionTimestamp"))

    @property
    def created(self) -> float:
        return parse_time(self.meta.get("creationTimestamp")) or 0.0

    @property
    def owner(self) -> Mapping[str, Any] | None:
        """The controlling ownerReference (controller: true), if any."""
        return next((r for r in self.meta.get("ownerReferences") or () if r.get("controller")), None)

    @property
    def owner_uid(self) -> str | None:
        o = self.owner
        return o.get("uid") if o else None

    @property
    def conditions(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(self.status.get("conditions") or ())

    def condition(self, type_: str) -> Mapping[str, Any]:
        return find_condition(self.status, type_)

    def condition_true(self, type_: str) -> bool:
        return self.condition(type_).get("status") == "True"


class PodView(ObjectView):
    """A stored Pod."""

    __slots__ = ()

    @property
    def node(self) -> str | None:
        return self.spec.get("nodeName") or None

    @property
    def phase(self) -> str:
        return self.status.get("phase") or "Pending"

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def ready(self) -> bool:
        return self.condition_true("Ready")

    @property
    def ready_since(self) -> float | None:
        """When the pod became Ready (the Ready condition's lastTransitionTime), None when it is not Ready."""
        return parse_time(self.condition("Ready").get("lastTransitionTime")) if self.ready else None

    @property
    def ip(self) -> str | None:
        return self.status.get("podIP") or None

    @property
    def host_network(self) -> bool:
        return bool(self.spec.get("hostNetwork"))

    @property
    def hostname(self) -> str | None:
        """spec.hostname (the pod's own hostname, and its DNS name under a headless Service of its subdomain)."""
        return self.spec.get("hostname") or None

    @property
    def subdomain(self) -> str | None:
        return self.spec.get("subdomain") or None

    @property
    def containers(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(self.spec.get("containers") or ())

    @property
    def container_ports(self) -> tuple[Mapping[str, Any], ...]:
        """Every container's ports (containerPort, name, protocol, hostPort...), containers in order."""
        return tuple(x for c in self.spec.get("containers") or () for x in c.get("ports") or ())

    def container_port(self, name: str, protocol: str = "TCP") -> int | None:
        """The containerPort of the port with this name and protocol (TCP when unset), None when no container
        declares it (k8s' podutil.FindPort for a named targetPort)."""
        for c in self.spec.get("containers") or ():
            for x in c.get("ports") or ():
                if x.get("name") == name and x.get("protocol", "TCP") == protocol:
                    return x["containerPort"]
        return None

    @property
    def container_statuses(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(self.status.get("containerStatuses") or ())

    @property
    def restart_count(self) -> int:
        return sum(int(cs.get("restartCount") or 0) for cs in self.container_statuses)

    def waiting_reasons(self) -> dict[str, str]:
        """Container name -> the reason it waits (ErrImagePull, CrashLoopBackOff, ...), for waiting containers."""
        out = {}
        for cs in self.container_statuses:
            w = _d(_d(cs.get("state")).get("waiting"))
            if w.get("reason"):
                out[cs.get("name", "")] = w["reason"]
        return out


class NodeView(ObjectView):
    """A stored Node."""

    __slots__ = ()

    @property
    def ready(self) -> bool:
        return self.condition_true("Ready")

    @property
    def ready_status(self) -> str:
        return self.condition("Ready").get("status") or "Unknown"

    @property
    def unschedulable(self) -> bool:
        return bool(self.spec.get("unschedulable"))

    @property
    def allocatable(self) -> Mapping[str, Any]:
        return _d(self.status.get("allocatable"))


class ServiceView(ObjectView):
    """A stored Service."""

    __slots__ = ()

    @property
    def cluster_ip(self) -> str | None:
        return self.spec.get("clusterIP") or None

    @property
    def selector(self) -> Mapping[str, str] | None:
        return self.spec.get("selector") or None

    @property
    def ports(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(self.spec.get("ports") or ())

    @property
    def headless(self) -> bool:
        return self.spec.get("clusterIP") == "None"


def pods(objs) -> list[PodView]:
    return [PodView(o) for o in objs]
