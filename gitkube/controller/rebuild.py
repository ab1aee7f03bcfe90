"""Rebuilding a lost state DB from the nodes: one list call per node, the proxy's allocation record from one node,
and the Git revision; the decisions are gitkube.reconcile.rebuild's. Nothing on the nodes is changed here: pods
the rebuild adopts are found unchanged by the next pass, and only containers it shows are not wanted go then."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from gitkube.nodes.dataplane.kernelproxy import DIR_LABEL, KERNEL_PROXY_ROLE
from gitkube.nodes.dataplane.proxy import HAPROXY_CFG, PROXY_NAME, _read_file
from gitkube.nodes.transport.fleet import NodeHandle
from gitkube.reconcile.podlabels import MANAGED, ROLE, owned_by, read_labels
from gitkube.reconcile.rebuild import ListedContainer, RebuildPlan, Unwanted, plan_rebuild
from gitkube.reconcile.apps import template_hash
from gitkube.reconcile.configrefs import template_config_inputs
from gitkube.reconcile.services import parse_allocation_record

log = logging.getLogger(__name__)


@dataclass
class RebuildReport:
    """What a rebuild found and wrote."""

    adopted: int = 0
    unwanted: list[Unwanted] = field(default_factory=list)
    foreign: dict[str, int] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)  # node -> why it could not be listed
    allocations: int = 0  # Services whose ClusterIP came back from a node's proxy
    docker_calls: int = 0
    seconds: float = 0.0
    revision: str | None = None
    # Why nothing could be rebuilt although the nodes run this installation's pods (the revision is refused and
    # none the containers name is readable): then no node is synced, lest its pods be taken for orphans.
    blocked: str | None = None

    def summary(self) -> str:
        if self.blocked:
            return f"NOT rebuilt: {self.blocked}; the nodes are left alone until a valid revision is applied"
        parts = [f"{self.adopted} pod(s) adopted", f"{len(self.unwanted)} not wanted",
                 f"{self.allocations} Service allocation(s) recovered",
                 f"{self.docker_calls} Docker call(s) in {self.seconds:.2f}s"]
        if self.foreign:
            parts.append("containers of another installation left alone: "
                         + ", ".join(f"{n}: {c}" for n, c in sorted(self.foreign.items())))
        for n, why in sorted(self.unreachable.items()):
            parts.append(f"node {n} not listed: {why}")
        return "; ".join(parts)


def _listed(node: str, c: dict) -> ListedContainer:
    net = c.get("NetworkSettings") or {}
    ip = next((n.get("IPAddress") for n in (net.get("Networks") or {}).values() if n.get("IPAddress")), None)
    return ListedContainer(node=node, id=c["Id"], state=c.get("State", ""), labels=c.get("Labels") or {},
                           created=float(c.get("Created") or 0), image=c.get("Image", ""),
                           image_id=c.get("ImageID", ""), ip=ip)


def list_node(h: NodeHandle) -> list[dict]:
    """gitkube's containers on one node (pods and system containers alike): one Docker list call, tried a second
    time if the first fails (a node left unlisted would have its pods recreated elsewhere)."""
    try:
        return h.docker.list([f"{MANAGED}=true"])
    except Exception as e:  # noqa: BLE001 - a slow or reconnecting node gets one more chance
        log.warning("rebuild: listing node %s failed (%s); trying once more", h.name, e)
        return h.docker.list([f"{MANAGED}=true"])


def recover_allocation(fleet, listed: dict[str, list[dict]], cluster_id: str):
    """The Services' allocations recorded in the proxy configuration of the first node with a proxy (one archive
    read; None when no node has one). The proxy is the node's: its configuration is the one the installation
    holding the node's lock wrote last, whoever created the container."""
    for node, raw in sorted(listed.items()):
        proxy = next((c for c in raw if (c.get("Labels") or {}).get(ROLE) == "proxy"
                      and f"/{PROXY_NAME}" in (c.get("Names") or [])), None)
        kernel = next((c for c in raw if (c.get("Labels") or {}).get(ROLE) == KERNEL_PROXY_ROLE
                       and (c.get("Labels") or {}).get(DIR_LABEL)), None)
        if proxy is not None:
            data = _read_file(fleet[node], proxy["Id"], HAPROXY_CFG)
        elif kernel is not None:  # iptables mode: the rules file on the node, over SFTP
            try:
                data = fleet[node].ssh.read_file(f"{kernel['Labels'][DIR_LABEL]}/rules")
            except Exception as e:  # noqa: BLE001 - another node may have it
                log.warning("rebuild: node %s: reading the kernel proxy's rules: %s", node, e)
                data = None
        else:
            continue
        alloc = parse_allocation_record(data.decode(errors="replace")) if data else None
        if alloc is not None:
            return alloc
    return None


