"""The fleet: one warm SSH+Docker connection per inventory node, and node probes as Kubernetes Node objects."""
from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from gitkube.api.views import find_condition
from gitkube.nodes.transport.docker_api import DockerUnavailable, NodeDocker
from gitkube.nodes.inventory import NodeConfig
from gitkube.nodes.transport.ssh import HostKeyError, SSHConnection, SSHError

log = logging.getLogger(__name__)

DEFAULT_MAX_PODS = 110
KUBELET_VERSION = "gitkube"  # what a node's kubelet (and proxy) version reads as: gitkube runs both


HEARTBEAT_SECONDS = 1.0  # a node's heartbeat is shared by the passes within this long of it
INFO_REFRESH_SECONDS = 10.0  # how long an engine's info/version stand for it (nodeStatusUpdateFrequency)


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NodeHandle:
    """A node of the inventory with its lazily opened, long-lived connection, the fleet's pool for work with a
    deadline (hook and probe commands), and what this process caches about the node (dropped with the handle)."""

    config: NodeConfig
    ssh: SSHConnection
    docker: NodeDocker
    _ids: tuple[int, dict] | None = None  # (SSH connection count, host identity) as last read
    pool: cf.Executor | None = None
    caches: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    def cached_ids(self) -> dict | None:
        """The host identity read on this SSH connection, or None when it has not been read yet."""
        if self._ids is not None and self._ids[0] == self.ssh.connects and self.ssh.connected:
            return self._ids[1]
        return None

    def host_ids(self) -> dict:
        """The node's bootID, machineID and systemUUID, read once per SSH connection (a reboot drops the
        connection, so a new boot is read again): /proc/sys/kernel/random/boot_id, /etc/machine-id and
        /sys/class/dmi/id/product_uuid (machine-id when the firmware gives none or it is not readable)."""
        cached = self.cached_ids()
        if cached is not None:
            return cached
        files = {"bootID": "/proc/sys/kernel/random/boot_id", "machineID": "/etc/machine-id",
                 "systemUUID": "/sys/class/dmi/id/product_uuid"}
        # one command for all three (an exec costs a process on the node; a busy node answers each slowly):
        # cat prints the files it can read in order, one line each, and names the others on stderr
        _rc, out, err = self.ssh.run(["cat", *files.values()], timeout=5.0)
        unread = err.decode(errors="replace")
        lines = iter(out.decode(errors="replace").splitlines())
        ids = {k: ("" if f"{path}:" in unread else next(lines, "").strip()) for k, path in files.items()}
        ids["systemUUID"] = ids["systemUUID"].lower() or ids["machineID"]
        if ids["bootID"] and ids["machineID"]:  # a read cut short (a busy node) is tried again next heartbeat
            self._ids = (self.ssh.connects, ids)
        return ids

    def cache(self, key: str, make):
        """The handle's cache `key`, made by `make()` on first use."""
        with self.lock:
            if key not in self.caches:
                self.caches[key] = make()
            return self.caches[key]


@dataclass(frozen=True)
class ProbeResult:
    """What one heartbeat saw of a node: its Docker info, or why it could not be asked."""

    name: str
    ok: bool
    info: dict | None
    version: dict | None
    reason: str
    message: str
    seconds: float
    ids: dict | None = None  # bootID, machineID, systemUUID (NodeHandle.host_ids)


