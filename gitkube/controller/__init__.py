"""The control loop's I/O: read the revision, sync the store, heartbeat the nodes, carry out the cluster plan
and each node's pod-sync plan, and record status and events. Decisions live in gitkube.reconcile."""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field

from gitkube import instruments
from gitkube.api import parse_object, to_k8s
from gitkube.api.errors import InvalidInput
from gitkube.nodes.transport.fleet import Fleet, ProbeResult, node_object
from gitkube.nodes.inventory import NodeConfig, load_inventory
from gitkube.nodes.kubelet.runtime import ClusterContext, PodRuntime, SyncResult
from gitkube.reconcile.cluster import (
    ClusterPlan,
    is_deleting,
    key_of,
    meta,
    plan_cluster,
    service_endpoints,
)
from gitkube.controller.rollout import purge_apps, write_app_statuses, write_apps
from gitkube.reconcile.containerenv import ServiceInfo
from gitkube.reconcile.nodelifecycle import LifecyclePod, NodeCondition, NodeHeartbeat, node_lifecycle
from gitkube.reconcile.podsync import PodWork, iso, plan_node
from gitkube.reconcile.scheduler import Scheduler
from gitkube.source import load_revision
from gitkube.source.secrets import identity_path, load_identities
from gitkube.controller.configwire import config_at_applied
from gitkube.reconcile.configrefs import env_digests, template_config_inputs
from gitkube.store import Store

log = logging.getLogger(__name__)


@dataclass
class Source:
    """Where desired state comes from."""

    repo: str = "."
    rev: str | None = None
    path: str = "manifests"
    inventory: str = "inventory.yaml"
    age_identity: str | None = None  # decrypts *.age manifests (else env GITKUBE_AGE_IDENTITY)


@dataclass
class PassReport:
    """What one reconcile pass saw and did."""

    sha: str | None = None
    refused: list = field(default_factory=list)
    synced: object = None
    plan: ClusterPlan | None = None
    node_actions: dict[str, list] = field(default_factory=dict)
    node_errors: dict[str, str] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = []
        if self.refused:
            parts.append(f"revision {str(self.sha)[:12]} REFUSED ({len(self.refused)} problem(s)); last good revision stays applied")
        elif self.synced is not None and getattr(self.synced, "added", None) is not None:
            s = self.synced
            if s.added or s.changed or s.removed:
                parts.append(f"revision {str(self.sha)[:12]}: {len(s.added)} added, {len(s.changed)} changed, {len(s.removed)} removed")
        if self.plan is not None:
            p = self.plan
            for label, n in (("pods created", len(p.create)), ("pods deleted", len(p.delete)), ("bound", len(p.bindings)),
                             ("unschedulable", len(p.unschedulable))):
                if n:
                    parts.append(f"{n} {label}")
        acts = sum(len(a) for a in self.node_actions.values())
        if acts:
            parts.append(f"{acts} node action(s)")
        for n, e in sorted(self.node_errors.items()):
            parts.append(f"node {n}: {e}")
        return "; ".join(parts) or "no changes"


