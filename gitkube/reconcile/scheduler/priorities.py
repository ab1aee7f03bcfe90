"""Scores: how good a feasible node is for a pod, 0 (worst) to 10 (best), as in Kubernetes v1.1.

The scheduler adds `weight * score` over the enabled priorities and takes the highest total.
Resource priorities use the non-zero requests (unset = 100m cpu / 200Mi memory, k8s'
getNonzeroRequests) and include the pod being scheduled.
"""

from __future__ import annotations

from typing import Sequence

from gitkube.reconcile.scheduler.types import MAX_PRIORITY, NodeInfo, NodeUsage, SchedulingRequest

__all__ = [
    "least_requested_score",
    "least_requested_priority",
    "balanced_resource_allocation",
    "selector_spread_scores",
    "selector_spread_priority",
    "node_label_priority",
]


def least_requested_score(requested: int, capacity: int) -> int:
    """Share of one resource left free after placing the pod, on 0..10 (0 when full or unknown)."""
    if capacity <= 0 or requested > capacity:
        return 0
    return ((capacity - requested) * MAX_PRIORITY) // capacity


def least_requested_priority(pod: SchedulingRequest, node: NodeInfo, usage: NodeUsage) -> int:
    """LeastRequestedPriority: favour the node with the most cpu and memory left (their integer mean)."""
    cpu = least_requested_score(usage.nz_cpu + pod.nonzero_cpu_millis, node.cpu_millis)
    mem = least_requested_score(usage.nz_mem + pod.nonzero_memory_bytes, node.memory_bytes)
    return (cpu + mem) // 2


def _fraction(requested: int, capacity: int) -> float:
    # v1.1: an unknown capacity counts as full.
    return requested / capacity if capacity > 0 else 1.0


def balanced_resource_allocation(pod: SchedulingRequest, node: NodeInfo, usage: NodeUsage) -> int:
    """BalancedResourceAllocation: favour the node whose cpu and memory use stay closest in proportion."""
    cpu = _fraction(usage.nz_cpu + pod.nonzero_cpu_millis, node.cpu_millis)
    mem = _fraction(usage.nz_mem + pod.nonzero_memory_bytes, node.memory_bytes)
    if cpu >= 1 or mem >= 1:
        return 0
    return int(MAX_PRIORITY - abs(cpu - mem) * MAX_PRIORITY)


def selector_spread_scores(counts: Sequence[int]) -> list[int]:
    """SelectorSpreadPriority from per-node counts of matching pods: fewer than the busiest node scores higher."""
    top = max(counts, default=0)
    if top == 0:
        return [MAX_PRIORITY] * len(counts)
    # Integer arithmetic where k8s used float32: same result except at float rounding edges.
    return [(MAX_PRIORITY * (top - c)) // top for c in counts]


def selector_spread_priority(pod: SchedulingRequest, usages: Sequence[NodeUsage]) -> list[int]:
    """SelectorSpreadPriority: spread pods selected by the same RC or Service over the given nodes."""
    return selector_spread_scores([u.spread_count(pod.spread_keys) for u in usages])


def node_label_priority(node: NodeInfo, label: str, presence: bool) -> int:
    """CalculateNodeLabelPriority: 10 when the node has (presence) or lacks (not presence) the label, else 0."""
    return MAX_PRIORITY if (label in node.labels) == presence else 0