class Fleet:
    """All nodes of the inventory; connections are opened on first use and kept."""

    def __init__(self, nodes: list[NodeConfig], call_timeout: float = 10.0):
        self._pool = cf.ThreadPoolExecutor(max_workers=max(4, 2 * len(nodes)), thread_name_prefix="node")
        # Commands run under a deadline (hooks, exec probes): their own pool, so a hung one never starves the nodes.
        self._handlers = cf.ThreadPoolExecutor(max_workers=16, thread_name_prefix="handler")
        self.nodes: dict[str, NodeHandle] = {}
        for n in nodes:
            ssh = SSHConnection(n.ssh_target())
            self.nodes[n.name] = NodeHandle(n, ssh, NodeDocker(ssh, n.docker_host, timeout=call_timeout),
                                            pool=self._handlers)
        self._probing: dict[str, cf.Future] = {}  # node -> its heartbeat in flight (at most one each)
        self._last_probe: dict[str, bool] = {}  # node -> whether its last heartbeat succeeded
        self.last_info: dict[str, dict] = {}  # node -> the Docker info of its last successful heartbeat
        self._probe_lock = threading.Lock()
        self._ids_reading: dict[str, cf.Future] = {}  # node -> its host identity read in flight
        self._engine: dict[str, tuple[float, dict, dict]] = {}  # node -> (when, info, version) last read
        self._answered: dict[str, tuple[float, ProbeResult]] = {}  # node -> its last successful heartbeat
        self.last_shared: set[str] = set()  # nodes whose heartbeat the last probe() shared (see there)

    def __getitem__(self, name: str) -> NodeHandle:
        return self.nodes[name]

    def names(self) -> list[str]:
        return list(self.nodes)

    def map(self, fn, names: list[str] | None = None, timeout: float | None = None) -> dict[str, object]:
        """Run fn(handle) on each node in parallel; a node that raises or overruns maps to its exception."""
        futs = {self._pool.submit(fn, self.nodes[n]): n for n in (names or self.names())}
        out: dict[str, object] = {}
        done, pending = cf.wait(futs, timeout=timeout)
        for f in done:
            try:
                out[futs[f]] = f.result()
            except Exception as e:  # noqa: BLE001 - reported per node, the others go on
                out[futs[f]] = e
        for f in pending:
            name = futs[f]
            out[name] = TimeoutError(f"node {name}: no answer within {timeout:.0f}s")
            self.nodes[name].ssh.close()  # a hung transport is dropped; the next call reconnects
        return out

    def probe(self, timeout: float = 8.0, down_timeout: float = 0.5, first_timeout: float = 20.0,
              share: Callable[[str], bool] | None = None) -> dict[str, ProbeResult]:
        """One heartbeat of every node, bounded in time: a ping of its engine over the warm connection, and the
        engine's info and version (the Node's capacity and nodeInfo) when those are older than INFO_REFRESH_SECONDS,
        as the kubelet reports its node status every 10 s.

        A node whose last probe failed is waited for only `down_timeout`: its reconnect attempt goes on in the
        background, one at a time per node, and a later probe picks up how it ended. So a cut node does not hold
        every pass (and a push's effect on the healthy nodes) for the full SSH connect timeout. A node this process
        has never probed is waited for up to `first_timeout`: its first heartbeat opens the SSH connection (key
        exchange, authentication, the host's identity), which on a loaded machine or a slow link takes longer than
        a heartbeat over a warm one, and a one-shot `apply` must not call a node unreachable for that.

        With `share`, a node for which share(name) is true (a caller that will make no other call to it), that
        answered less than HEARTBEAT_SECONDS ago and whose container event stream is still open is not asked again:
        passes closer together than that share its heartbeat, as the kubelet's heartbeat runs on its own period, not
        once per controller pass. A broken stream (the first sign of a lost node) means a heartbeat now; so does a
        node the caller is about to call, so that no call goes to a node not heard from just before.
        `last_shared` names the nodes whose heartbeat was shared."""

        def one(h: NodeHandle) -> ProbeResult:
            t0 = time.monotonic()
            seen = self._engine.get(h.name)
            if seen is not None and t0 - seen[0] < INFO_REFRESH_SECONDS:
                h.docker.ping()  # the engine answers; what it reported of itself <10 s ago still holds
                info, ver = seen[1], seen[2]
            else:
                info = h.docker.info()
                ver = h.docker.version()
                self._engine[h.name] = (t0, info, ver)
            ids = h.cached_ids()
            if ids is None:
                self._read_ids(h)  # off the heartbeat's path: a busy node takes seconds per command
            return ProbeResult(h.name, True, info, ver, "KubeletReady", "docker engine is ready",
                               time.monotonic() - t0, ids)

        t0 = time.monotonic()
        futs: dict[str, cf.Future] = {}
        recent = {n: r for n, (t, r) in self._answered.items() if share is not None and t0 - t < HEARTBEAT_SECONDS
                  and n in self.nodes and _watching(self.nodes[n]) and share(n)}
        self.last_shared = set(recent)
        with self._probe_lock:
            for name, h in self.nodes.items():
                if name in recent:
                    continue
                f = self._probing.get(name)
                # A finished attempt is history, unless it is a success of a slow or returning node that came in
                # since the last look (within `timeout`): then it is this heartbeat.
                fresh_ok = (self._last_probe.get(name) is False and f is not None and f.done() and f.exception() is None
                            and time.monotonic() - getattr(f, "finished_at", 0.0) < timeout)
                if f is None or (f.done() and not fresh_ok):
                    f = self._probing[name] = self._pool.submit(one, h)
                    f.add_done_callback(lambda fut: setattr(fut, "finished_at", time.monotonic()))
                futs[name] = f
                if fresh_ok:
                    self._probing.pop(name)  # used once
        down = {n for n in futs if self._last_probe.get(n) is False}
        first = [futs[n] for n in futs if n not in self._last_probe]
        cf.wait([futs[n] for n in down], timeout=down_timeout)
        cf.wait([f for n, f in futs.items() if n not in down], timeout=max(0.0, timeout - (time.monotonic() - t0)))
        if first:
            cf.wait(first, timeout=max(0.0, max(timeout, first_timeout) - (time.monotonic() - t0)))
        out = dict(recent)
        for name, f in futs.items():
            if f.done():
                try:
                    r = f.result()
                except Exception as e:  # noqa: BLE001 - reported per node
                    reason = ("HostKeyMismatch" if isinstance(e, HostKeyError) else
                              "DockerUnavailable" if isinstance(e, DockerUnavailable) else
                              "NodeUnreachable" if isinstance(e, (SSHError, TimeoutError, OSError)) else "ProbeError")
                    r = ProbeResult(name, False, None, None, reason, str(e), time.monotonic() - t0)
            elif name in down:
                r = ProbeResult(name, False, None, None, "NodeUnreachable",
                                f"node {name}: still not answering (a reconnect is under way)", time.monotonic() - t0)
            else:
                r = ProbeResult(name, False, None, None, "NodeUnreachable",
                                f"node {name}: no answer within {timeout:.0f}s", time.monotonic() - t0)
                # A hung transport is dropped (in the background: a close waits for a connect in progress).
                self._pool.submit(self.nodes[name].ssh.close)
            out[name] = r
            self._last_probe[name] = r.ok
            if not r.ok:
                self._engine.pop(name, None)  # a node back from a failure reports itself afresh
                self._answered.pop(name, None)
            else:
                self._answered[name] = (time.monotonic(), r)
            if r.ok and r.info:
                self.last_info[name] = r.info
        return out

    def _read_ids(self, h: NodeHandle) -> None:
        """Read a node's host identity in the background, one read at a time per node; a later heartbeat
        (or host_ids()) finds it cached."""
        with self._probe_lock:
            f = self._ids_reading.get(h.name)
            if f is None or f.done():
                self._ids_reading[h.name] = self._pool.submit(h.host_ids)

    def close(self) -> None:
        self._handlers.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for h in self.nodes.values():
            h.docker.close()
            h.ssh.close()