class Controller:
    """One controller per state directory (the store's writer lock); its passes are idempotent."""

    def __init__(self, state_dir: str, source: Source, *, writer: bool = True, progress=None,
                 grace_period: float = 20.0, eviction_timeout: float = 30.0, probe_timeout: float = 6.0):
        self.source = source
        self.store = Store.open(state_dir, writer=writer)
        self.progress = progress or (lambda m: None)
        self.grace_period = grace_period
        self.eviction_timeout = eviction_timeout
        self.probe_timeout = probe_timeout
        self.scheduler = Scheduler()
        self.rng = random.Random()
        self.fleet: Fleet | None = None
        self._fleet_key: tuple | None = None
        self.runtimes: dict[str, PodRuntime] = {}
        self._pulls_saved: dict = {}  # image pull back-off as last written to the store
        self.probes = None  # a ProbeManager, set by serve/apply --wait when probes run
        self.services_hook = None  # per-node Services data plane, set when available
        self.template_inputs = None  # extra pod-template hash inputs of a Deployment (reconcile.apps.TemplateInputs)
        self.lock = threading.RLock()
        self._removed_uids: set[str] = set()  # deleted pods whose node showed no container of theirs last sync
        self.first_seen: dict[str, float] = {}  # node -> this process's first heartbeat of it (eviction clocks)
        self.identities = load_identities(identity_path(source.age_identity))
        self._config: dict | None = None  # ConfigMap/Secret values of the applied revision (memory only)
        self.template_inputs = self._config_template_inputs

    def close(self) -> None:
        if self.probes is not None:
            self.probes.close()
        for rt in self.runtimes.values():
            rt.drain()
        if self.fleet is not None:
            self.fleet.close()
        self.store.close()

    # -- source and inventory ---------------------------------------------------------------------------
    def load(self):
        """The revision (validated) and the inventory nodes it names (from the revision when it holds one)."""
        rev = load_revision(self.source.repo, self.source.rev, self.source.path, extra_files=(self.source.inventory,),
                            identities=self.identities,
                            cache_dir=self.store.state_dir if self.store.writer else None)
        inv_text = (rev.files or {}).get(self.source.inventory)
        text = inv_text.decode() if isinstance(inv_text, bytes) else inv_text
        nodes = load_inventory(self.source.inventory, text=text)
        return rev, nodes

    def _ensure_fleet(self, nodes: list[NodeConfig]) -> Fleet:
        key = tuple((n.name, n.host, n.port, n.user, n.identity_file, n.host_keys, n.docker_host) for n in nodes)
        if self.fleet is None or key != self._fleet_key:
            if self.fleet is not None:
                self.fleet.close()
            self.fleet = Fleet(nodes)
            self._fleet_key = key
            self.runtimes = {n: PodRuntime(self.fleet[n]) for n in self.fleet.names()}
            self._pulls_saved = self.store.kv_get("image_pulls", {}) or {}
            for n, rt in self.runtimes.items():
                rt.restore_pull_backoff(self._pulls_saved.get(n, {}))
        return self.fleet

    # -- nodes ------------------------------------------------------------------------------------------
    def heartbeat(self, nodes: list[NodeConfig], now: float) -> dict[str, bool]:
        """Probe every node, update Node objects and heartbeats, evict pods of nodes gone too long."""
        fleet = self._ensure_fleet(nodes)
        probes: dict[str, ProbeResult] = fleet.probe(timeout=self.probe_timeout)
        hbs = self.store.kv_get("heartbeats", {}) or {}
        prev_conds = {}
        for n in nodes:
            h = hbs.get(n.name) or {"registered_at": now}
            p = probes.get(n.name)
            h["last_attempt"] = now
            self.first_seen.setdefault(n.name, now)
            if p and p.ok:
                h["last_success"] = now
                h["last_error"] = h["error_reason"] = None
            else:
                h["last_error"] = p.message if p else "not probed"
                h["error_reason"] = p.reason if p else "NotProbed"
                h["runtime_error"] = bool(p and p.reason == "DockerUnavailable")
            hbs[n.name] = h
            c = h.get("condition")
            if c:
                prev_conds[n.name] = NodeCondition(**c)
        heartbeats = [NodeHeartbeat(node=k, last_success=v.get("last_success"), last_attempt=v.get("last_attempt"),
                                    last_error=v.get("last_error"), runtime_error=bool(v.get("runtime_error")),
                                    registered_at=v.get("registered_at", now), observed_since=self.first_seen.get(k),
                                    error_reason=v.get("error_reason")) for k, v in hbs.items()
                      if k in {n.name for n in nodes}]
        pods = self.store.list("Pod", namespace="*")
        lp = [LifecyclePod(uid=meta(p)["uid"], namespace=key_of(p)[0], name=meta(p)["name"],
                           node_name=(p.get("spec") or {}).get("nodeName"),
                           owner_uid=next((r["uid"] for r in meta(p).get("ownerReferences") or [] if r.get("controller")), None),
                           ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or []),
                           deleting=is_deleting(p), phase=(p.get("status") or {}).get("phase") or "Pending") for p in pods]
        decision = node_lifecycle(heartbeats, lp, now, previous=prev_conds, grace_period=self.grace_period,
                                  eviction_timeout=self.eviction_timeout)
        ready = {}
        for n in nodes:
            cond = decision.conditions.get(n.name)
            if cond is not None:
                hbs[n.name]["condition"] = {"status": cond.status, "reason": cond.reason, "message": cond.message,
                                            "last_heartbeat_time": cond.last_heartbeat_time,
                                            "last_transition_time": cond.last_transition_time}
            status = cond.status if cond else ("True" if probes.get(n.name) and probes[n.name].ok else "Unknown")
            # Sync only nodes that answered this heartbeat: a node still within its grace period but cut off
            # would hold the whole pass for the Docker call timeout (30 s) before failing anyway.
            ready[n.name] = status == "True" and bool(probes.get(n.name) and probes[n.name].ok)
            prev_obj = self.store.get("Node", "", n.name)
            obj = node_object(n, probes.get(n.name), prev_obj, ready_override=status)
            rc = obj["status"]["conditions"][0]
            if cond is not None:
                rc.update(reason=cond.reason, message=cond.message,
                          lastTransitionTime=iso(cond.last_transition_time) or rc["lastTransitionTime"])
                if cond.last_heartbeat_time:
                    rc["lastHeartbeatTime"] = iso(cond.last_heartbeat_time)
            if prev_obj is None or prev_obj.get("status") != obj["status"] or prev_obj["metadata"].get("labels") != obj["metadata"]["labels"]:
                if prev_obj is not None and (prev_obj.get("status") or {}).get("conditions", [{}])[0].get("status") != status:
                    self.store.record_event({"kind": "Node", "name": n.name, "namespace": ""},
                                            "NodeReady" if status == "True" else "NodeNotReady",
                                            f"Node {n.name} status is now: {'NodeReady' if status == 'True' else 'NodeNotReady'} ({rc.get('message', '')})",
                                            "Normal" if status == "True" else "Warning")
                self.store.put(obj, origin="controller")
        self.store.kv_set("heartbeats", hbs)
        for ev in decision.evict:
            p = ev.pod
            if self.store.mark_deleted("Pod", p.namespace, p.name):
                self.store.record_event({"kind": "Pod", "namespace": p.namespace, "name": p.name, "uid": p.uid},
                                        ev.event_reason, ev.event_message, "Warning")
        return ready

    # -- one pass ---------------------------------------------------------------------------------------
    def reconcile(self, execute: bool = True, now: float | None = None) -> PassReport:
        """One level-triggered pass: source → store → nodes → controllers → pods on nodes → status."""
        with self.lock:
            t0 = time.monotonic()
            try:
                report = self._reconcile(now or time.time())
            except Exception:
                instruments.pass_done(None, time.monotonic() - t0, raised=True)
                raise
            instruments.pass_done(report, time.monotonic() - t0)
            return report

    def _reconcile(self, now: float) -> PassReport:
        t0 = time.monotonic()
        report = PassReport()
        try:
            rev, nodes = self.load()
        except InvalidInput as e:
            # A bad inventory (or revision file in it) refuses the pass; the last applied state stays.
            report.refused = e.problems
            self.store.record_refused("inventory", e.problems)
            return report
        report.sha = rev.sha
        if rev.problems:
            report.refused = rev.problems
            if self.store.kv_get("last_refused") != rev.sha:
                self.store.record_refused(rev.sha, rev.problems)
                self.store.kv_set("last_refused", rev.sha)
                instruments.revision_refused()
            if self._config is None:
                self._config = config_at_applied(self.store, self.source, self.identities)
        else:
            report.synced = self.store.sync_revision(rev.sha, [to_k8s(o) for o in rev.objects])  # Secrets redacted
            self._config = rev.config
        ready_nodes = self.heartbeat(nodes, now)
        self._reapply_bindings()
        plan = self._plan(now)
        report.plan = plan
        self._execute_plan(plan)
        self._purge_finished_deletions()
        dataplane = self._services(plan)
        ctx = self._cluster_context(dataplane)
        if dataplane is not None:
            # Addresses, proxy and DNS first, so that pods started in this pass can already resolve and connect.
            self._sync_services(nodes, ready_nodes, dataplane, report)
        report_results = self._sync_nodes(nodes, ready_nodes, ctx)
        # Readiness seen in this sync moves Endpoints and the proxies now, not one pass later.
        eps = service_endpoints(self.store.list("Pod", namespace="*"), self.store.list("Service", namespace="*"))
        ep_dicts = {k: e.as_dict() for k, e in eps.items()}
        if dataplane is not None and ep_dicts != plan.endpoints:
            plan.endpoint_objects, plan.endpoints = eps, ep_dicts
            self._write_endpoints(plan)
            dataplane = self._services(plan)
            self._sync_services(nodes, ready_nodes, dataplane, report)
        for name, res in report_results.items():
            if isinstance(res, Exception):
                report.node_errors[name] = str(res)
            else:
                report.node_actions[name] = res.actions
                report.api_calls[name] = res.api_calls
        self._purge_finished_deletions()
        report.seconds = time.monotonic() - t0
        return report

    def _plan(self, now: float) -> ClusterPlan:
        pods = self.store.list("Pod", namespace="*")
        rcs = self.store.list("ReplicationController", namespace="*")
        svcs = self.store.list("Service", namespace="*")
        nodes = self.store.list("Node")
        inv = set(self.fleet.names()) if self.fleet else set()
        nodes = [n for n in nodes if meta(n)["name"] in inv]
        return plan_cluster(pods, rcs, svcs, nodes, now, self.scheduler, self.rng,
                            deployments=self.store.list("Deployment", namespace="*"),
                            replicasets=self.store.list("ReplicaSet", namespace="*"),
                            git_commit=self.store.applied_revision(), template_inputs=self.template_inputs)

    def _config_template_inputs(self, d: dict) -> list:
        """A Deployment's pod-template-hash input from the config its env reads (kept when config is unreadable)."""
        key = "/".join(key_of(d))
        saved = self.store.kv_get("config_template_inputs", {}) or {}
        if self._config is None:
            return saved.get(key, [])
        inputs = template_config_inputs(d, self._config)
        if saved.get(key, []) != inputs and self.store.writer:
            self.store.kv_set("config_template_inputs", {**saved, key: inputs})
        return inputs

    def _reapply_bindings(self) -> None:
        """Bindings outlive a changed Git spec: the pod stays on its node (the kubelet restarts changed containers)."""
        binds = self.store.kv_get("bindings", {}) or {}
        if not binds:
            return
        for p in self.store.list("Pod", namespace="*"):
            uid = meta(p).get("uid")
            if uid in binds and not (p.get("spec") or {}).get("nodeName"):
                ns, name = key_of(p)
                self.store.set_fields("Pod", ns, name, spec={"nodeName": binds[uid]})

    def _execute_plan(self, plan: ClusterPlan) -> None:
        binds = self.store.kv_get("bindings", {}) or {}
        write_apps(self.store, plan)  # ReplicaSets before the pods they own
        for c in plan.create:
            ns, name = key_of(c.pod)
            self.store.put(c.pod, origin="controller")
            self._event(c.pod, "SuccessfulCreate", f"Created pod: {name}", involved_owner=True)
        for d in plan.delete:
            if self.store.mark_deleted("Pod", d.namespace, d.name):
                p = self.store.get("Pod", d.namespace, d.name)
                if p is not None:
                    self._event(p, "SuccessfulDelete", f"Deleted pod: {d.name} ({d.reason})", involved_owner=True)
        for o in plan.owners:
            self.store.set_fields("Pod", o.namespace, o.name, metadata={"ownerReferences": [o.owner] if o.owner else None})
        for b in plan.bindings:
            self.store.set_fields("Pod", b.namespace, b.name, spec={"nodeName": b.node})
            binds[b.uid] = b.node
            p = self.store.get("Pod", b.namespace, b.name)
            st = dict(p.get("status") or {})
            st["conditions"] = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"] + [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": iso(time.time())}]
            self.store.update_status("Pod", b.namespace, b.name, st)
            self._event(p, "Scheduled", f"Successfully assigned {b.namespace}/{b.name} to {b.node}")
        if plan.bindings:
            self.store.kv_set("bindings", binds)
        for u in plan.unschedulable:
            p = self.store.get("Pod", u.namespace, u.name)
            if p is None:
                continue
            st = dict(p.get("status") or {})
            st["phase"] = "Pending"
            cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": u.message}
            old = next((c for c in st.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
            cond["lastTransitionTime"] = old.get("lastTransitionTime") if old.get("status") == "False" else iso(time.time())
            st["conditions"] = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"] + [cond]
            if st != p.get("status"):
                self.store.update_status("Pod", u.namespace, u.name, st)
            self._event(p, "FailedScheduling", u.message, "Warning")
        for (ns, name), st in plan.rc_status.items():
            rc = self.store.get("ReplicationController", ns, name)
            if rc is not None and rc.get("status") != st:
                self.store.update_status("ReplicationController", ns, name, st)
        write_app_statuses(self.store, plan)
        self._write_endpoints(plan)

    def _write_endpoints(self, plan: ClusterPlan) -> None:
        for (ns, name), e in plan.endpoints.items():
            old = self.store.get("Endpoints", ns, name)
            if old is None or old.get("subsets") != e.get("subsets"):
                self.store.put(e, origin="controller")
        # Endpoints of services that are gone go with them.
        svc_keys = {key_of(s) for s in self.store.list("Service", namespace="*") if not is_deleting(s)}
        for e in self.store.list("Endpoints", namespace="*"):
            if key_of(e) not in svc_keys:
                self.store.delete("Endpoints", *key_of(e))

    def _event(self, obj: dict, reason: str, message: str, type_: str = "Normal", involved_owner: bool = False) -> None:
        m = meta(obj)
        target = {"kind": "Pod", "namespace": m.get("namespace") or "default", "name": m["name"], "uid": m.get("uid")}
        if involved_owner:
            ref = next((r for r in m.get("ownerReferences") or [] if r.get("controller")), None)
            if ref:
                target = {"kind": ref["kind"], "namespace": m.get("namespace") or "default", "name": ref["name"], "uid": ref["uid"]}
        self.store.record_event(target, reason, message, type_)

    def _purge_finished_deletions(self) -> None:
        """Deleted RCs and Services go once nothing depends on them; deleted pods once their node has removed them."""
        pods = self.store.list("Pod", namespace="*")
        gone_nodes = set(self.fleet.names()) if self.fleet else set()
        for p in pods:
            if is_deleting(p):
                node = (p.get("spec") or {}).get("nodeName")
                if not node or node not in gone_nodes or meta(p).get("uid") in self._removed_uids:
                    self.store.delete("Pod", *key_of(p))
        owners = {r.get("uid") for p in self.store.list("Pod", namespace="*") for r in meta(p).get("ownerReferences") or []}
        for rc in self.store.list("ReplicationController", namespace="*"):
            if is_deleting(rc) and meta(rc).get("uid") not in owners:
                self.store.delete("ReplicationController", *key_of(rc))
        purge_apps(self.store)
        for s in self.store.list("Service", namespace="*"):
            if is_deleting(s):
                self.store.delete("Service", *key_of(s))
        for n in self.store.list("Namespace"):
            if is_deleting(n):
                self.store.delete("Namespace", "", meta(n)["name"])

    # -- services ---------------------------------------------------------------------------------------
    def _services(self, plan: ClusterPlan):
        """ClusterIPs and NodePorts (stable, recorded on the Services), the proxy config and DNS hosts for every node."""
        from gitkube.reconcile.services import Allocation, plan_dataplane

        svcs = [s for s in self.store.list("Service", namespace="*") if not is_deleting(s)]
        prev = self.store.kv_get("service_alloc")
        if not svcs and not prev:
            return None  # no Services, ever: no proxy or DNS containers on the nodes
        models = []
        for s in svcs:
            try:
                models.append(parse_object({k: v for k, v in s.items() if k != "status"}))
            except Exception as e:  # noqa: BLE001
                log.warning("service %s/%s skipped: %s", *key_of(s), e)
        prev_alloc = Allocation(prev["cluster_ips"], prev["node_ports"]) if prev else None
        dp = plan_dataplane(models, plan.endpoint_objects, prev_alloc)
        self.store.kv_set("service_alloc", {"cluster_ips": dp.allocation.cluster_ips, "node_ports": dp.allocation.node_ports})
        for s in svcs:
            ns, name = key_of(s)
            k = f"{ns}/{name}"
            errs = dp.allocation.errors.get(k)
            if errs:
                for msg in errs:
                    self.store.record_event({"kind": "Service", "namespace": ns, "name": name, "uid": meta(s).get("uid")},
                                            "FailedToAllocate", msg, "Warning")
                continue
            spec = s.get("spec") or {}
            ip = dp.allocation.cluster_ips.get(k)
            ports = []
            for p in spec.get("ports") or []:
                np = dp.allocation.node_ports.get(f"{k}:{p['port']}/{p.get('protocol', 'TCP')}")
                ports.append({**p, "nodePort": np} if np else p)
            if spec.get("clusterIP") != ip or spec.get("ports") != ports:
                self.store.set_fields("Service", ns, name, spec={"clusterIP": ip, "ports": ports})
        return dp

    def _sync_services(self, nodes: list[NodeConfig], ready: dict[str, bool], dp, report: PassReport) -> None:
        from gitkube.nodes.dataplane.proxy import sync_services

        names = [n.name for n in nodes if ready.get(n.name)]

        def one(h):
            return sync_services(h, list(dp.cluster_ips), dp.haproxy_cfg, dp.dns_hosts, dp.dns_ip)

        for name, res in (self.fleet.map(one, names, timeout=300) if names else {}).items():
            instruments.proxy_synced(name, res)
            if isinstance(res, Exception):
                report.node_errors[name] = f"services: {res}"
                log.warning("node %s: services data plane: %s", name, res)
            elif res:
                log.info("node %s: services data plane changed: %s", name, ", ".join(sorted(res)))

    # -- pods on nodes ----------------------------------------------------------------------------------
    def _cluster_context(self, dp=None) -> ClusterContext:
        if dp is not None:
            return ClusterContext(dns_server=dp.dns_ip, services=dp.env, config=self._config)
        services: dict[str, list[ServiceInfo]] = {}
        for s in self.store.list("Service", namespace="*"):
            spec = s.get("spec") or {}
            ip = spec.get("clusterIP")
            if not ip or is_deleting(s):
                continue
            services.setdefault(key_of(s)[0], []).append(
                ServiceInfo(meta(s)["name"], ip, tuple((p.get("name"), p["port"], p.get("protocol", "TCP")) for p in spec.get("ports") or [])))
        dns = self.store.kv_get("cluster_dns")
        return ClusterContext(dns_server=dns, services=services, config=self._config)

    def works_by_node(self) -> dict[str, list[PodWork]]:
        """Pods bound to each node, as the kubelets should run them."""
        out: dict[str, list[PodWork]] = {}
        for p in self.store.list("Pod", namespace="*"):
            node = (p.get("spec") or {}).get("nodeName")
            if not node:
                continue
            body = {k: v for k, v in p.items() if k != "status"}
            try:
                model = parse_object(body)
            except Exception as e:  # noqa: BLE001 - a stored object that no longer validates is skipped, loudly
                log.warning("pod %s/%s skipped: %s", *key_of(p), e)
                continue
            # A ReplicaSet's pods keep the env they started with: their Deployment rolls out (template_inputs).
            by_rs = any(r.get("kind") == "ReplicaSet" for r in meta(p).get("ownerReferences") or [])
            digests = {} if by_rs else env_digests(model.spec, key_of(p)[0], self._config or {})
            out.setdefault(node, []).append(PodWork(model, meta(p)["uid"], deleting=is_deleting(p), last_status=p.get("status") or {},
                                                    config_digests=digests))
        return out

    def _sync_nodes(self, nodes: list[NodeConfig], ready: dict[str, bool], ctx: ClusterContext) -> dict[str, SyncResult | Exception]:
        works = self.works_by_node()
        readiness = self.probes.readiness() if self.probes is not None else {}
        names = [n.name for n in nodes if ready.get(n.name)]

        def one(h) -> SyncResult:
            return self.runtimes[h.name].sync(works.get(h.name, []), ctx, ready=readiness)

        results = self.fleet.map(one, names, timeout=600) if names else {}
        removed: set[str] = set()
        for name, res in results.items():
            if isinstance(res, Exception):
                log.warning("node %s: sync failed: %s", name, res)
                continue
            observed_uids = {o.pod_uid for o in res.observed}
            for w in works.get(name, []):
                if w.deleting and w.uid not in observed_uids:
                    removed.add(w.uid)
            for w in works.get(name, []):
                st = res.statuses.get(w.uid)
                if st is not None and st != w.last_status:
                    ns = w.pod.metadata.namespace or "default"
                    try:
                        self.store.update_status("Pod", ns, w.pod.metadata.name, st)
                    except Exception:  # noqa: BLE001 - deleted meanwhile
                        pass
            by_uid = {w.uid: w for w in works.get(name, [])}
            for ev in res.events:
                w = by_uid.get(ev.pod_uid)
                if w is not None:
                    ns = w.pod.metadata.namespace or "default"
                    involved = {"kind": "Pod", "namespace": ns, "name": w.pod.metadata.name, "uid": w.uid}
                else:
                    involved = {"kind": "Node", "namespace": "", "name": name}
                self.store.record_event(involved, ev.reason, ev.message, ev.type, host=name)
            if self.probes is not None:
                self.probes.update(name, works.get(name, []), res.observed)
        self._removed_uids = removed
        # Image pull back-off outlives this process, as restartCount does on the nodes' labels.
        pulls = {n: b for n, rt in self.runtimes.items() if (b := rt.pull_backoff())}
        if pulls != self._pulls_saved:
            self.store.kv_set("image_pulls", pulls)
            self._pulls_saved = pulls
        return results

    # -- dry run ----------------------------------------------------------------------------------------
    def node_plan(self, nodes: list[NodeConfig]) -> dict[str, list]:
        """What each node's kubelet would do now (observed with one list call per node, nothing changed)."""
        fleet = self._ensure_fleet(nodes)
        works = self.works_by_node()
        now = time.time()

        def one(h):
            return plan_node(works.get(h.name, []), self.runtimes[h.name].observe(), now)

        return fleet.map(one, timeout=60)


def dry_run(state_dir: str, source: Source, now: float | None = None):
    """The plan `apply` would carry out now, computed by the same code on a throwaway copy of the state DB;
    nodes are only observed (one list call each). Returns (ClusterPlan, {node: [actions] | Exception}, works)."""
    import os
    import shutil
    import sqlite3
    import tempfile

    tmp = tempfile.mkdtemp(prefix="gitkube-diff-")
    try:
        src = os.path.join(state_dir, "state.db")
        if os.path.exists(src):
            with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as a, sqlite3.connect(os.path.join(tmp, "state.db")) as b:
                a.backup(b)
        ctrl = Controller(tmp, source, writer=True)
        try:
            now = now or time.time()
            rev, nodes = ctrl.load()
            if rev.problems:
                raise InvalidInput(rev.problems, "revision")
            ctrl.store.sync_revision(rev.sha, [to_k8s(o) for o in rev.objects])
            ctrl._config = rev.config
            ctrl.heartbeat(nodes, now)
            ctrl._reapply_bindings()
            plan = ctrl._plan(now)
            ctrl._execute_plan(plan)  # into the throwaway copy only
            node_actions = ctrl.node_plan(nodes)
            works = {w.uid: w for ws in ctrl.works_by_node().values() for w in ws}
            return plan, node_actions, works
        finally:
            ctrl.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def render_plan(plan: ClusterPlan, node_actions: dict, works: dict) -> list[str]:
    """Human lines for a dry-run plan: pods created/deleted/bound, and what each node would do."""
    from gitkube.reconcile import podsync as ps

    lines = []
    for c in plan.create:
        m = c.pod["metadata"]
        lines.append(f"+ pod {m['namespace']}/{m['name']} (generated name): {c.reason}")
    for d in plan.delete:
        lines.append(f"- pod {d.namespace}/{d.name}: {d.reason}")
    for o in plan.owners:
        lines.append(f"~ pod {o.namespace}/{o.name}: " + (f"adopted by {o.owner['kind']} {o.owner['name']}" if o.owner else "released by its controller"))
    for b in plan.bindings:
        lines.append(f"> pod {b.namespace}/{b.name} → node {b.node} ({b.why})")
    for u in plan.unschedulable:
        lines.append(f"! pod {u.namespace}/{u.name} stays Pending: {u.message}")
    for node in sorted(node_actions):
        acts = node_actions[node]
        if isinstance(acts, Exception):
            lines.append(f"? node {node}: not observed ({acts})")
            continue
        for a in acts:
            w = works.get(a.pod_uid)
            pod = w.key if w else f"(unknown pod {a.pod_uid[:8]})"
            if isinstance(a, ps.EnsureSandbox):
                lines.append(f"  node {node}: start pod sandbox for {pod}")
            elif isinstance(a, ps.StartContainer):
                lines.append(f"  node {node}: start container {pod}:{a.container} (restart #{a.restart_count}, {a.reason})")
            elif isinstance(a, ps.KillContainer):
                lines.append(f"  node {node}: kill container {pod}:{a.container} ({a.reason}, grace {a.grace}s)")
            elif isinstance(a, ps.RemoveContainer):
                lines.append(f"  node {node}: remove old container {a.container_id[:12]} of {pod}")
            elif isinstance(a, ps.KillPod):
                lines.append(f"  node {node}: terminate pod {pod} ({a.reason}, grace {a.grace}s)")
    return lines
