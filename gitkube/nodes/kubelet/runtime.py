"""Pods on a node's Docker engine: the kubelet's hands. Observes gitkube's containers with one labelled list call
and executes the pure planner's actions (sandbox, containers, hooks, graceful kills), reporting what happened as an
`Execution` (events, containers held back and why, failed image pulls). It decides nothing: what to start, restart
or hold back in image pull back-off is gitkube.reconcile.podsync's."""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gitkube.api import cpu_millis, memory_bytes
from gitkube.api.views import find_condition
from gitkube.nodes.transport.docker_api import APIError, NotFound
from gitkube.nodes.transport.fleet import NodeHandle
from gitkube.nodes.images.archive import PAUSE_IMAGE
from gitkube.nodes.kubelet import hooks
from gitkube.nodes.kubelet.configvol import ConfigVolumes, VolumeWriteError, create_volumes, volume_name
from gitkube.reconcile.configrefs import ConfigError, config_volumes, volume_files
from gitkube.nodes.transport.ssh import SSHError
from gitkube.reconcile.containerenv import EnvService, command_line, container_env
from gitkube.reconcile.podlabels import CLUSTER as CLUSTER_LABEL, owned_by, pod_labels
from gitkube.reconcile.volumes import host_path_check
from gitkube.reconcile.podsync import (
    INFRA,
    Action,
    EnsureSandbox,
    KillContainer,
    KillPod,
    ObservedContainer,
    PodEvent,
    PodWork,
    RemoveContainer,
    StartContainer,
    container_hash,
    group,
    pod_ip,
)

log = logging.getLogger(__name__)

L = "io.gitkube."
MANAGED = f"{L}managed"
ENDPOINT_DRAIN_SECONDS = 1.0
# A node's last container list stands (its event stream quiet) for at most this long: a missed event costs no more.
RELIST_SECONDS = 10.0
# Container starts (a pod's sandbox, each of its containers) in flight at once across the whole fleet, whatever its
# size: each holds a thread, an SSH channel with a `docker system dial-stdio` on the node, and the controller's CPU
# for the SSH framing. Unbounded (8 per node), a deploy to 32 sandbox nodes ran 256 at once: every call took over
# the 10 s read timeout and no node synced. On this 2-core machine, +10 pods a node at 32 nodes took 2m18s with 32
# in flight (10 passes saw read timeouts) and 2m14s with 16 (none). GITKUBE_MAX_INFLIGHT_ACTIONS overrides; the
# default, 8 per controller core, grows with the controller.
MAX_INFLIGHT_ACTIONS = int(os.environ.get("GITKUBE_MAX_INFLIGHT_ACTIONS") or 0) or 8 * (os.cpu_count() or 1)
INFLIGHT = threading.BoundedSemaphore(MAX_INFLIGHT_ACTIONS)


class NameTaken(Exception):
    """A container name gitkube would use is held by another installation's container."""


@dataclass(frozen=True)
class ClusterContext:
    """What pods on any node see of the cluster: DNS and the Services of each namespace."""

    dns_server: str | None = None
    dns_domain: str = "cluster.local"
    services: dict[str, list[EnvService]] = field(default_factory=dict)  # namespace -> services
    config: dict | None = field(default_factory=dict, repr=False)  # (kind, ns, name) -> ConfigData; None: unreadable
    cluster_id: str = ""  # labelled on every container: another installation's are never touched
    revision: str = ""  # the Git revision applied, labelled on the containers it makes


