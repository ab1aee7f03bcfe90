"""The Deployment controller, pure: from a Deployment, the ReplicaSets it owns and their pods' readiness, how
many pods each ReplicaSet should have after this pass, which ReplicaSet to create or prune, and the
Deployment's status. It follows Kubernetes' deployment controller (pkg/controller/deployment):

- the new ReplicaSet is the one whose `pod-template-hash` is the template's hash; it is named
  `NAME-<hash>` and gets revision max(old revisions) + 1 (`deployment.kubernetes.io/revision`);
- RollingUpdate: maxSurge is rounded up and maxUnavailable down from percentages of spec.replicas
  (both 0 after rounding: maxUnavailable 1); the new ReplicaSet grows while the sum of all ReplicaSets'
  replicas stays <= replicas + maxSurge, old ones shrink (unhealthy pods first, then the oldest ReplicaSet)
  while the available pods stay >= replicas - maxUnavailable (reconcileNewReplicaSet/reconcileOldReplicaSets);
- Recreate: old ReplicaSets go to 0, and only when none of their pods runs any more does the new one
  scale up to spec.replicas;
- a change of spec.replicas mid-rollout is spread over the active ReplicaSets in proportion (scale());
- paused: no new ReplicaSet and no rollout progress, only scaling;
- status and the Available/Progressing conditions as syncRolloutStatus writes them (reasons
  NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable,
  ProgressDeadlineExceeded, DeploymentPaused);
- old ReplicaSets with no replicas beyond revisionHistoryLimit are pruned, oldest revision first.

A pod is available once Ready for minReadySeconds. Both steps a Kubernetes controller takes in two
syncs (scale the new ReplicaSet up, then the old ones down) are taken in one pass here: the second sees
the same pod readiness the first did, exactly as Kubernetes' immediate resync would.

gitkube's addition (opt-in, annotation `gitkube.io/rollback-on-failure: "true"`): when the new ReplicaSet
exceeds its progress deadline, the last available ReplicaSet is scaled back to spec.replicas and the failed
one to 0, marked with `gitkube.io/rolled-back-generation` so that later passes leave it at 0 until the
Deployment's spec changes (a new commit).

The pod-template hash (`pod_template_hash`) takes extra inputs, e.g. the data of ConfigMaps the template
references, so that a change to those rolls the Deployment like a template change does.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "REVISION", "DESIRED_REPLICAS", "MAX_REPLICAS", "CHANGE_CAUSE", "GIT_COMMIT", "ROLLBACK_ON_FAILURE",
    "ROLLED_BACK_GENERATION", "TEMPLATE_HASH_LABEL",
    "pod_template_hash", "scaled_value", "resolve_fenceposts", "RSView", "DeploymentView", "Condition",
    "RSChange", "DeploymentDecision", "plan_deployment", "rollout_summary",
]

TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
GIT_COMMIT = "gitkube.io/git-commit"
ROLLBACK_ON_FAILURE = "gitkube.io/rollback-on-failure"
ROLLED_BACK_GENERATION = "gitkube.io/rolled-back-generation"

# k8s.io/apimachinery/pkg/util/rand.SafeEncodeString's alphabet: no vowels, no look-alikes.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def pod_template_hash(template: Mapping[str, Any], extra: Iterable[Any] = (), collision_count: int = 0) -> str:
    """The `pod-template-hash` of a pod template: 10 characters of a stable hash of the template (without its
    own hash label), of `extra` (inputs outside the template that should roll the pods when they change, such
    as referenced ConfigMap data) and of the collision count, in Kubernetes' safe alphabet."""
    tmpl = json.loads(json.dumps(template))
    labels = (tmpl.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(TEMPLATE_HASH_LABEL, None)
    data = json.dumps([tmpl, list(extra), collision_count], sort_keys=True, separators=(",", ":"), default=str)
    n = int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8).digest(), "big")
    out = []
    for _ in range(10):
        n, r = divmod(n, len(_SAFE))
        out.append(_SAFE[r])
    return "".join(out)


