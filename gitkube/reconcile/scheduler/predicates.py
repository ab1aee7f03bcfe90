"""Filters: whether a pod may run on a node, and if not, Kubernetes' reason why.

Every predicate has the shape `(pod, node, usage) -> tuple[str, ...]`: the failure reasons,
empty when the node fits. Reasons are Kubernetes' strings so that the FailedScheduling text
reads like the real one. We use the classic (v1.11–v1.17) wording throughout.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from gitkube.reconcile.scheduler.types import (
    NodeInfo,
    NodeUsage,
    SchedulingRequest,
    failed_scheduling_message,
)

__all__ = [
    "Predicate",
    "REASON_INSUFFICIENT_CPU",
    "REASON_INSUFFICIENT_MEMORY",
    "REASON_TOO_MANY_PODS",
    "REASON_PORTS",
    "REASON_NODE_SELECTOR",
    "REASON_NODE_NAME",
    "REASON_DISK_CONFLICT",
    "REASON_NOT_READY",
    "REASON_UNSCHEDULABLE",
    "REASON_LABEL_PRESENCE",
    "check_node_condition",
    "pod_fits_host",
    "pod_fits_host_ports",
    "pod_fits_ports",
    "pod_selector_matches",
    "pod_fits_resources",
    "no_disk_conflict",
    "check_node_label_presence",
    "node_label_presence_predicate",
    "failed_scheduling_message",
]

Predicate = Callable[[SchedulingRequest, NodeInfo, NodeUsage], tuple[str, ...]]

REASON_INSUFFICIENT_CPU = "Insufficient cpu"
REASON_INSUFFICIENT_MEMORY = "Insufficient memory"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_NODE_SELECTOR = "node(s) didn't match node selector"
REASON_NODE_NAME = "node(s) didn't match the requested node name"
REASON_DISK_CONFLICT = "node(s) had no available disk"
REASON_NOT_READY = "node(s) were not ready"
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_LABEL_PRESENCE = "node(s) didn't have the requested labels"

_OK: tuple[str, ...] = ()
_WILDCARD = "0.0.0.0"


def check_node_condition(pod: SchedulingRequest, node: NodeInfo, usage: NodeUsage | None = None) -> tuple[str, ...]:
    """CheckNodeCondition: the node is Ready and not cordoned (spec.unschedulable)."""
    if not node.ready:
        return (REASON_NOT_READY,)
    if node.unschedulable:
        return (REASON_UNSCHEDULABLE,)
    return _OK


def pod_fits_host(pod: SchedulingRequest, node: NodeInfo, usage: NodeUsage | None = None) -> tuple[str, ...]:
    """PodFitsHost: a pod with spec.nodeName may only go to that node."""
    if pod.node_name and pod.node_name != node.name:
        return (REASON_NODE_NAME,)
    return _OK


def pod_fits_host_ports(pod: SchedulingRequest, node: NodeInfo, usage: NodeUsage) -> tuple[str, ...]:
    """PodFitsHostPorts: no hostPort of the pod is already taken on the node.

    Same port and protocol conflict when the IPs are equal or either side is 0.0.0.0.
    """
    if pod.ports and usage.ports and _ports_conflict(pod.ports, usage.ports):
        return (REASON_PORTS,)
    return _OK


# The v1.1 name of the same predicate.
pod_fits_ports = pod_fits_host_ports


def _ports_conflict(wanted, used) -> bool:
    for ip, port, proto in wanted:
        ips = used.get((port, proto))
        if ips and (ip == _WILDCARD or _WILDCARD in ips or ip in ips):
            return True
    return False


def pod_selector_matches(pod: SchedulingRequest, node: NodeInfo, usage: NodeUsage | None = None) -> tuple[str, ...]:
    """PodSelectorMatches: every key=value of spec.nodeSelector is a label of the node."""
    if pod.node_selector and not _labels_match(pod.node_selector, node.labels):
        return (REASON_NODE_SELECTOR,)
    return _OK


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    for k, v in selector.items():
        if labels.get(k) != v:
            return False
    return True


def pod_fits_resources(pod: SchedulingRequest, node: NodeInfo, usage: NodeUsage) -> tuple[str, ...]:
    """PodFitsResources: pod count, cpu and memory requests fit in what the node has left.

    As in k8s, requests are the containers' requests as written (unset = 0) and every
    insufficient resource is reported, not only the first.
    """
    reasons: list[str] = []
    if usage.count + 1 > node.pods:
        reasons.append(REASON_TOO_MANY_PODS)
    if pod.cpu_millis > 0 and pod.cpu_millis > node.cpu_millis - usage.cpu:
        reasons.append(REASON_INSUFFICIENT_CPU)
    if pod.memory_bytes > 0 and pod.memory_bytes > node.memory_bytes - usage.mem:
        reasons.append(REASON_INSUFFICIENT_MEMORY)
    return tuple(reasons)


def no_disk_conflict(pod: SchedulingRequest, node: NodeInfo, usage: NodeUsage) -> tuple[str, ...]:
    """NoDiskConflict: no hostPath of the pod is used by another pod on the node unless both are read-only.

    The rule is k8s' rule for a GCE persistent disk applied to hostPath (k8s itself does not
    check hostPath): the same directory may be shared read-only by any number of pods, but a
    read-write use excludes every other use.
    """
    if not pod.paths:
        return _OK
    for path, read_only in pod.paths:
        if (usage.paths_rw[path] if read_only else usage.paths_any[path]) > 0:
            return (REASON_DISK_CONFLICT,)
    return _OK


def check_node_label_presence(node: NodeInfo, labels: Iterable[str], presence: bool) -> bool:
    """CheckNodeLabelPresence: with presence, the node has all labels; without, it has none of them."""
    if presence:
        return all(k in node.labels for k in labels)
    return not any(k in node.labels for k in labels)


def node_label_presence_predicate(labels: Iterable[str], presence: bool) -> Predicate:
    """A CheckNodeLabelPresence predicate configured with the labels and presence it requires."""
    labels = tuple(labels)

    def predicate(pod: SchedulingRequest, node: NodeInfo, usage: NodeUsage | None = None) -> tuple[str, ...]:
        return _OK if check_node_label_presence(node, labels, presence) else (REASON_LABEL_PRESENCE,)

    predicate.__name__ = "CheckNodeLabelPresence"
    return predicate