@dataclass
class Execution:
    """What carrying out one node's actions did: events, containers held back (reason, message) or released,
    image pulls that failed (uid, container, message) or succeeded."""

    events: list[PodEvent] = field(default_factory=list)
    waiting: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    released: set[tuple[str, str]] = field(default_factory=set)
    pull_failed: list[tuple[str, str, str]] = field(default_factory=list)
    pulled: set[tuple[str, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def event(self, uid: str | None, reason: str, message: str, type_: str = "Normal") -> None:
        with self.lock:
            self.events.append(PodEvent(uid, reason, message, type_))

    def hold(self, uid: str, container: str, reason: str, message: str) -> None:
        with self.lock:
            self.waiting[(uid, container)] = (reason, message)
            self.released.discard((uid, container))

    def release(self, uid: str, container: str) -> None:
        with self.lock:
            self.waiting.pop((uid, container), None)
            self.released.add((uid, container))


def docker_name(*parts: str) -> str:
    """A valid Docker container name from kubelet-style parts."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", "_".join(parts))


def _label_fields(lab: dict) -> dict:
    """What a pod container's labels say of it (list and inspect carry the same labels)."""
    return {"pod_uid": lab[f"{L}pod.uid"], "container": lab.get(f"{L}container.name", ""),
            "spec_hash": lab.get(f"{L}container.hash", ""),
            "restart_count": int(lab.get(f"{L}container.restartCount", "0"))}


def _ip(net: dict | None) -> str | None:
    """A container's IP from its NetworkSettings (inspect's top-level field, or its first network's)."""
    net = net or {}
    return net.get("IPAddress") or next((n.get("IPAddress") for n in (net.get("Networks") or {}).values()
                                         if n.get("IPAddress")), None)


class PodRuntime:
    """One node's pods: observe its containers, execute actions. Keeps only caches that a fresh instance can rebuild
    from the node's labels, and the pods being terminated in the background (their events come with the next
    `execute` or `take_events`)."""

    def __init__(self, handle: NodeHandle):
        self.h = handle
        self.d = handle.docker
        self._inspect_cache: dict[tuple[str, str, str], ObservedContainer] = {}
        self._out = Execution()  # what the current execute (and background terminations) did, until taken
        self._prev_waiting: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()
        # Per image, within one execute: whether it is present (one inspect, one pull however many pods start
        # from it in parallel); the lock per image makes the others wait for the first pull.
        self._images: dict[str, bool] = {}
        self._pulled_now: set[str] = set()
        self._pull_failed_now: dict[str, str] = {}
        self._image_locks: dict[str, threading.Lock] = {}
        # Pods being terminated: a grace period may last minutes, so terminations run beside the sync pass
        # (as the kubelet's pod workers do) instead of holding up every other pod on every node.
        self._terminating: set[str] = set()
        self._reaper: cf.ThreadPoolExecutor | None = None  # made on first use, shut down by drain()
        # A Ready pod being deleted has already left its Services' Endpoints and every node's proxy in this pass;
        # its termination (preStop, then the stop signal) waits this long more, so that requests the proxies'
        # old workers sent it just before finish (issue 11: rolling updates drop no request).
        self.endpoint_drain = ENDPOINT_DRAIN_SECONDS
        self.config_vols = ConfigVolumes(handle)  # config volumes' files written in running pods
        # Raises when this process may no longer act on nodes (an etcd leader whose lease is gone): checked before
        # every action, so a paused leader that resumes does nothing its successor may already have done.
        self.may_act: Callable[[], None] = lambda: None
        self.cluster_id = ""  # this installation's: containers labelled with another are foreign, never touched
        self.foreign: int = 0  # another installation's pod containers seen by the last observe()
        self.system: tuple = ()  # (id, state) of gitkube's system containers (proxy, DNS) seen by the last list
        self._listed: tuple | None = None  # (change token, when, containers) of the last list (see observe)

    @property
    def node(self) -> str:
        return self.h.name

    @property
    def host_ip(self) -> str:
        return self.h.config.host

    def event(self, w: PodWork | None, reason: str, message: str, type_: str = "Normal", uid: str | None = None) -> None:
        self._out.event(w.uid if w else uid, reason, message, type_)

    def has_news(self) -> bool:
        """Whether background work (a termination, a hook) reported something a pass has not taken yet."""
        o = self._out
        with o.lock:
            return bool(o.events or o.waiting or o.released or o.pull_failed or o.pulled)

    def take_events(self) -> Execution:
        """What happened since the last take (background terminations), as an Execution."""
        with self._lock:
            out, self._out = self._out, Execution()
        return out

    # -- observe --------------------------------------------------------------------------------------
    def observe(self, hints: dict[str, dict] | None = None) -> list[ObservedContainer]:
        """gitkube's containers on this node: one list call, plus an inspect only for what changed.

        `hints` (podsync.status_hints) stand in for the inspect of a container this process has not seen yet
        when its state word is still the one the last status recorded.

        Where the engine's event stream is open (NodeDocker.change_token), the last list stands while no container
        of gitkube's changed since, for up to RELIST_SECONDS: then a look costs no call at all."""
        token, cached = self._cached()
        if cached is not None:
            return cached
        t_list = time.monotonic()
        raw = self.d.list([f"{MANAGED}=true"])
        out, keep, foreign, system = [], set(), 0, []
        for c in raw:
            if f"{L}pod.uid" not in (c.get("Labels") or {}):
                system.append((c["Id"], c.get("State", "")))
                continue  # gitkube's own system containers (proxy, DNS, tools): not pods, never inspected here
            if not owned_by(c.get("Labels") or {}, self.cluster_id):
                foreign += 1  # another installation's: reported, never planned for
                continue
            # "Status" text ("Up 3 seconds") changes every call; the state word changes only on a transition.
            key = (c["Id"], c.get("State", ""), "")
            keep.add(key)
            o = self._inspect_cache.get(key)
            if o is None:
                o = self._from_list(c, hints) if hints else None
                if o is None:
                    try:
                        o = self._from_inspect(self.d.inspect(c["Id"]))
                    except NotFound:
                        continue
                    if o is None:
                        continue
                self._inspect_cache[key] = o
            out.append(o)
        for k in list(self._inspect_cache):
            if k not in keep:
                del self._inspect_cache[k]
        self.foreign = foreign
        self.system = tuple(sorted(system))
        self._listed = (token, t_list, tuple(out)) if token is not None else None
        return out

    def _cached(self) -> tuple[object, list[ObservedContainer] | None]:
        """(the engine's change token, the last list when it still stands: no call made)."""
        token_of = getattr(self.d, "change_token", None)
        token = token_of([f"{MANAGED}=true"]) if token_of is not None else None
        last = self._listed
        if token is not None and last is not None and last[0] == token and time.monotonic() - last[1] < RELIST_SECONDS:
            return token, list(last[2])
        return token, None

    def cached(self) -> list[ObservedContainer] | None:
        """What observe() would return without a Docker call, or None when it must list the node."""
        return self._cached()[1]

    @staticmethod
    def _from_list(c: dict, hints: dict[str, dict]) -> ObservedContainer | None:
        """A listed container with a still-valid hint as an observation (None: it needs an inspect)."""
        lab = c.get("Labels") or {}
        ids = _label_fields(lab)
        h = hints.get(c["Id"]) or (hints.get(f"infra:{ids['pod_uid']}") if ids["container"] == INFRA else None)
        state = c.get("State", "")
        if h is None or h["state"] != state or state not in ("running", "exited"):
            return None
        return ObservedContainer(
            id=c["Id"], **ids, state=state, exit_code=h.get("exit_code") if state == "exited" else None,
            started_at=h.get("started_at"), finished_at=h.get("finished_at"), image=c.get("Image", ""),
            image_id=h.get("image_id", ""), oom_killed=bool(h.get("oom_killed")), error=h.get("error", ""),
            ip=_ip(c.get("NetworkSettings")),
        )

    @staticmethod
    def _from_inspect(i: dict) -> ObservedContainer | None:
        lab = i["Config"].get("Labels") or {}
        if lab.get(MANAGED) != "true" or f"{L}pod.uid" not in lab:
            return None
        st = i["State"]
        return ObservedContainer(
            id=i["Id"], **_label_fields(lab), state=st.get("Status", ""),
            exit_code=st.get("ExitCode") if st.get("Status") in ("exited", "dead") else None,
            started_at=st.get("StartedAt"), finished_at=st.get("FinishedAt"), image=i["Config"].get("Image", ""),
            image_id=f"docker-pullable://{i.get('Image', '')}" if i.get("Image") else "", oom_killed=bool(st.get("OOMKilled")),
            error=st.get("Error") or "", ip=_ip(i.get("NetworkSettings")),
        )

    # -- configMap/secret volumes of running pods ----------------------------------------------------
    def refresh_config_volumes(self, works: list[PodWork], observed: list[ObservedContainer], config) -> None:
        """A changed ConfigMap/Secret reaches the files of running pods (a missing one leaves the last files)."""
        infra = {o.pod_uid: o.id for o in observed if o.container == INFRA and o.running}
        self.config_vols.forget(set(infra.values()))
        if config is None:
            return  # unreadable config: the files stay as they are
        for w in works:
            if w.deleting or w.uid not in infra:
                continue
            for v in config_volumes(w.pod.spec):
                try:
                    if self.config_vols.ensure(infra[w.uid], volume_files(v, w.pod.metadata.namespace or "default",
                                                                          config)):
                        log.info("node %s: pod %s: volume %s updated", self.node, w.key, v.name)
                except ConfigError:
                    continue  # the planner holds its containers back (CreateContainerConfigError / FailedMount)
                except VolumeWriteError as e:
                    log.warning("node %s: pod %s: volume %s: %s (retried next pass)", self.node, w.key, v.name, e)

    # -- execute --------------------------------------------------------------------------------------
    def execute(self, actions: list[Action] | tuple[Action, ...], works: dict[str, PodWork], ctx: ClusterContext,
                observed: list[ObservedContainer], waiting: dict[tuple[str, str], tuple[str, str]] | None = None
                ) -> Execution:
        """Carry out actions: each pod's in order, different pods in parallel, terminations in the background.
        `waiting` is what the last pass held back (an unchanged reason is not reported again)."""
        self._prev_waiting = dict(waiting or {})
        with self._lock:
            self._images = {}  # image -> present on the node, as learned in this execute (pods share the answer)
            self._pulled_now = set()  # images pulled in this execute (imagePullPolicy Always: once per pass)
            self._pull_failed_now = {}  # image -> why its pull failed in this execute
        per_pod: dict[str, list[Action]] = {}
        by_pod = group(observed)
        for a in actions:
            if isinstance(a, KillPod):
                self._terminate_in_background(a, by_pod.get(a.pod_uid, {}), works.get(a.pod_uid))
            else:
                per_pod.setdefault(a.pod_uid, []).append(a)
        if per_pod:
            with cf.ThreadPoolExecutor(max_workers=min(8, len(per_pod)), thread_name_prefix=f"sync-{self.node}") as pool:
                list(pool.map(lambda uid: self._run_pod(uid, per_pod[uid], by_pod.get(uid, {}), works.get(uid), ctx),
                              list(per_pod)))
        return self.take_events()

    def _run_pod(self, uid: str, actions: list[Action], seen: dict[str, list[ObservedContainer]],
                 w: PodWork | None, ctx: ClusterContext) -> None:
        infra = (seen.get(INFRA) or [None])[-1]
        infra_id = infra.id if infra is not None and infra.running else None
        for a in actions:
            self.may_act()
            if isinstance(a, StartContainer) and infra_id is None:
                break
            # A slot for container starts only: a kill waiting out its grace period holds none.
            slot = INFLIGHT if isinstance(a, (EnsureSandbox, StartContainer)) else contextlib.nullcontext()
            try:
                with slot:
                    infra_id = self._run_action(a, w, infra_id, ctx)
            except (APIError, OSError, NameTaken) as e:
                log.warning("node %s: %s for pod %s failed: %s", self.node, type(a).__name__, uid, e)
                self.event(w, "FailedSync", f"{type(a).__name__}: {e}", "Warning", uid=uid)
                break

    def _run_action(self, a: Action, w: PodWork | None, infra_id: str | None, ctx: ClusterContext) -> str | None:
        """One action of a pod; the ID of the pod's sandbox (infra container) after it."""
        if isinstance(a, EnsureSandbox):
            return self.ensure_sandbox(w, ctx, a.replace)
        if isinstance(a, KillContainer):
            c = next((c for c in w.pod.spec.containers if c.name == a.container), None) if w else None
            self.kill_container(w, a.container_id, c, a.grace, a.reason)
        elif isinstance(a, RemoveContainer):
            self._remove(a.container_id)
        elif isinstance(a, StartContainer):
            self.start_container(w, a, infra_id, ctx)
        return infra_id

    def _terminate_in_background(self, a: KillPod, seen, w: PodWork | None) -> None:
        self.may_act()
        with self._lock:
            if a.pod_uid in self._terminating:
                return  # already under way: its grace period runs on
            self._terminating.add(a.pod_uid)
            if self._reaper is None:
                self._reaper = cf.ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"terminate-{self.node}")
            reaper = self._reaper

        def run() -> None:
            try:
                # Ready in its last status: in its Services' Endpoints until this pass, so drained first.
                if w is not None and w.deleting and find_condition(w.last_status, "Ready").get("status") == "True":
                    time.sleep(self.endpoint_drain)
                self.kill_pod(a.pod_uid, seen, w, a.grace, a.reason)
            except Exception as e:  # noqa: BLE001 - reported; the next pass sees what is left and tries again
                log.warning("node %s: terminating pod %s failed (retried next pass): %s", self.node, a.pod_uid, e)
                self.event(w, "FailedKillPod", f"error killing pod: {e}", "Warning", uid=a.pod_uid)
            finally:
                with self._lock:
                    self._terminating.discard(a.pod_uid)

        reaper.submit(run)

    def drain(self) -> None:
        """Wait for terminations under way (a one-shot `apply` must not exit in the middle of a grace period)."""
        with self._lock:
            reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.shutdown(wait=True)

    # -- sandbox --------------------------------------------------------------------------------------
    def _labels(self, w: PodWork, container: str, spec_hash: str, restart: int, ctx: ClusterContext) -> dict[str, str]:
        return pod_labels(w.pod, w.uid, self.node, container, spec_hash, restart, ctx.cluster_id or self.cluster_id,
                          ctx.revision, started=w.last_status.get("startTime") or "")

    def ensure_sandbox(self, w: PodWork, ctx: ClusterContext, replace: str | None) -> str:
        """Start the pod's infra container (network, IPC, hostname, published host ports) and its volumes."""
        if replace:
            self._remove(replace)
        m, spec = w.pod.metadata, w.pod.spec
        ns = m.namespace or "default"
        for v in spec.volumes or ():
            if v.emptyDir is not None:
                opts = {"type": "tmpfs", "device": "tmpfs"} if v.emptyDir.medium == "Memory" else {}
                name = self._volume_name(w.uid, v.name)
                if not self.d.volume_exists(name):
                    self.d.create_volume(name, opts, {MANAGED: "true", f"{L}pod.uid": w.uid, f"{L}volume.name": v.name})
        port_bindings, exposed = {}, []
        for c in spec.containers:
            for p in c.ports or ():
                key = f"{p.containerPort}/{p.protocol.lower()}"
                exposed.append((p.containerPort, p.protocol.lower()))
                if p.hostPort:
                    port_bindings[key] = (p.hostIP or "0.0.0.0", p.hostPort)
        host = {"network_mode": "host" if spec.hostNetwork else "bridge", "ipc_mode": "shareable",
                "port_bindings": port_bindings or None}
        if ctx.dns_server and not spec.hostNetwork and spec.dnsPolicy in ("ClusterFirst", "ClusterFirstWithHostNet"):
            d = ctx.dns_domain
            host.update(dns=[ctx.dns_server], dns_search=[f"{ns}.svc.{d}", f"svc.{d}", d], dns_opt=["ndots:5"])
        host["binds"] = create_volumes(self.h, w.uid, spec, docker_name) or None  # configMap/secret volumes
        hostname = (spec.hostname or m.name)[:63].rstrip("-.")
        name = docker_name("k8s", INFRA, m.name, ns, w.uid, "0")
        try:
            cid = self.d.create(PAUSE_IMAGE, name=name, labels=self._labels(w, INFRA, "", 0, ctx), host=host,
                                hostname=None if spec.hostNetwork else hostname, ports=exposed or None)
        except APIError as e:
            if e.status_code != 409:
                raise
            cid = self._made_before(name)
        self.d.start(cid)
        return cid

    def _made_before(self, name: str) -> str:
        """The container an earlier, interrupted pass made under `name` (a create answered 409); NameTaken when the
        name is held by another installation's container, which is never touched."""
        i = self.d.inspect(name)
        labels = (i.get("Config") or {}).get("Labels") or {}
        if not owned_by(labels, self.cluster_id):
            raise NameTaken(f"container name {name} is held by container {i['Id'][:12]} of another gitkube "
                            f"installation (cluster {labels.get(CLUSTER_LABEL, '?')}); it is left alone")
        return i["Id"]

    @staticmethod
    def _volume_name(uid: str, vol: str) -> str:
        return docker_name("gk", uid, vol)

    # -- containers -----------------------------------------------------------------------------------
    def _hold(self, w: PodWork, c, reason: str, message: str) -> None:
        self._out.hold(w.uid, c.name, reason, message)

    def _ensure_image(self, w: PodWork, c) -> bool:
        """Whether the image is on the node per imagePullPolicy, pulling it if need be; ErrImageNeverPull or
        ErrImagePull otherwise (whether a pull may be tried now, the back-off, is the planner's decision)."""
        with self._lock:
            image_lock = self._image_locks.setdefault(c.image, threading.Lock())
        with image_lock:  # pods starting from one image in parallel: one inspect, one pull
            return self._ensure_image_locked(w, c)

    def _ensure_image_locked(self, w: PodWork, c) -> bool:
        present = self._images.get(c.image)
        if present is None:
            present = self.d.image_id(c.image) is not None
        policy = c.imagePullPolicy
        self._images[c.image] = present
        if present and (policy != "Always" or c.image in self._pulled_now):
            self._out.release(w.uid, c.name)
            return True
        if policy == "Never":
            msg = f'Container image "{c.image}" is not present with pull policy of Never'
            if self._prev_waiting.get((w.uid, c.name), ("",))[0] != "ErrImageNeverPull":
                self.event(w, "ErrImageNeverPull", msg, "Warning")
            self._hold(w, c, "ErrImageNeverPull", msg)
            return False
        failed = self._pull_failed_now.get(c.image)
        if failed is None:
            self.event(w, "Pulling", f'Pulling image "{c.image}"')
        try:
            if failed is not None:  # another pod's pull of this image failed in this execute: not tried again
                raise RuntimeError(failed)
            self.d.pull(c.image)
            if self.d.image_id(c.image) is None:
                raise NotFound(f"image {c.image} not found after its pull")
        except Exception as e:  # noqa: BLE001 - any pull failure is ErrImagePull, as the kubelet reports it
            self._pull_failed_now.setdefault(c.image, str(e))
            msg = f'Failed to pull image "{c.image}": {e}'
            with self._out.lock:
                self._out.pull_failed.append((w.uid, c.name, msg))
            self.event(w, "Failed", msg, "Warning")
            self._hold(w, c, "ErrImagePull", msg)
            return False
        self._images[c.image] = True
        self._pulled_now.add(c.image)
        with self._out.lock:
            self._out.pulled.add((w.uid, c.name))
        self._out.release(w.uid, c.name)
        self.event(w, "Pulled", f'Successfully pulled image "{c.image}"')
        return True

    def _ensure_host_paths(self, w: PodWork, c) -> bool:
        """Check (and create, for the *OrCreate types) the hostPath volumes `c` mounts, as the kubelet does
        before it starts a container; a failed check keeps it waiting in ContainerCreating with FailedMount."""
        vols = {v.name: v for v in w.pod.spec.volumes or ()}
        for vm in c.volumeMounts or ():
            v = vols.get(vm.name)
            if v is None or v.hostPath is None or not v.hostPath.type:
                continue
            path = v.hostPath.path
            try:
                create, err = host_path_check(v.hostPath.type, path, self.h.ssh.path_kind(path))
                if create == "directory":
                    self.h.ssh.make_dirs(path)
                elif create == "file":
                    self.h.ssh.create_file(path)
            except (OSError, SSHError) as e:  # the node could not be asked, or refused the creation
                err = f"hostPath type check failed: {path}: {getattr(e, 'strerror', None) or e}"
            if err:
                msg = f'MountVolume.SetUp failed for volume "{v.name}" : {err}'
                self.event(w, "FailedMount", msg, "Warning")  # each retry, as the kubelet's (the store counts them)
                self._hold(w, c, "ContainerCreating", msg)
                return False
        return True

    def start_container(self, w: PodWork, a: StartContainer, infra_id: str, ctx: ClusterContext) -> str | None:
        """Create and start one app container in the pod's namespaces, then run its postStart hook."""
        c = next(c for c in w.pod.spec.containers if c.name == a.container)
        if not self._ensure_image(w, c) or not self._ensure_host_paths(w, c):
            return None
        m, spec = w.pod.metadata, w.pod.spec
        ns = m.namespace or "default"
        ip = self.host_ip if spec.hostNetwork else _ip(self.d.inspect(infra_id).get("NetworkSettings"))
        try:
            warnings: list[str] = []
            env = container_env(w.pod, w.uid, c, self.node, ip, self.host_ip, ctx.services.get(ns, []),
                                ctx.config, warnings)
            for v in config_volumes(spec):
                if any(vm.name == v.name for vm in c.volumeMounts or ()):
                    self.config_vols.ensure(infra_id, volume_files(v, ns, ctx.config))
        except (ConfigError, VolumeWriteError) as e:
            reason = "CreateContainerConfigError" if isinstance(e, ConfigError) else "ContainerCreating"
            self.event(w, "Failed" if isinstance(e, ConfigError) else "FailedMount", f"Error: {e}", "Warning")
            self._hold(w, c, reason, str(e))
            return None
        for msg in warnings:
            self.event(w, "InvalidEnvironmentVariableNames", msg, "Warning")
        entrypoint, cmd = command_line(c, dict(env))
        name = docker_name("k8s", c.name, m.name, ns, w.uid, str(a.restart_count))
        labels = self._labels(w, c.name, container_hash(c, w.config_digests.get(c.name, "")), a.restart_count, ctx)
        try:
            cid = self.d.create(c.image, name=name, labels=labels, host=self._host_config(w, c, infra_id),
                                entrypoint=entrypoint, command=cmd, environment=[f"{k}={v}" for k, v in env],
                                working_dir=c.workingDir, tty=bool(c.tty), stdin_open=bool(c.stdin))
        except APIError as e:
            if e.status_code != 409:
                self.event(w, "Failed", f"Error: {e.explanation or e}", "Warning")
                self._hold(w, c, "CreateContainerError", str(e.explanation or e))
                return None
            try:
                cid = self._made_before(name)
            except NameTaken as taken:
                self.event(w, "Failed", f"Error: {taken}", "Warning")
                self._hold(w, c, "CreateContainerError", str(taken))
                return None
        self.event(w, "Created", f"Created container {c.name}")
        try:
            self.d.start(cid)
        except APIError as e:
            self.event(w, "Failed", f"Error: {e.explanation or e}", "Warning")
            return cid
        self._out.release(w.uid, c.name)
        self.event(w, "Started", f"Started container {c.name}")
        if c.lifecycle and c.lifecycle.postStart:
            ok, msg = hooks.run_handler(self.h, cid, c.lifecycle.postStart, ip or self.host_ip, timeout=30)
            if not ok:
                self.event(w, "FailedPostStartHook", msg, "Warning")
                self.kill_container(w, cid, None, 0, "FailedPostStartHook")
        return cid

    def _host_config(self, w: PodWork, c, infra_id: str) -> dict:
        """An app container's HostConfig: the sandbox's namespaces, its volumes, its resource limits."""
        spec = w.pod.spec
        binds = {}
        vols = {v.name: v for v in spec.volumes or ()}
        for vm in c.volumeMounts or ():
            v = vols.get(vm.name)
            if v is None:
                continue
            if v.configMap is not None or v.secret is not None:  # always read-only, as the kubelet mounts them
                binds[volume_name(docker_name, w.uid, v.name)] = {"bind": vm.mountPath, "mode": "ro"}
                continue
            src = self._volume_name(w.uid, v.name) if v.emptyDir is not None else v.hostPath.path
            binds[src] = {"bind": vm.mountPath, "mode": "ro" if vm.readOnly else "rw"}
        limits = (c.resources.limits if c.resources else None) or {}
        requests = (c.resources.requests if c.resources else None) or {}
        host: dict = {"network_mode": f"container:{infra_id}", "ipc_mode": f"container:{infra_id}",
                      "pid_mode": f"container:{infra_id}" if spec.shareProcessNamespace else None,
                      "binds": binds or None}
        if "memory" in limits:
            host["mem_limit"] = memory_bytes(limits["memory"])
        if "cpu" in limits:
            host["nano_cpus"] = cpu_millis(limits["cpu"]) * 1_000_000
        if "cpu" in requests:
            host["cpu_shares"] = max(2, cpu_millis(requests["cpu"]) * 1024 // 1000)
        return host

    def kill_container(self, w: PodWork | None, cid: str, c, grace: int, reason: str) -> None:
        """preStop (if any) inside the grace period, then the stop signal, then SIGKILL at expiry."""
        t0 = time.monotonic()
        if c is not None and c.lifecycle and c.lifecycle.preStop and grace > 0:
            ip = (pod_ip(w, {}, self.host_ip) if w is not None else None) or self.host_ip
            ok, msg = hooks.run_handler(self.h, cid, c.lifecycle.preStop, ip, timeout=grace)
            if not ok:
                self.event(w, "FailedPreStopHook", msg, "Warning")
        remaining = max(0, int(grace - (time.monotonic() - t0)))
        if w is not None and c is not None:
            self.event(w, "Killing", f"Stopping container {c.name}" + (f": {reason}" if reason else ""))
        try:
            self.d.stop(cid, remaining)
        except NotFound:
            pass

    def kill_pod(self, uid: str, seen: dict[str, list[ObservedContainer]], w: PodWork | None, grace: int, reason: str) -> None:
        """Terminate a pod's app containers in parallel, then remove all its containers and volumes."""
        spec_by_name = {c.name: c for c in w.pod.spec.containers} if w else {}
        running = [(name, a[-1]) for name, a in seen.items() if name != INFRA and a[-1].running]
        if running:
            with cf.ThreadPoolExecutor(max_workers=len(running), thread_name_prefix=f"kill-{self.node}") as pool:
                list(pool.map(lambda x: self.kill_container(w, x[1].id, spec_by_name.get(x[0]), grace, reason), running))
        for name, attempts in seen.items():
            for o in attempts:
                if name != INFRA:
                    self._remove(o.id)
        for o in seen.get(INFRA, []):
            self._remove(o.id)
        for v in self.d.volumes(f"{L}pod.uid={uid}"):
            try:
                self.d.remove_volume(v)
            except NotFound:
                pass
        if w is None:
            self.event(None, "Killing", f"removed containers of pod {uid} ({reason})", uid=uid)

    def _remove(self, cid: str) -> None:
        try:
            self.d.remove(cid)
        except NotFound:
            pass