def scaled_value(v: int | str, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, `N%` of total rounded up or down."""
    if isinstance(v, int):
        return v
    pct = int(v.rstrip("%"))
    exact = pct * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_fenceposts(max_surge: int | str, max_unavailable: int | str, desired: int) -> tuple[int, int]:
    """deploymentutil.ResolveFenceposts: (surge rounded up, unavailable rounded down); both 0 gives unavailable 1."""
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


@dataclass(frozen=True)
class RSView:
    """A ReplicaSet the Deployment owns, with its pods as this pass sees them."""

    name: str
    template_hash: str
    replicas: int  # spec.replicas
    revision: int = 0
    creation_time: float = 0.0
    pods: int = 0  # active pods (not terminating, not finished)
    ready: int = 0
    available: int = 0  # Ready for minReadySeconds
    running: int = 0  # pods still on a node, terminating ones included (Recreate waits for them)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def unhealthy(self) -> int:
        return max(self.replicas - self.available, 0)


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str
    last_update: float
    last_transition: float


@dataclass(frozen=True)
class DeploymentView:
    """What the planner reads of a Deployment."""

    name: str
    generation: int
    replicas: int
    template_hash: str
    strategy: str = "RollingUpdate"
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"
    min_ready_seconds: int = 0
    revision_history_limit: int = 10
    paused: bool = False
    progress_deadline_seconds: int = 600
    rollback_on_failure: bool = False
    git_commit: str | None = None
    change_cause: str | None = None
    conditions: Sequence[Condition] = ()
    last_status: Mapping[str, int] = field(default_factory=dict)  # readyReplicas, availableReplicas… last written


@dataclass(frozen=True)
class RSChange:
    """A ReplicaSet to create (`create`) or to update: replicas and annotations after this pass."""

    name: str
    template_hash: str
    replicas: int
    annotations: Mapping[str, str]
    create: bool = False


@dataclass
class DeploymentDecision:
    changes: list[RSChange] = field(default_factory=list)  # creates and updates, in order
    prune: list[str] = field(default_factory=list)  # old empty ReplicaSets beyond revisionHistoryLimit
    status: dict = field(default_factory=dict)  # DeploymentStatus JSON (times as epoch floats in conditions)
    conditions: list[Condition] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    revision: int = 0  # the new ReplicaSet's revision (the Deployment's annotation)
    new_rs: str | None = None
    rolled_back: bool = False  # the new template was refused: it failed and the Deployment runs an older one

    def replicas_of(self, name: str, default: int) -> int:
        for c in self.changes:
            if c.name == name:
                return c.replicas
        return default


# -- the planner ---------------------------------------------------------------------------------------------
class _Pass:
    """One sync of one Deployment: the ReplicaSets as they will be after this pass, and what changed."""

    def __init__(self, d: DeploymentView, rss: Sequence[RSView], now: float):
        self.d, self.now = d, now
        self.rs: dict[str, RSView] = {r.name: r for r in rss}
        self.changed: dict[str, RSChange] = {}
        self.decision = DeploymentDecision()
        self.surge, self.unavailable = resolve_fenceposts(d.max_surge, d.max_unavailable, d.replicas)
        if d.strategy != "RollingUpdate":
            self.surge, self.unavailable = 0, 0

    # ReplicaSets
    def new(self) -> RSView | None:
        return next((r for r in self.rs.values() if r.template_hash == self.d.template_hash), None)

    def olds(self) -> list[RSView]:
        """Old ReplicaSets, oldest first (controller.ReplicaSetsByCreationTimestamp)."""
        h = self.d.template_hash
        return sorted((r for r in self.rs.values() if r.template_hash != h), key=lambda r: (r.creation_time, r.name))

    def annotations(self, r: RSView, **extra: str) -> dict[str, str]:
        a = dict(r.annotations)
        a[DESIRED_REPLICAS] = str(self.d.replicas)
        a[MAX_REPLICAS] = str(self.d.replicas + self.surge)
        a.update(extra)
        return a

    def scale(self, name: str, replicas: int, **extra: str) -> bool:
        """Sets a ReplicaSet's replicas (and the desired/max-replicas annotations); True when its size changed."""
        r = self.rs[name]
        replicas = max(replicas, 0)
        ann = self.annotations(r, **extra)
        if replicas == r.replicas and ann == dict(r.annotations):
            return False
        if replicas != r.replicas:
            verb = "up" if replicas > r.replicas else "down"
            self.decision.events.append(("Normal", "ScalingReplicaSet",
                                         f"Scaled {verb} replica set {name} from {r.replicas} to {replicas}"))
        prev = self.changed.get(name)
        self.changed[name] = RSChange(name, r.template_hash, replicas, ann, create=bool(prev and prev.create))
        self.rs[name] = replace(r, replicas=replicas, annotations=ann)
        return replicas != r.replicas

    def create_new(self, replicas: int) -> RSView:
        revision = max((r.revision for r in self.rs.values()), default=0) + 1
        name = f"{self.d.name}-{self.d.template_hash}"
        ann = {REVISION: str(revision), DESIRED_REPLICAS: str(self.d.replicas),
               MAX_REPLICAS: str(self.d.replicas + self.surge)}
        if self.d.git_commit:
            ann[GIT_COMMIT] = self.d.git_commit
        if self.d.change_cause:
            ann[CHANGE_CAUSE] = self.d.change_cause
        r = RSView(name, self.d.template_hash, max(replicas, 0), revision, self.now, annotations=ann)
        self.rs[name] = r
        self.changed[name] = RSChange(name, r.template_hash, r.replicas, ann, create=True)
        self.decision.events.append(("Normal", "ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {r.replicas}"))
        self.set_progressing("True", "NewReplicaSetCreated", f'Created new replica set "{name}"', progress=True)
        return r

    def adopt_revision(self, new: RSView) -> RSView:
        """An old template back in use: its ReplicaSet takes the next revision (SetNewReplicaSetAnnotations)."""
        top = max((r.revision for r in self.rs.values() if r.name != new.name), default=0)
        extra = {}
        if new.revision <= top:
            extra[REVISION] = str(top + 1)
        if self.d.git_commit and new.annotations.get(GIT_COMMIT) != self.d.git_commit and extra:
            extra[GIT_COMMIT] = self.d.git_commit
        if extra:
            self.scale(new.name, new.replicas, **extra)
            new = self.rs[new.name] = replace(self.rs[new.name], revision=int(extra.get(REVISION, new.revision)))
        return new

    # conditions
    def cond(self, type_: str) -> Condition | None:
        for c in self.decision.conditions:
            if c.type == type_:
                return c
        return None

    def set_cond(self, type_: str, status: str, reason: str, message: str) -> None:
        old = self.cond(type_)
        conds = [c for c in self.decision.conditions if c.type != type_]
        transition = old.last_transition if old is not None and old.status == status else self.now
        if old is not None and old.status == status and old.reason == reason and old.message == message:
            conds.append(old)
        else:
            conds.append(Condition(type_, status, reason, message, self.now, transition))
        self.decision.conditions = conds

    def set_progressing(self, status: str, reason: str, message: str, progress: bool = False) -> None:
        self.set_cond("Progressing", status, reason, message)
        if progress:  # lastUpdateTime moves with every progress: the deadline counts from it
            c = self.cond("Progressing")
            assert c is not None
            self.decision.conditions = [x for x in self.decision.conditions if x.type != "Progressing"] + [
                replace(c, last_update=self.now)]


def _fraction(r: RSView, d: DeploymentView, surge: int, status_replicas: int) -> int:
    """getReplicaSetFraction: this ReplicaSet's share of a new Deployment size."""
    if d.replicas == 0:
        return -r.replicas
    deployment_replicas = d.replicas + surge
    try:
        annotated = int(r.annotations.get(MAX_REPLICAS, ""))
    except ValueError:
        annotated = status_replicas
    if annotated <= 0:
        return 0
    size = r.replicas * deployment_replicas / annotated
    return int(math.floor(size + 0.5) if size >= 0 else -math.floor(-size + 0.5)) - r.replicas


def _scaling_event(p: _Pass) -> bool:
    """isScalingEvent: an active ReplicaSet was sized for another spec.replicas."""
    for r in p.rs.values():
        if r.replicas > 0 and r.annotations.get(DESIRED_REPLICAS) not in (None, str(p.d.replicas)):
            return True
    return False


def _proportional_scale(p: _Pass, new: RSView | None) -> None:
    """deployment controller's scale(): resize when spec.replicas changed, mid-rollout in proportion."""
    d = p.d
    olds = sorted(p.olds(), key=lambda r: (-r.creation_time, r.name))  # newest first
    active = [r for r in ([new] if new else []) + olds if r.replicas > 0]
    if len(active) <= 1:
        target = active[0] if active else (new or (olds[0] if olds else None))
        if target is not None:
            p.scale(target.name, d.replicas)
        return
    if new is not None and new.annotations.get(DESIRED_REPLICAS) == str(d.replicas) and new.replicas == d.replicas \
            and new.available >= d.replicas:
        for r in olds:
            p.scale(r.name, 0)
        return
    if d.strategy != "RollingUpdate":
        return
    total = sum(r.replicas for r in active)
    allowed = d.replicas + p.surge if d.replicas > 0 else 0
    to_add = allowed - total
    if to_add > 0:
        active.sort(key=lambda r: (-r.replicas, -r.creation_time, r.name))
    elif to_add < 0:
        active.sort(key=lambda r: (-r.replicas, r.creation_time, r.name))
    added = 0
    sizes: dict[str, int] = {}
    status_replicas = d.last_status.get("replicas", 0)
    for r in active:
        prop = 0
        if to_add != 0 and r.replicas > 0 and added != to_add:
            frac = _fraction(r, d, p.surge, status_replicas)
            left = to_add - added
            prop = min(frac, left) if to_add > 0 else max(frac, left)
        sizes[r.name] = r.replicas + prop
        added += prop
    if added != to_add and active:
        sizes[active[0].name] = max(sizes[active[0].name] + to_add - added, 0)
    for r in active:
        p.scale(r.name, sizes[r.name])


def _rolling(p: _Pass, new: RSView) -> None:
    """rolloutRolling: scale the new ReplicaSet up within maxSurge, then old ones down within maxUnavailable."""
    d = p.d
    # reconcileNewReplicaSet
    if new.replicas > d.replicas:
        p.scale(new.name, d.replicas)
    elif new.replicas < d.replicas:
        current = sum(r.replicas for r in p.rs.values())
        max_total = d.replicas + p.surge
        if current < max_total:
            up = min(max_total - current, d.replicas - new.replicas)
            p.scale(new.name, new.replicas + up)
    new = p.rs[new.name]
    # reconcileOldReplicaSets
    olds = p.olds()
    if sum(r.replicas for r in olds) == 0:
        return
    all_pods = sum(r.replicas for r in p.rs.values())
    min_available = d.replicas - p.unavailable
    new_unavailable = new.replicas - new.available
    max_scaled_down = all_pods - min_available - new_unavailable
    if max_scaled_down <= 0:
        return
    # cleanupUnhealthyReplicas: old pods that are not available go first, oldest ReplicaSet first.
    cleaned = 0
    for r in olds:
        if cleaned >= max_scaled_down:
            break
        if r.replicas == 0 or r.unhealthy == 0:
            continue
        down = min(max_scaled_down - cleaned, r.unhealthy, r.replicas)
        p.scale(r.name, r.replicas - down)
        p.rs[r.name] = replace(p.rs[r.name], available=min(r.available, r.replicas - down))
        cleaned += down
    # scaleDownOldReplicaSetsForRollingUpdate: as far as the available pods allow.
    available = sum(min(r.available, r.replicas) for r in p.rs.values() if r.name != new.name) + new.available
    if available <= min_available:
        return
    budget = available - min_available
    for r in p.olds():
        if budget <= 0:
            break
        if r.replicas == 0:
            continue
        down = min(r.replicas, budget)
        p.scale(r.name, r.replicas - down)
        budget -= down


def _recreate(p: _Pass, new: RSView | None) -> RSView | None:
    """rolloutRecreate: old ReplicaSets to 0; when none of their pods is left, the new one to spec.replicas."""
    for r in p.olds():
        p.scale(r.name, 0)
    if any(r.running for r in p.olds()):
        return new
    if new is None:
        return p.create_new(p.d.replicas)
    p.scale(new.name, p.d.replicas)
    return p.rs[new.name]


def _refused(d: DeploymentView, new: RSView | None) -> bool:
    return new is not None and new.annotations.get(ROLLED_BACK_GENERATION) == str(d.generation)


def _stable(p: _Pass) -> RSView | None:
    """The ReplicaSet to return to: the old one with most available pods, the latest revision on a tie."""
    olds = p.olds()
    return max(olds, key=lambda r: (r.available, r.revision, r.creation_time)) if olds else None


def plan_deployment(d: DeploymentView, rss: Sequence[RSView], now: float) -> DeploymentDecision:
    """One sync of a Deployment: the ReplicaSets' sizes after this pass, new/pruned ReplicaSets, status, events."""
    p = _Pass(d, rss, now)
    p.decision.conditions = list(d.conditions)
    new = p.new()
    refused = _refused(d, new)
    if new is not None and not refused and new.annotations.get(ROLLED_BACK_GENERATION):
        # Rolled back at an older generation, and the Deployment changed since (a new commit): try again.
        ann = {k: v for k, v in new.annotations.items() if k != ROLLED_BACK_GENERATION}
        p.rs[new.name] = new = replace(new, annotations=ann)
        p.scale(new.name, new.replicas)
        p.set_progressing("True", "ReplicaSetUpdated", f'ReplicaSet "{new.name}" is progressing.', progress=True)
    if not refused and not d.paused and d.generation > d.last_status.get("observedGeneration", d.generation) \
            and _timed_out(p):
        # A new commit changed the Deployment after a rollout timed out: its progress deadline counts afresh
        # (Kubernetes keeps the stale condition until progress is seen, and `rollout status` would fail at once).
        p.set_progressing("True", "ReplicaSetUpdated", "Deployment changed; progressing again.", progress=True)
    if new is not None and not refused:
        new = p.adopt_revision(new)
        if p.cond("Progressing") is None:
            p.set_progressing("True", "FoundNewReplicaSet", f'Found new replica set "{new.name}"', progress=True)

    if refused:
        _hold_rollback(p, new)
    elif d.paused:
        if _scaling_event(p):
            _proportional_scale(p, new)
    elif _scaling_event(p):
        _proportional_scale(p, new)
    elif d.strategy == "Recreate":
        new = _recreate(p, new)
    else:
        if new is None:
            current = sum(r.replicas for r in p.rs.values())
            new = p.create_new(min(max(d.replicas + p.surge - current, 0), d.replicas))
        # Kubernetes resyncs right after each scaling; the same readiness gives the same answers, so the syncs
        # it would run back to back are run here until nothing changes (each one only scales within the bounds).
        for _ in range(4):
            before = dict(p.changed)
            _rolling(p, p.rs[new.name])
            if p.changed == before:
                break
    new = p.rs.get(new.name) if new is not None else None
    _status(p, new, refused)
    if not refused and new is not None and _timed_out(p) and d.rollback_on_failure:
        _roll_back(p, new)
    _prune(p, new)
    p.decision.changes = list(p.changed.values())
    p.decision.new_rs = new.name if new is not None else None
    p.decision.revision = new.revision if new is not None else max((r.revision for r in p.rs.values()), default=0)
    return p.decision


def _timed_out(p: _Pass) -> bool:
    c = p.cond("Progressing")
    return c is not None and c.reason == "ProgressDeadlineExceeded"


def _roll_back(p: _Pass, new: RSView) -> None:
    """gitkube.io/rollback-on-failure: the failed ReplicaSet to 0, the last available one back to spec.replicas."""
    stable = _stable(p)
    if stable is None:
        return  # nothing to go back to (a first rollout): it stays failed, as in Kubernetes
    p.scale(new.name, 0, **{ROLLED_BACK_GENERATION: str(p.d.generation)})
    p.scale(stable.name, p.d.replicas)
    commit = new.annotations.get(GIT_COMMIT) or p.d.git_commit or "unknown"
    p.decision.events.append((
        "Warning", "RolledBack",
        f"Rollout of revision {new.revision} (Git commit {commit[:12]}) exceeded its progress deadline of "
        f"{p.d.progress_deadline_seconds}s; rolled back to revision {stable.revision} (replica set {stable.name}). "
        f"Git commit {commit[:12]} stays refused until a new commit changes the Deployment"))
    p.decision.rolled_back = True
    p.set_progressing("False", "ProgressDeadlineExceeded",
                      f'ReplicaSet "{new.name}" has timed out progressing; rolled back to "{stable.name}" '
                      f"({ROLLBACK_ON_FAILURE})")


def _hold_rollback(p: _Pass, new: RSView) -> None:
    """After a rollback: the refused ReplicaSet stays at 0 and the stable one follows spec.replicas."""
    p.decision.rolled_back = True
    if new.replicas:
        p.scale(new.name, 0)
    stable = _stable(p)
    if stable is not None:
        p.scale(stable.name, p.d.replicas)
        for r in p.olds():
            if r.name != stable.name:
                p.scale(r.name, 0)


def _status(p: _Pass, new: RSView | None, refused: bool) -> None:
    """calculateStatus + syncRolloutStatus: counts, then the Progressing and Available conditions."""
    d = p.d
    rs = list(p.rs.values())
    available = sum(r.available for r in rs)
    st = {
        "observedGeneration": d.generation,
        "replicas": sum(r.pods for r in rs),
        "updatedReplicas": new.pods if new is not None and not refused else 0,
        "readyReplicas": sum(r.ready for r in rs),
        "availableReplicas": available,
        "unavailableReplicas": max(d.replicas - available, 0),
    }
    p.decision.status = st
    if d.paused:
        p.set_progressing("Unknown", "DeploymentPaused", "Deployment is paused")
    elif not refused and new is not None:
        cur = p.cond("Progressing")
        complete = st["updatedReplicas"] == d.replicas and st["replicas"] == d.replicas and available >= d.replicas \
            and not any(r.replicas for r in p.olds())
        last = d.last_status
        progressing = (st["updatedReplicas"] > last.get("updatedReplicas", 0)
                       or st["replicas"] - st["updatedReplicas"] < last.get("replicas", 0) - last.get("updatedReplicas", 0)
                       or st["readyReplicas"] > last.get("readyReplicas", 0)
                       or available > last.get("availableReplicas", 0))
        if cur is not None and cur.reason == "NewReplicaSetAvailable" and complete:
            pass
        elif complete:
            p.set_progressing("True", "NewReplicaSetAvailable", f'ReplicaSet "{new.name}" has successfully progressed.',
                              progress=True)
        elif progressing:
            p.set_progressing("True", "ReplicaSetUpdated", f'ReplicaSet "{new.name}" is progressing.', progress=True)
        elif cur is not None and cur.reason == "DeploymentPaused":
            p.set_progressing("Unknown", "DeploymentResumed", "Deployment is resumed", progress=True)
        elif cur is not None and cur.reason != "ProgressDeadlineExceeded" \
                and cur.last_update + d.progress_deadline_seconds < p.now:
            p.set_progressing("False", "ProgressDeadlineExceeded", f'ReplicaSet "{new.name}" has timed out progressing.')
    if available >= d.replicas - p.unavailable:
        p.set_cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        p.set_cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")


def _prune(p: _Pass, new: RSView | None) -> None:
    """cleanupDeployment: empty old ReplicaSets beyond revisionHistoryLimit go, oldest revision first."""
    if p.d.paused:
        return
    keep = {new.name} if new is not None else set()
    stable = _stable(p) if p.decision.rolled_back else None
    if stable is not None:
        keep.add(stable.name)
    empty = sorted((r for r in p.olds() if r.replicas == 0 and r.running == 0 and r.pods == 0 and r.name not in keep),
                   key=lambda r: (r.revision, r.creation_time))
    excess = len(empty) - p.d.revision_history_limit
    p.decision.prune = [r.name for r in empty[:max(excess, 0)]]


def rollout_summary(d: DeploymentView, rss: Sequence[RSView], images: Mapping[str, str]) -> str | None:
    """What diff says of a Deployment whose template changed: `frontend: 3 pods v1 → v2, maxSurge 1, maxUnavailable 0`.
    `images` maps template hash -> a short label of that template (its image tags)."""
    if any(r.template_hash == d.template_hash and r.replicas for r in rss) and not any(
            r.replicas for r in rss if r.template_hash != d.template_hash):
        return None
    old = [r for r in rss if r.template_hash != d.template_hash and r.replicas]
    if not old:
        return None
    frm = ", ".join(sorted({images.get(r.template_hash, r.template_hash) for r in old}))
    to = images.get(d.template_hash, d.template_hash)
    if d.strategy == "Recreate":
        how = "Recreate (all old pods stop first)"
    else:
        surge, unavailable = resolve_fenceposts(d.max_surge, d.max_unavailable, d.replicas)
        how = f"maxSurge {surge}, maxUnavailable {unavailable}"
    return f"{d.name}: {d.replicas} pods {frm} → {to}, {how}"
