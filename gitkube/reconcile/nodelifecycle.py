"""Node lifecycle: each node's Ready condition from its heartbeats, which pods to evict, which containers are stale.

Kubernetes' node lifecycle controller, with gitkube's probe of a node (SSH + Docker) standing in
for the kubelet's status updates:
- Every clock starts no earlier than this controller process's own first observation of the node
  (`observed_since`), as Kubernetes' controller resets its probe timestamps when it starts: a
  heartbeat stored by an earlier process, hours ago, is never by itself a reason to go Unknown or
  to evict. A one-shot `apply` (a process that lives one pass) therefore never evicts.
- Ready=True ("KubeletReady") while the last successful probe, or the first observation if later,
  is at most `grace_period` old;
- Ready=False ("KubeletNotReady", the error as message) when the node answers but its container
  runtime fails; Ready=False ("HostKeyMismatch") at once when the node's host key is not the pinned
  one: gitkube must not talk to it, but this does not evict any sooner;
- Ready=Unknown ("NodeStatusUnknown", "Kubelet stopped posting node status.") once no probe
  succeeded for `grace_period`; "NodeStatusNeverUpdated" for a node never reached.
- Pods on a node that is not Ready lose their Ready condition at once (k8s MarkPodsNotReady),
  so endpoints drop them.
- Pods of a node that is not Ready are evicted once `grace_period + eviction_timeout` have passed
  since its last success (or since the first observation, if later), whatever made it not Ready:
  every pod bound to the node that is not already being deleted is marked for deletion, with status
  reason NodeLost — RC-owned and bare pods alike, as k8s' node controller does (bare pods are not
  recreated; the RC replaces its own because a pod being deleted no longer counts as active). The
  pods stay "Terminating" until the node comes back and their containers are stopped.
- Evictions are rate-limited: the pods of at most `evict_nodes_per_pass` nodes per pass (k8s'
  --node-eviction-rate counts nodes, not pods).
- As k8s does on a full disruption, no pod is evicted while no node is Ready, or while most nodes
  (at least 55% of 3 or more, k8s' unhealthy-zone threshold) are not: then the fault is most likely
  gitkube's own network, and there is nowhere to move pods to.
- Pods bound to a node that is not in the inventory are evicted at once (k8s' PodGC).
- When a node is reachable again, containers of pods that no longer exist (or that belong to a
  pod bound elsewhere) are stale and must be removed, so that no pod runs twice.
All times are seconds on one clock (e.g. time.time() taken by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from gitkube.api.views import TERMINAL_PHASES, PodView

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_EVICTION_TIMEOUT",
    "NodeHeartbeat",
    "ReadyCondition",
    "PodEviction",
    "NodeLifecycleDecision",
    "node_ready_condition",
    "node_lifecycle",
    "stale_pod_uids",
    "full_disruption",
]

DEFAULT_GRACE_PERIOD = 20.0
DEFAULT_EVICTION_TIMEOUT = 30.0
DEFAULT_EVICT_NODES_PER_PASS = 1
# k8s' --unhealthy-zone-threshold: this share of not-Ready nodes (of at least 3) is a disruption, not node failures.
UNHEALTHY_THRESHOLD = 0.55

# Kubernetes' reasons and messages for the Ready condition and for evicted pods.
REASON_READY, MESSAGE_READY = "KubeletReady", "kubelet is posting ready status"
REASON_NOT_READY, MESSAGE_RUNTIME_DOWN = "KubeletNotReady", "container runtime is down"
REASON_UNKNOWN, MESSAGE_UNKNOWN = "NodeStatusUnknown", "Kubelet stopped posting node status."
REASON_NEVER, MESSAGE_NEVER = "NodeStatusNeverUpdated", "Kubelet never posted node status."
REASON_HOST_KEY = "HostKeyMismatch"
POD_REASON_NODE_LOST = "NodeLost"
EVENT_REASON_EVICTION = "NodeControllerEviction"


@dataclass(frozen=True)
class NodeHeartbeat:
    """What gitkube knows of its probes of one node."""

    node: str
    last_success: float | None = None  # last probe that reached the node and its container runtime
    last_attempt: float | None = None  # last probe, successful or not
    last_error: str | None = None  # text of the last failed probe
    runtime_error: bool = False  # the last failed probe reached the node, but its runtime failed
    registered_at: float = 0.0  # when the node joined the inventory
    # When this controller process first observed the node; None: not before `now` (a fresh process).
    observed_since: float | None = None
    error_reason: str | None = None  # the last failed probe's reason (HostKeyMismatch, NodeUnreachable…)

    def since_seen(self, now: float) -> float:
        """The earliest time this process may count from."""
        return now if self.observed_since is None else min(self.observed_since, now)

    def eviction_clock(self, now: float, grace_period: float) -> float:
        """Decides when the eviction timeout starts counting: the grace period after the last success, or
        after this process first observed the node, whichever is later."""
        seen = self.since_seen(now)
        return max(self.last_success if self.last_success is not None else seen, seen) + grace_period


@dataclass(frozen=True)
class ReadyCondition:
    """The node's Ready condition (status "True", "False" or "Unknown")."""

    status: str
    reason: str
    message: str
    last_heartbeat_time: float | None
    last_transition_time: float

    @property
    def ready(self) -> bool:
        return self.status == "True"


@dataclass(frozen=True)
class PodEviction:
    """Mark `pod` for deletion with status reason/message, and record an event."""

    pod: PodView
    reason: str
    message: str
    event_reason: str
    event_message: str

    @property
    def owned(self) -> bool:
        """Whether a controller (an RC) will replace the pod."""
        return self.pod.owner_uid is not None


