"""Sync and health status, as Argo CD words them, from stored objects (pure).

- Sync: Synced when the stored objects are what the revision declares, OutOfSync with what differs, or the
  revision refused with its problems.
- Health: Degraded (with reasons) when a node is unreachable or not Ready, a pod cannot pull its image, crash-loops,
  cannot be created, failed, or cannot be scheduled; Progressing while pods are still being created, started,
  terminated or are not Ready yet, or an RC has fewer ready replicas than it wants; Healthy otherwise."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from gitkube.api.views import NodeView, ObjectView, PodView

DEGRADED_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "CrashLoopBackOff",
                              "CreateContainerError", "InvalidImageName"})
FAILING_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "CrashLoopBackOff"})
SYNCED, OUT_OF_SYNC = "Synced", "OutOfSync"
HEALTHY, PROGRESSING, DEGRADED = "Healthy", "Progressing", "Degraded"


@dataclass(frozen=True)
class Health:
    status: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncStatus:
    status: str
    applied: str | None = None  # the revision applied
    head: str | None = None  # the revision the source names now
    differences: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()  # the head revision's problems, when it is refused


@dataclass(frozen=True)
class Summary:
    sync: SyncStatus
    health: Health
    notes: tuple[str, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        """0 Synced and Healthy, 1 anything else (OutOfSync, refused, Progressing, Degraded)."""
        return 0 if self.sync.status == SYNCED and self.health.status == HEALTHY else 1

    def lines(self) -> list[str]:
        s, h = self.sync, self.health
        out = [f"revision applied: {s.applied or '(none)'}"]
        if s.head and s.head != s.applied:
            out.append(f"revision at the source: {s.head}")
        if s.refused:
            out.append(f"sync: {OUT_OF_SYNC}: revision {str(s.head)[:12]} refused ({len(s.refused)} problem(s)); "
                       "the last good revision stays applied")
            out += [f"  {p}" for p in s.refused]
        else:
            out.append(f"sync: {s.status}" + (f" ({len(s.differences)} difference(s))" if s.differences else ""))
            out += [f"  {d}" for d in s.differences]
        out.append(f"health: {h.status}")
        out += [f"  {r}" for r in h.reasons]
        out += list(self.notes)
        return out


def failing_waits(pod: PodView) -> dict[str, str]:
    """Containers of the pod waiting for a reason that will not resolve by itself (image pull, crash loop)."""
    return {c: r for c, r in pod.waiting_reasons().items() if r in FAILING_WAITING}


def _pod_health(p: PodView) -> tuple[list[str], list[str]]:
    degraded, progressing = [], []
    key = f"pod {p.namespace}/{p.name}"
    if p.deleting:
        progressing.append(f"{key}: Terminating")
        return degraded, progressing
    waits = p.waiting_reasons()
    bad = {c: r for c, r in waits.items() if r in DEGRADED_WAITING}
    sched = p.condition("PodScheduled")
    if bad:
        degraded.append(f"{key}: " + ", ".join(f"{c} {r}" for c, r in sorted(bad.items())))
    elif sched.get("status") == "False":
        degraded.append(f"{key}: Unschedulable: {sched.get('message', '')}")
    elif p.phase == "Failed":
        degraded.append(f"{key}: Failed")
    elif p.phase != "Succeeded" and not (p.phase == "Running" and p.ready):
        why = ", ".join(f"{c} {r}" for c, r in sorted(waits.items()))
        progressing.append(f"{key}: {p.phase}" + (f" ({why})" if why else "") + ("" if p.phase != "Running" else " not Ready"))
    return degraded, progressing


def health(pods: Iterable[Mapping], nodes: Iterable[Mapping], rcs: Iterable[Mapping] = (),
           heartbeats: Mapping[str, Mapping] | None = None) -> Health:
    """The cluster's health from its stored Nodes, pods and ReplicationControllers, and the controller's heartbeat
    records (a node whose last heartbeat failed is unreachable, even while its grace period keeps it Ready)."""
    degraded, progressing = [], []
    for n in map(NodeView, nodes):
        hb = (heartbeats or {}).get(n.name) or {}
        if not n.ready:
            c = n.condition("Ready")
            degraded.append(f"node {n.name}: {c.get('status', 'Unknown')} {c.get('reason', '')}: {c.get('message', '')}".rstrip(": "))
        elif hb.get("last_error"):
            degraded.append(f"node {n.name}: unreachable: {hb['last_error']}")
    for p in map(PodView, pods):
        d, g = _pod_health(p)
        degraded += d
        progressing += g
    for rc in map(ObjectView, rcs):
        want, have = rc.spec.get("replicas", 1), rc.status.get("readyReplicas") or 0
        if not rc.deleting and have < want:
            progressing.append(f"replicationcontroller {rc.namespace}/{rc.name}: {have}/{want} ready")
    if degraded:
        return Health(DEGRADED, tuple(degraded + progressing))
    if progressing:
        return Health(PROGRESSING, tuple(progressing))
    return Health(HEALTHY)