def _watching(h: NodeHandle) -> bool:
    watching = getattr(h.docker, "watching", None)
    return bool(watching and watching())


def node_facts(probe: ProbeResult | None) -> tuple:
    """What of a heartbeat the Node object shows (capacity, nodeInfo): equal facts, equal Node."""
    if probe is None or not probe.ok:
        return (False,)
    info, ver = probe.info or {}, probe.version or {}
    return (True, *(info.get(k) for k in ("NCPU", "MemTotal", "OSType", "KernelVersion", "OperatingSystem",
                                          "ServerVersion", "Architecture")),
            ver.get("Arch"), ver.get("Version"), tuple(sorted((probe.ids or {}).items())))


def node_object(cfg: NodeConfig, probe: ProbeResult | None, previous: dict | None = None, ready_override: str | None = None) -> dict:
    """The Kubernetes-shaped Node for an inventory entry and its latest probe (previous keeps what was last seen)."""
    prev_status = (previous or {}).get("status", {})
    now = now_iso()
    capacity = dict(prev_status.get("capacity", {}))
    node_info = dict(prev_status.get("nodeInfo", {}))
    if probe and probe.ok:
        info, ver = probe.info, probe.version or {}
        capacity = {"cpu": str(info.get("NCPU", 1)), "memory": f"{int(info.get('MemTotal', 0)) // 1024}Ki", "pods": str(DEFAULT_MAX_PODS)}
        node_info = {
            "architecture": ver.get("Arch", info.get("Architecture", "")),
            "operatingSystem": info.get("OSType", "linux"),
            "kernelVersion": info.get("KernelVersion", ""),
            "osImage": info.get("OperatingSystem", ""),
            "containerRuntimeVersion": f"docker://{info.get('ServerVersion', ver.get('Version', ''))}",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,  # gitkube's node proxy (HAProxy, configured by gitkube)
            **{k: (probe.ids or {}).get(k) or prev_status.get("nodeInfo", {}).get(k, "")
               for k in ("machineID", "systemUUID", "bootID")},
        }
    if cfg.capacity:
        for k in ("cpu", "memory", "pods"):
            v = getattr(cfg.capacity, k)
            if v is not None:
                capacity[k] = str(v)
    status = ready_override or ("True" if probe and probe.ok else "False" if probe else "Unknown")
    prev_ready = find_condition(prev_status, "Ready")
    transition = prev_ready.get("lastTransitionTime") if prev_ready.get("status") == status else now
    reason = probe.reason if probe else "NodeStatusUnknown"
    message = probe.message if probe else "gitkube has not probed this node yet"
    heartbeat = now if probe and probe.ok else prev_ready.get("lastHeartbeatTime", now)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {**{k: v for k, v in (previous or {}).get("metadata", {}).items()
                        if k in ("uid", "creationTimestamp", "resourceVersion")},
                     "name": cfg.name, "labels": {"kubernetes.io/hostname": cfg.name, **cfg.labels}},
        "spec": {"podCIDR": cfg.pod_cidr, "unschedulable": cfg.unschedulable} if cfg.pod_cidr else {"unschedulable": cfg.unschedulable},
        "status": {
            "conditions": [{
                "type": "Ready", "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition or now,
            }],
            "capacity": capacity,
            "allocatable": dict(capacity),
            "nodeInfo": node_info,
            "addresses": [{"type": "InternalIP", "address": cfg.host}, {"type": "Hostname", "address": cfg.name}],
        },
    }