@dataclass(frozen=True)
class NodeLifecycleDecision:
    """One pass of the node lifecycle controller."""

    conditions: Mapping[str, ReadyCondition] = field(default_factory=dict)
    mark_not_ready: tuple[PodView, ...] = ()  # set their Ready condition False
    evict: tuple[PodEviction, ...] = ()
    eviction_suspended: bool = False  # no node is Ready: evictions held back


def node_ready_condition(
    hb: NodeHeartbeat,
    now: float,
    previous: ReadyCondition | None = None,
    grace_period: float = DEFAULT_GRACE_PERIOD,
) -> ReadyCondition:
    """The node's Ready condition now, from its heartbeats and the condition it had before."""
    seen = hb.since_seen(now)
    failed_last = hb.last_attempt is not None and (hb.last_success is None or hb.last_attempt > hb.last_success)
    answered_at = hb.last_success
    runtime_down = hb.runtime_error and failed_last
    if runtime_down:
        answered_at = hb.last_attempt  # the node itself answered, only its runtime is broken

    if failed_last and hb.error_reason == REASON_HOST_KEY:
        # Not the node the inventory pins: known at once, not after a grace period; eviction waits as for any other.
        status, reason, message = "False", REASON_HOST_KEY, hb.last_error or "host key mismatch"
        since = hb.last_attempt
    elif answered_at is None:
        status, reason, message = "Unknown", REASON_NEVER, MESSAGE_NEVER
        since = max(hb.registered_at, seen) if hb.observed_since is not None else hb.registered_at
    elif now - max(answered_at, seen) > grace_period:
        status, reason, message = "Unknown", REASON_UNKNOWN, MESSAGE_UNKNOWN
        # It went Unknown when the grace period ran out, not when this pass noticed.
        since = max(answered_at, seen) + grace_period
    elif runtime_down:
        status, reason, message = "False", REASON_NOT_READY, hb.last_error or MESSAGE_RUNTIME_DOWN
        since = answered_at
    else:
        status, reason, message = "True", REASON_READY, MESSAGE_READY
        since = answered_at
    if status != "True" and hb.last_error and message != hb.last_error:
        message = f"{message} Last probe error: {hb.last_error}"
    if previous is not None and previous.status == status:
        since = previous.last_transition_time
    return ReadyCondition(status, reason, message, answered_at, since)


def node_lifecycle(
    heartbeats: Iterable[NodeHeartbeat],
    pods: Sequence[PodView],
    now: float,
    previous: Mapping[str, ReadyCondition] | None = None,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    eviction_timeout: float = DEFAULT_EVICTION_TIMEOUT,
    evict_nodes_per_pass: int = DEFAULT_EVICT_NODES_PER_PASS,
) -> NodeLifecycleDecision:
    """Every node's Ready condition, the pods to mark not ready, and the pods to evict."""
    previous = previous or {}
    beats = {hb.node: hb for hb in heartbeats}
    conditions = {
        name: node_ready_condition(hb, now, previous.get(name), grace_period) for name, hb in beats.items()
    }
    suspended = full_disruption(conditions.values())
    # Nodes whose pods are due for eviction now, oldest clock first; only the first few this pass.
    due = sorted((beats[n].eviction_clock(now, grace_period), n) for n, c in conditions.items()
                 if not c.ready and now - beats[n].eviction_clock(now, grace_period) >= eviction_timeout)
    evicting = set() if suspended else {n for _, n in due[:max(0, evict_nodes_per_pass)]}

    mark, evict = [], []
    for pod in sorted(pods, key=lambda p: (p.node or "", p.namespace, p.name)):
        node = pod.node
        if not node:
            continue
        cond = conditions.get(node)
        if cond is None:
            # Bound to a node gitkube no longer has: nothing will ever run or stop it there.
            if not pod.deleting:
                evict.append(_eviction(pod, f"Node {node} which was running pod {pod.name} is gone"))
            continue
        if cond.ready:
            continue
        if pod.ready and pod.phase not in TERMINAL_PHASES:
            mark.append(pod)
        if node in evicting and not pod.deleting:
            evict.append(_eviction(pod, f"Node {node} which was running pod {pod.name} is unresponsive"))
    return NodeLifecycleDecision(conditions, tuple(mark), tuple(evict), suspended)


def full_disruption(conditions: Iterable[ReadyCondition]) -> bool:
    """Decides whether evictions stop: no node is Ready, or most are not (k8s' full and partial disruption of
    a small zone): the likely fault is the controller's own network, and there is nowhere to move pods to."""
    conds = list(conditions)
    not_ready = sum(1 for c in conds if not c.ready)
    if not conds or not not_ready:
        return False
    return not_ready == len(conds) or (not_ready >= 2 and len(conds) >= 3
                                       and not_ready / len(conds) >= UNHEALTHY_THRESHOLD)


def _eviction(pod: PodView, message: str) -> PodEviction:
    return PodEviction(
        pod,
        POD_REASON_NODE_LOST,
        message,
        EVENT_REASON_EVICTION,
        f"Marking for deletion Pod {pod.name} from Node {pod.node}",
    )


def stale_pod_uids(node: str, observed_pod_uids: Iterable[str], store_pods: Mapping[str, str | None]) -> tuple[str, ...]:
    """Pod uids whose containers on `node` must be removed: the pod is gone, or bound to another node.

    `observed_pod_uids` come from the io.gitkube.pod.uid labels of the node's containers;
    `store_pods` maps every pod uid in the store to its spec.nodeName.
    """
    return tuple(sorted({uid for uid in observed_pod_uids if store_pods.get(uid, "\0missing") != node}))
