"""ReplicationController manager: which pods to create, delete, adopt and release, and the RC's status.

Follows Kubernetes' replication manager (one pass of syncReplicationController):
- only active pods count: not Succeeded/Failed and not being deleted;
- claim (ControllerRefManager): an active pod owned by this RC is kept while the selector
  matches and released when it no longer does; an active orphan whose labels match is
  adopted; a pod owned by another controller is left alone. An RC being deleted neither
  adopts, releases, creates nor deletes;
- too few pods: create the difference (at most `burst_replicas` per pass, k8s' burstReplicas),
  named `<rc>-<5 chars>` like metadata.generateName;
- too many: delete the surplus, the least valuable first (k8s' ActivePods ranking);
- status from the claimed pods as they are now (the next pass sees the effect of this one).

A template change only affects pods created afterwards (RC semantics: no rolling update).
Glue: RCInfo from the RC model (uid, namespace, name, metadata.generation, spec.replicas,
spec.selector, spec.template.metadata.labels, spec.minReadySeconds). Pods are the stored pods of
the namespace, read through `gitkube.api.views.PodView` (owner_uid, phase, ready, ready_since,
node, deleting, created, restart_count, labels).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from gitkube.api.views import TERMINAL_PHASES, PodView

__all__ = [
    "GENERATE_NAME_ALPHABET",
    "RCInfo",
    "RCStatus",
    "RCDecision",
    "selector_matches",
    "generate_name",
    "deletion_rank",
    "manage_replication_controller",
]

# k8s.io/apimachinery/pkg/util/rand: consonants and digits without look-alikes (no vowels, no 0/1/3).
GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_RANDOM_LENGTH = 5
_MAX_PREFIX = 63 - _RANDOM_LENGTH  # k8s' maxGeneratedNameLength
BURST_REPLICAS = 500

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


@dataclass(frozen=True)
class RCInfo:
    """A ReplicationController: what it wants."""

    uid: str
    namespace: str
    name: str
    generation: int = 1
    replicas: int = 1
    selector: Mapping[str, str] = field(default_factory=dict)
    template_labels: Mapping[str, str] = field(default_factory=dict)
    min_ready_seconds: int = 0
    deleting: bool = False


@dataclass(frozen=True)
class RCStatus:
    """ReplicationControllerStatus."""

    replicas: int
    fully_labeled_replicas: int
    ready_replicas: int
    available_replicas: int
    observed_generation: int


@dataclass(frozen=True)
class RCDecision:
    """What one pass of the manager decided for one RC."""

    rc_uid: str
    create: tuple[str, ...]  # names of the pods to create from the template
    delete: tuple[PodView, ...]  # most deletable first
    adopt: tuple[PodView, ...]  # set our controller ownerReference
    release: tuple[PodView, ...]  # remove our ownerReference
    status: RCStatus

    @property
    def create_count(self) -> int:
        return len(self.create)

    @property
    def empty(self) -> bool:
        """True when nothing but the status is to be written."""
        return not (self.create or self.delete or self.adopt or self.release)


def selector_matches(selector, labels: Mapping[str, str]) -> bool:
    """Whether an RC's equality selector (a dict) or a ReplicaSet's set-based one (anything with `matches`, e.g.
    gitkube.api.labels.Selector) selects these labels (an empty selector selects nothing)."""
    if hasattr(selector, "matches"):
        return not selector.empty() and selector.matches(labels)
    # k8s would treat an empty set as "everything", but validation never lets an RC have one;
    # selecting nothing is the safe reading if one slips through.
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def generate_name(prefix: str, rng: random.Random, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A metadata.generateName-style name `<prefix><5 chars>` not in `taken`."""
    prefix = prefix[:_MAX_PREFIX]
    while True:
        name = prefix + "".join(rng.choice(GENERATE_NAME_ALPHABET) for _ in range(_RANDOM_LENGTH))
        if name not in taken:
            return name


def deletion_rank(pod: PodView) -> tuple:
    """Sort key putting the pod that should be deleted first first (k8s' controller.ActivePods)."""
    since = pod.ready_since  # None unless Ready
    return (
        pod.node is not None,  # unassigned < assigned
        _PHASE_RANK.get(pod.phase, 1),  # Pending < Unknown < Running
        pod.ready,  # not ready < ready
        (0, 0.0) if since is None else (1, -since),  # both ready: ready for less time first
        -pod.restart_count,  # more restarts first
        -pod.created,  # newer first
        pod.name,  # only for a stable order
    )


def _available(pod: PodView, min_ready_seconds: int, now: float) -> bool:
    if not pod.ready:
        return False
    if min_ready_seconds <= 0:
        return True
    return pod.ready_since is not None and pod.ready_since + min_ready_seconds < now


def manage_replication_controller(
    rc: RCInfo,
    pods: Sequence[PodView],
    now: float,
    rng: random.Random | None = None,
    burst_replicas: int = BURST_REPLICAS,
) -> RCDecision:
    """Which pods the RC creates, deletes, adopts and releases in this pass, and its status."""
    rng = rng or random.Random()
    claimed: list[PodView] = []
    adopt: list[PodView] = []
    release: list[PodView] = []
    for pod in pods:
        if pod.phase in TERMINAL_PHASES or pod.deleting:
            continue
        matches = selector_matches(rc.selector, pod.labels)
        if pod.owner_uid == rc.uid:
            if matches:
                claimed.append(pod)
            elif not rc.deleting:
                release.append(pod)
        elif pod.owner_uid is None and matches and not rc.deleting:
            adopt.append(pod)
            claimed.append(pod)

    create: list[str] = []
    delete: list[PodView] = []
    if not rc.deleting:
        diff = len(claimed) - max(rc.replicas, 0)
        if diff < 0:
            taken = {p.name for p in pods}
            for _ in range(min(-diff, burst_replicas)):
                name = generate_name(f"{rc.name}-", rng, taken)
                taken.add(name)
                create.append(name)
        elif diff > 0:
            delete = sorted(claimed, key=deletion_rank)[: min(diff, burst_replicas)]

    status = RCStatus(
        replicas=len(claimed),
        fully_labeled_replicas=sum(
            all(p.labels.get(k) == v for k, v in rc.template_labels.items()) for p in claimed
        ),
        ready_replicas=sum(p.ready for p in claimed),
        available_replicas=sum(_available(p, rc.min_ready_seconds, now) for p in claimed),
        observed_generation=rc.generation,
    )
    return RCDecision(rc.uid, tuple(create), tuple(delete), tuple(adopt), tuple(release), status)
