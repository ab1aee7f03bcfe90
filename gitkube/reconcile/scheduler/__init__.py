"""The scheduler: which node each pending pod goes to (filter, then score), or why none fits.

Two implementations of one decision:
- `Scheduler` keeps per-node aggregates (`NodeUsage`) updated as it binds, caches the result
  of the pod-independent filters per (nodeName, nodeSelector), inlines the arithmetic of the
  predicates and priorities in one loop. Optionally (SchedulerConfig.percentage_of_nodes_to_score
  below 100), like kube-scheduler, it stops once it has found enough feasible nodes and starts the
  next scan where the last one stopped.
- `schedule_naive` calls the public predicate and priority functions on every node with usage
  recomputed from the bound pods: the reference the fast path is tested against, and the
  benchmark baseline.

Predicates run in this order and a node is counted once, under the first predicate it fails
(k8s' default, alwaysCheckAllPredicates=false): CheckNodeCondition, PodFitsHost,
PodSelectorMatches, CheckNodeLabelPresence, PodFitsResources (reports every insufficient
resource), PodFitsHostPorts, NoDiskConflict.

Ties between the best nodes are broken by the lowest crc32(pod uid + node name): stable for a
pod across runs and processes, yet different pods prefer different nodes.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, replace
from itertools import chain, islice
from typing import Iterable, Mapping, Sequence

from gitkube.reconcile.scheduler import predicates as P
from gitkube.reconcile.scheduler import priorities as S
from gitkube.reconcile.scheduler.types import (
    MAX_PRIORITY,
    ContainerRequest,
    NodeInfo,
    NodeUsage,
    SchedulingRequest,
    ScheduleResult,
    failed_scheduling_message,
)

__all__ = [
    "ClusterState",
    "ContainerRequest",
    "NodeInfo",
    "NodeUsage",
    "SchedulingRequest",
    "ScheduleResult",
    "Scheduler",
    "SchedulerConfig",
    "failed_scheduling_message",
    "num_feasible_nodes_to_find",
    "schedule_naive",
]


@dataclass(frozen=True)
class SchedulerConfig:
    """Weights of the priorities and the configurable predicates/priorities."""

    least_requested_weight: int = 1
    balanced_resource_weight: int = 1
    selector_spread_weight: int = 1
    # CalculateNodeLabelPriority entries: (label, presence, weight)
    node_label_priorities: tuple[tuple[str, bool, int], ...] = ()
    # CheckNodeLabelPresence entries: (labels, presence)
    label_presence: tuple[tuple[tuple[str, ...], bool], ...] = ()
    # kube-scheduler's percentageOfNodesToScore: 100 = every node (our default: fast enough,
    # and the choice does not depend on where the previous scan stopped); 0 = k8s' adaptive default.
    percentage_of_nodes_to_score: int = 100
    keep_scores: int = 3  # how many best (node, score) pairs a result carries


def num_feasible_nodes_to_find(num_nodes: int, percentage: int) -> int:
    """How many feasible nodes to find before scoring (kube-scheduler's numFeasibleNodesToFind)."""
    min_feasible, min_percentage = 100, 5
    if num_nodes < min_feasible or percentage >= 100:
        return num_nodes
    if percentage <= 0:
        percentage = max(50 - num_nodes // 125, min_percentage)
    return max(num_nodes * percentage // 100, min_feasible)


class ClusterState:
    """Per-node usage of the pods already bound; `bind` updates it as the scheduler decides."""

    def __init__(self, bound_pods: Iterable[SchedulingRequest] = ()) -> None:
        self.usage: dict[str, NodeUsage] = {}
        # For SelectorSpreadPriority without visiting every node: set of spread keys ->
        # {node: pods carrying exactly that set}, and spread key -> the sets containing it.
        self.spread_index: dict[frozenset[str], Counter[str]] = {}
        self.keysets_of: dict[str, set[frozenset[str]]] = {}
        for pod in bound_pods:
            if pod.node_name:
                self.bind(pod, pod.node_name)

    def usage_of(self, node_name: str) -> NodeUsage:
        """The usage of one node (empty for a node nothing is bound to)."""
        u = self.usage.get(node_name)
        if u is None:
            u = self.usage[node_name] = NodeUsage()
        return u

    def bind(self, pod: SchedulingRequest, node_name: str) -> None:
        """Account for `pod` running on `node_name`."""
        self.usage_of(node_name).add(pod)
        keys = pod.spread_keys
        if keys:
            per_node = self.spread_index.get(keys)
            if per_node is None:
                per_node = self.spread_index[keys] = Counter()
                for k in keys:
                    self.keysets_of.setdefault(k, set()).add(keys)
            per_node[node_name] += 1

    def spread_counts(self, keys: frozenset[str]) -> Mapping[str, int]:
        """Per node, the bound pods matched by any selector behind `keys` (nodes with none omitted)."""
        sets: set[frozenset[str]] = set()
        for k in keys:
            sets |= self.keysets_of.get(k, set())
        if len(sets) == 1:
            return self.spread_index[next(iter(sets))]
        total: Counter[str] = Counter()
        for ks in sets:
            total.update(self.spread_index[ks])
        return total


class _Entry:
    # One node in the hot loop: its static facts flattened to attributes, and its live usage.
    __slots__ = ("node", "name", "name_b", "usage", "cpu", "mem", "max_pods", "label_score")

    def __init__(self, node: NodeInfo, usage: NodeUsage, label_score: int) -> None:
        self.node = node
        self.name = node.name
        self.name_b = node.name.encode()
        self.usage = usage
        self.cpu = node.cpu_millis
        self.mem = node.memory_bytes
        self.max_pods = node.pods
        self.label_score = label_score


class _Candidates:
    # Nodes passing the pod-independent filters for one (nodeName, nodeSelector), with the
    # reasons of those that did not, and where the next sampled scan starts (round robin).
    __slots__ = ("entries", "static_reasons", "start")

    def __init__(self, entries: list[_Entry], static_reasons: Counter) -> None:
        self.entries = entries
        self.static_reasons = static_reasons
        self.start = 0


def _tiebreak(pod_crc: int, entry: _Entry) -> int:
    return zlib.crc32(entry.name_b, pod_crc)


def _first_failure(predicates, pod: SchedulingRequest, e: _Entry) -> list[str]:
    """The reasons of the first predicate `e`'s node fails for `pod` (empty: it passes them all), as Kubernetes
    reports one reason per node."""
    for pred in predicates:
        failed = pred(pod, e.node, e.usage)
        if failed:
            return failed
    return []


class Scheduler:
    """Decides the node of each pending pod; see the module docstring for the rules."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self._static_predicates: list[P.Predicate] = [
            P.check_node_condition,
            P.pod_fits_host,
            P.pod_selector_matches,
        ] + [P.node_label_presence_predicate(labels, presence) for labels, presence in self.config.label_presence]
        self._dynamic_predicates: list[P.Predicate] = [
            P.pod_fits_resources,
            P.pod_fits_host_ports,
            P.no_disk_conflict,
        ]

    # -- public API -------------------------------------------------------------------------

    def schedule(self, pod: SchedulingRequest, nodes: Sequence[NodeInfo],
                 cluster_state: ClusterState) -> ScheduleResult:
        """The node for one pod given what is already bound (cluster_state is not modified)."""
        entries = self._entries(nodes, cluster_state)
        return self._schedule_one(pod, entries, {}, len(nodes), cluster_state)

    def schedule_all(
        self, pending_pods: Sequence[SchedulingRequest], nodes: Sequence[NodeInfo],
        bound_pods: Iterable[SchedulingRequest] = (),
    ) -> list[ScheduleResult]:
        """The node for each pending pod in order, each seeing the pods placed before it."""
        state = ClusterState(bound_pods)
        for n in nodes:
            state.usage_of(n.name)  # so that the entries share the objects `bind` updates
        entries = self._entries(nodes, state)
        cache: dict = {}
        results = []
        for pod in pending_pods:
            r = self._schedule_one(pod, entries, cache, len(nodes), state)
            if r.node is not None:
                state.bind(pod, r.node)
            results.append(r)
        return results

    # -- internals --------------------------------------------------------------------------

    def _entries(self, nodes: Sequence[NodeInfo], state: ClusterState) -> list[_Entry]:
        labels = self.config.node_label_priorities
        return [
            _Entry(
                n,
                state.usage.get(n.name) or NodeUsage(),
                sum(w * S.node_label_priority(n, lab, pres) for lab, pres, w in labels),
            )
            for n in nodes
        ]

    def _candidates(self, pod: SchedulingRequest, entries: list[_Entry], cache: dict) -> _Candidates:
        key = (pod.node_name, frozenset(pod.node_selector.items()))
        c = cache.get(key)
        if c is None:
            ok, reasons = [], Counter()
            for e in entries:
                failed = _first_failure(self._static_predicates, pod, e)
                if failed:
                    reasons.update(failed)
                else:
                    ok.append(e)
            c = cache[key] = _Candidates(ok, reasons)
        return c

    def _schedule_one(
        self, pod: SchedulingRequest, all_entries: list[_Entry], cache: dict, num_nodes: int, state: ClusterState
    ) -> ScheduleResult:
        """One pod: filter (predicates, first failing one per node) then score (priorities) the sampled nodes.
        Over 60 lines: the hot loop of the scheduler, kept in one frame on purpose (bench_scheduler measures it;
        calls per node per predicate cost measurably at 5,000 nodes)."""
        cfg = self.config
        cands = self._candidates(pod, all_entries, cache)
        entries = cands.entries
        n = len(entries)
        want = num_feasible_nodes_to_find(num_nodes, cfg.percentage_of_nodes_to_score)

        pc, pm = pod.cpu_millis, pod.memory_bytes
        nzc, nzm = pod.nonzero_cpu_millis, pod.nonzero_memory_bytes
        ports, paths, keys = pod.ports, pod.paths, pod.spread_keys
        w_lr, w_br = cfg.least_requested_weight, cfg.balanced_resource_weight
        ports_conflict = P._ports_conflict
        spread_get = state.spread_counts(keys).get if keys else None

        # Pass 1: filter with the dynamic predicates and compute the per-node scores.
        feasible: list[tuple[_Entry, int, int]] = []  # (entry, score without spreading, spread count)
        failed: list[_Entry] = []
        start = cands.start if n else 0
        scanned = 0
        for e in chain(islice(entries, start, None), islice(entries, 0, start)):
            scanned += 1
            u = e.usage
            ac, am = e.cpu, e.mem
            # PodFitsResources
            if u.count >= e.max_pods or (pc and pc > ac - u.cpu) or (pm and pm > am - u.mem):
                failed.append(e)
                continue
            # PodFitsHostPorts
            if ports and u.ports and ports_conflict(ports, u.ports):
                failed.append(e)
                continue
            # NoDiskConflict
            if paths:
                rw, anyp = u.paths_rw, u.paths_any
                if any((rw[p] if ro else anyp[p]) > 0 for p, ro in paths):
                    failed.append(e)
                    continue
            tc, tm = u.nz_cpu + nzc, u.nz_mem + nzm
            # LeastRequestedPriority
            lr_c = ((ac - tc) * MAX_PRIORITY) // ac if 0 < ac and tc <= ac else 0
            lr_m = ((am - tm) * MAX_PRIORITY) // am if 0 < am and tm <= am else 0
            score = e.label_score + w_lr * ((lr_c + lr_m) // 2)
            # BalancedResourceAllocation
            if w_br:
                fc = tc / ac if ac > 0 else 1.0
                fm = tm / am if am > 0 else 1.0
                if fc < 1 and fm < 1:
                    score += w_br * int(MAX_PRIORITY - abs(fc - fm) * MAX_PRIORITY)
            feasible.append((e, score, spread_get(e.name, 0) if keys else 0))
            if len(feasible) >= want:
                break
        if n:
            cands.start = (start + scanned) % n

        if not feasible:
            reasons = Counter(cands.static_reasons)
            for e in failed:
                reasons.update(_first_failure(self._dynamic_predicates, pod, e))
            return ScheduleResult(pod.uid, None, reasons, (), num_nodes)

        # Pass 2: SelectorSpreadPriority needs the busiest feasible node, then pick the best.
        w_sp = cfg.selector_spread_weight
        top = max(c for _, _, c in feasible) if keys else 0
        pod_crc = zlib.crc32(pod.uid.encode())
        best_total, best = -1, []
        keep = cfg.keep_scores
        top_scores: list[tuple[int, str]] = []  # best `keep` totals, best first, first seen wins ties
        for e, score, count in feasible:
            total = score + w_sp * ((MAX_PRIORITY * (top - count)) // top if top else MAX_PRIORITY)
            if total > best_total:
                best_total, best = total, [e]
            elif total == best_total:
                best.append(e)
            if keep and (len(top_scores) < keep or total > top_scores[-1][0]):
                i = len(top_scores)
                while i and top_scores[i - 1][0] < total:
                    i -= 1
                top_scores.insert(i, (total, e.name))
                del top_scores[keep:]
        chosen = best[0] if len(best) == 1 else min(best, key=lambda e: _tiebreak(pod_crc, e))
        scores = ((chosen.name, best_total),) + tuple((name, t) for t, name in top_scores if name != chosen.name)
        return ScheduleResult(pod.uid, chosen.name, Counter(), scores[: cfg.keep_scores], num_nodes)


def schedule_naive(
    pending_pods: Sequence[SchedulingRequest],
    nodes: Sequence[NodeInfo],
    bound_pods: Iterable[SchedulingRequest] = (),
    config: SchedulerConfig | None = None,
) -> list[ScheduleResult]:
    """The same decisions as `Scheduler.schedule_all` with every node scored, computed the slow, obvious way."""
    cfg = config or SchedulerConfig()
    preds: list[P.Predicate] = [
        P.check_node_condition,
        P.pod_fits_host,
        P.pod_selector_matches,
        *(P.node_label_presence_predicate(labels, pres) for labels, pres in cfg.label_presence),
        P.pod_fits_resources,
        P.pod_fits_host_ports,
        P.no_disk_conflict,
    ]
    placed: list[SchedulingRequest] = [p for p in bound_pods if p.node_name]
    results = []
    for pod in pending_pods:
        # No incremental aggregates: each node's usage is rebuilt from every bound pod.
        usage: Mapping[str, NodeUsage] = {
            n.name: NodeUsage.of(p for p in placed if p.node_name == n.name) for n in nodes
        }
        reasons: Counter = Counter()
        feasible = []
        for n in nodes:
            for pred in preds:
                why = pred(pod, n, usage[n.name])
                if why:
                    reasons.update(why)
                    break
            else:
                feasible.append(n)
        if not feasible:
            results.append(ScheduleResult(pod.uid, None, reasons, (), len(nodes)))
            continue
        spread = S.selector_spread_priority(pod, [usage[n.name] for n in feasible])
        totals = []
        for n, sp in zip(feasible, spread):
            u = usage[n.name]
            total = (
                cfg.least_requested_weight * S.least_requested_priority(pod, n, u)
                + cfg.balanced_resource_weight * S.balanced_resource_allocation(pod, n, u)
                + cfg.selector_spread_weight * sp
                + sum(w * S.node_label_priority(n, lab, pres) for lab, pres, w in cfg.node_label_priorities)
            )
            totals.append((total, n))
        best_total = max(t for t, _ in totals)
        pod_crc = zlib.crc32(pod.uid.encode())
        chosen = min((n for t, n in totals if t == best_total), key=lambda n: zlib.crc32(n.name.encode(), pod_crc))
        placed.append(_bound(pod, chosen.name))
        results.append(ScheduleResult(pod.uid, chosen.name, Counter(), ((chosen.name, best_total),), len(nodes)))
    return results


def _bound(pod: SchedulingRequest, node_name: str) -> SchedulingRequest:
    return replace(pod, node_name=node_name)