def rebuild_state(ctrl, rev, nodes) -> RebuildReport:
    """Rebuilds objects, statuses, bindings and allocations of ctrl's (empty) store from the nodes and `rev`."""
    t0 = time.monotonic()
    report = RebuildReport()
    fleet = ctrl._ensure_fleet(nodes)
    calls0 = sum(fleet[n].docker.calls for n in fleet.names())
    results = fleet.map(list_node, timeout=60)
    listed: dict[str, list[dict]] = {}
    for node, res in results.items():
        if isinstance(res, Exception):
            report.unreachable[node] = str(res)
        else:
            listed[node] = res
    containers = [_listed(node, c) for node, raw in listed.items() for c in raw]
    cluster_id = ctrl.cluster_id
    rev = _usable_revision(ctrl, rev, containers)
    report.revision = rev.sha
    desired = json.loads(json.dumps(rev.documents())) if not rev.problems else []  # our copy: uids go in
    config = getattr(rev, "config", None)

    def inputs(d: dict) -> list:  # a Deployment's template hash reads the config its env uses, as the planner's
        return template_config_inputs(d, config) if config is not None else []

    plan = plan_rebuild(desired, containers, cluster_id, lambda d: template_hash(d, inputs))
    alloc = recover_allocation(fleet, listed, cluster_id) if listed else None
    report.docker_calls = sum(fleet[n].docker.calls for n in fleet.names()) - calls0
    if not rev.problems:
        _write(ctrl.store, rev.sha, desired, plan, alloc)
    report.adopted = plan.adopted if not rev.problems else 0
    if rev.problems and any(read_labels(c.labels) and owned_by(c.labels, cluster_id) for c in containers):
        report.blocked = f"revision {str(rev.sha)[:12]} is refused ({len(rev.problems)} problem(s))"
    report.unwanted, report.foreign = plan.unwanted, plan.foreign
    report.allocations = len(alloc.cluster_ips) if alloc else 0
    report.seconds = time.monotonic() - t0
    for u in plan.unwanted:
        log.info("rebuild: pod %s on node %s (%s) is not wanted: %s", u.pod, u.node, u.pod_uid, u.why)
    for node, n in sorted(plan.foreign.items()):
        ctrl.store.record_event({"kind": "Node", "name": node, "namespace": ""}, "ForeignContainers",
                                f"{n} container(s) of another gitkube installation on node {node}: left alone",
                                "Warning")
    return report


def _usable_revision(ctrl, rev, containers: list[ListedContainer]):
    """The revision to rebuild from: the current one, or if it is refused, the one most running containers
    were made by (their labels name it)."""
    if not rev.problems:
        return rev
    from collections import Counter

    from gitkube.reconcile.podlabels import REVISION
    from gitkube.source import load_revision

    made_by = Counter(c.labels.get(REVISION) for c in containers if c.labels.get(REVISION))
    for sha, _ in made_by.most_common(1):
        try:
            older = load_revision(ctrl.source.repo, sha, ctrl.source.path, extra_files=(ctrl.source.inventory,))
        except Exception as e:  # noqa: BLE001 - the labelled revision may be gone from the repository
            log.warning("rebuild: revision %s named by the containers cannot be read: %s", sha[:12], e)
            continue
        if not older.problems:
            return older
    return rev


def _write(store, sha: str, desired: list[dict], plan: RebuildPlan, alloc) -> None:
    """Stores the revision's objects with the uids the nodes showed, the adopted pods with their statuses, the
    bindings and the allocations."""
    created = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["metadata"].get("creationTimestamp")
               for p in plan.pods if not p["metadata"].get("ownerReferences")}
    for o in desired:
        m = o.setdefault("metadata", {})
        key = (o.get("kind", ""), m.get("namespace") or "default", m.get("name", ""))
        uid = plan.uids.get(key)
        if uid:
            m["uid"] = uid
        if key[0] == "Pod" and created.get(key[1:]):
            m["creationTimestamp"] = created[key[1:]]
    store.sync_revision(sha, desired)
    for rs in plan.replicasets:
        store.put(rs, origin="controller")
    for pod in plan.pods:
        m = pod["metadata"]
        if m.get("ownerReferences"):
            store.put(pod, origin="controller")
        else:  # a bare pod is Git's: it came with the revision, only its binding and status are the nodes'
            store.set_fields("Pod", m["namespace"], m["name"], spec={"nodeName": pod["spec"]["nodeName"]})
            store.update_status("Pod", m["namespace"], m["name"], pod["status"])
    if plan.bindings:
        store.kv_set("bindings", {**(store.kv_get("bindings", {}) or {}), **plan.bindings})
    if alloc is not None:
        store.kv_set("service_alloc", {"cluster_ips": alloc.cluster_ips, "node_ports": alloc.node_ports})
