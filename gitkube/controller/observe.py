"""Observe: one snapshot of everything a pass decides from — the revision, the inventory, the store (objects and the
controller's own records), the nodes' heartbeats, each node's containers and the probe results — as a
`reconcile.plan.Observation`. Observing changes nothing anywhere: it reads the store and lists the nodes."""
from __future__ import annotations

import logging
import time

from gitkube.api.errors import InvalidInput
from gitkube.api.views import PodView
from gitkube.controller.context import Source
from gitkube.nodes.inventory import NodeConfig, load_inventory
from gitkube.nodes.kubelet.runtime import PodRuntime
from gitkube.nodes.transport.fleet import Fleet, ProbeResult, node_object
from gitkube.reconcile import podsync as ps
from gitkube.reconcile.plan import STORE_KINDS, NodeSeen, Observation
from gitkube.source import load_revision
from gitkube.store import Store

log = logging.getLogger(__name__)

KV_KEYS = ("heartbeats", "bindings", "image_pulls", "service_alloc", "cluster_dns", "last_refused")


def load_source(source: Source, identities=None, cache_dir: str | None = None, reuse=None):
    """The revision (validated; *.age manifests decrypted with `identities`) and the inventory nodes it names (from
    the revision when it holds one); raises InvalidInput for a bad inventory, SourceError for an unreadable repo.
    `reuse`: the Revision the caller loaded last from the same source (kept when its commit is still the one)."""
    rev = load_revision(source.repo, source.rev, source.path, extra_files=(source.inventory,), identities=identities,
                        cache_dir=cache_dir, reuse=reuse)
    inv_text = (rev.files or {}).get(source.inventory)
    text = inv_text.decode() if isinstance(inv_text, bytes) else inv_text
    return rev, load_inventory(source.inventory, text=text)


def read_store(store: Store) -> tuple[dict, dict, dict]:
    """Stored objects by kind (every kind), the revision-sync index and the controller's records."""
    by_kind: dict[str, list[dict]] = {k: [] for k in STORE_KINDS}
    for o in store.list():
        by_kind.setdefault(o.get("kind", ""), []).append(o)
    stored = {k: tuple(v) for k, v in by_kind.items()}
    index = {tuple(k): v for k, v in store.desired_index().items()}
    kv = {k: store.kv_get(k) for k in KV_KEYS}
    return stored, index, kv


def _seen(cfg: NodeConfig, probe: ProbeResult | None, prev: dict | None, containers) -> NodeSeen:
    return NodeSeen(name=cfg.name, host_ip=cfg.host, node_object=node_object(cfg, probe, prev),
                    probed=probe is not None, reachable=bool(probe and probe.ok),
                    runtime_error=bool(probe and probe.reason == "DockerUnavailable"),
                    reason="" if probe is None or probe.ok else probe.reason,
                    message="" if probe is None or probe.ok else probe.message,
                    containers=None if containers is None else tuple(containers))


def observe_nodes(fleet: Fleet, runtimes: dict[str, PodRuntime], nodes: list[NodeConfig], stored: dict,
                  probes: dict[str, ProbeResult]) -> tuple[dict[str, NodeSeen], dict[str, int]]:
    """The containers of the nodes whose heartbeat (`probes`, this pass's) answered: one list call each, none while
    the node's event stream says nothing changed, plus an inspect only for a container whose state changed since
    the last stored status. Also the Docker calls each list took."""
    prev = {PodView(n).name: n for n in stored.get("Node", ())}
    by_node: dict[str, list] = {}
    for p in stored.get("Pod", ()):
        v = PodView(p)
        if v.node:
            by_node.setdefault(v.node, []).append((v.uid, dict(v.status)))

    def one(h):
        calls0 = h.docker.calls
        seen = runtimes[h.name].observe(ps.status_hints_of(by_node.get(h.name, ())))
        return seen, h.docker.calls - calls0

    ok = [n.name for n in nodes if probes.get(n.name) and probes[n.name].ok]
    listed = fleet.map(one, ok, timeout=60) if ok else {}
    out, calls = {}, {}
    for n in nodes:
        res = listed.get(n.name)
        probe = probes.get(n.name)
        if isinstance(res, Exception):
            log.warning("node %s: listing its containers failed: %s", n.name, res)
            probe = ProbeResult(n.name, False, None, None, "NodeUnreachable", f"listing containers: {res}", 0.0)
            res = None
        if res is not None:
            calls[n.name] = res[1]
        out[n.name] = _seen(n, probe, prev.get(n.name), res[0] if res is not None else None)
    return out, calls


def observe_offline(nodes: list[NodeConfig], stored: dict) -> dict[str, NodeSeen]:
    """The nodes as the store last saw them: no heartbeat, no listing (the planner reads the stored statuses)."""
    prev = {PodView(n).name: n for n in stored.get("Node", ())}
    return {n.name: NodeSeen(name=n.name, host_ip=n.host, node_object=prev.get(n.name) or node_object(n, None, None),
                             message="offline: not contacted")
            for n in nodes}


def snapshot(store: Store, read: tuple[dict, dict, dict], *, rev=None, problems=(),
             node_seen: dict[str, NodeSeen] | None = None, readiness=None, waiting=None, offline: bool = False,
             now: float | None = None, first_seen=None, config=None, cluster: str = "") -> Observation:
    """The Observation of one pass from what was read (`read`: read_store's stored objects, index and records)."""
    stored, index, kv = read
    refused_inventory = rev is None
    return Observation(
        now=now or time.time(), sha=None if rev is None else rev.sha,
        problems=tuple(problems) if refused_inventory else tuple(rev.problems), refused_what="inventory" if refused_inventory else "",
        desired=None if rev is None or rev.problems else tuple(rev.documents()),
        stored=stored, index=index, kv=kv, nodes=node_seen or {}, readiness=dict(readiness or {}),
        waiting=dict(waiting or {}), offline=offline, first_seen=dict(first_seen or {}), config=config,
        applied_sha=store.applied_revision(), cluster=cluster)


def read_revision(source: Source, identities=None, cache_dir: str | None = None, reuse=None):
    """(revision, nodes, problems): a bad inventory gives (None, None, its problems). With `cache_dir` (the state
    dir, when this process is its writer) parsed manifests come from its manifest cache; see load_source for
    `reuse`."""
    try:
        rev, nodes = load_source(source, identities, cache_dir, reuse)
    except InvalidInput as e:
        return None, None, list(e.problems)
    return rev, nodes, []
