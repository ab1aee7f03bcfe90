"""The fleet lock on the nodes: one small JSON record per node, read and written over SFTP through the node's
SSH connection (gitkube.nodes.transport.ssh), saying which installation (cluster id) manages the node, who holds
the lock, since when and why. The rules are gitkube.reconcile.fleetlock's.

The record lives in the SSH user's home, `~/.gitkube/fleet-lock-<engine key>.json`, the key a digest of the Docker
engine's ID and data root: so nodes sharing a file system (the sandbox's network namespaces) keep one record each,
and two inventories naming the same host differently still meet at the same record."""
from __future__ import annotations

import getpass
import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from gitkube.nodes.transport.fleet import Fleet, NodeHandle
from gitkube.reconcile.fleetlock import DEFAULT_TTL, LockDecision, LockRecord, decide_lock

LOCK_DIR = ".gitkube"
log = logging.getLogger(__name__)


class FleetLocked(RuntimeError):
    """Another installation holds the fleet lock of a node (the message names the holder and the reason)."""


class LockError(RuntimeError):
    """A node's lock record could not be read or written."""


def holder_name(state_dir: str, pid: bool = True) -> str:
    """Who this process is, as a lock holder: user@host:state-dir (pid N); without the pid for a manual hold."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}:{os.path.abspath(state_dir)}" + (f" (pid {os.getpid()})" if pid else "")


def holder_gone(rec: LockRecord | None) -> bool:
    """Whether a record's controller process provably no longer runs: it ran on this host and its pid is gone."""
    if rec is None or rec.pid is None or rec.host != socket.gethostname():
        return False
    try:
        os.kill(rec.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lock_file(home: str, engine_id: str, node: str) -> str:
    """Where a node's record lives under its SSH user's `home`: named after its engine key (the node's name when
    there is none)."""
    safe = "".join(ch if ch.isalnum() else "-" for ch in engine_id)[:80] or "".join(
        ch if ch.isalnum() else "-" for ch in node)
    return f"{home}/{LOCK_DIR}/fleet-lock-{safe}.json"


def lock_path(h: NodeHandle, engine_id: str) -> str:
    return lock_file(h.ssh.home(), engine_id, h.name)


def engine_key(info: dict | None, fallback: str) -> str:
    """Names a node's record after its Docker engine: the engine ID and its data root (engines sharing a host
    and an engine key, as the sandbox's do, still differ in their data roots)."""
    info = info or {}
    if not info.get("ID"):
        return fallback
    return hashlib.sha256(f"{info['ID']}\0{info.get('DockerRootDir', '')}".encode()).hexdigest()[:16]


def engine_id(h: NodeHandle) -> str:
    """The node's engine key (one Docker call)."""
    return engine_key(h.docker.info(), h.name)


def read_lock(h: NodeHandle, engine: str) -> tuple[LockRecord | None, bool]:
    """The node's record, and whether something unreadable is there instead."""
    data = h.ssh.read_file(lock_path(h, engine))
    if data is None:
        return None, False
    rec = LockRecord.from_json(data)
    return rec, rec is None


def write_lock(h: NodeHandle, engine: str, rec: LockRecord) -> None:
    path = lock_path(h, engine)
    parent = path.rsplit("/", 1)[0]
    if h.ssh.path_kind(parent) is None:
        h.ssh.make_dirs(parent, 0o700)
    h.ssh.write_file(path, rec.to_json(), 0o600)


def remove_lock(h: NodeHandle, engine: str) -> bool:
    return h.ssh.remove_file(lock_path(h, engine))


@dataclass
class FleetLock:
    """This installation's hold on the nodes' locks: checked once per node per process, then refreshed every
    third of the TTL (so a pass costs no SFTP round trip in between)."""

    cluster_id: str
    holder: str
    reason: str = "gitkube apply"
    refresh_every: float = DEFAULT_TTL / 3
    _held: dict[str, float] = field(default_factory=dict)  # node -> when this process last wrote its record
    _engines: dict[str, str] = field(default_factory=dict)  # node -> its engine id (names the record)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ensure(self, fleet: Fleet, names: list[str], engines: dict[str, str], now: float | None = None) -> dict[str, str]:
        """Holds (or refreshes) the lock of each node in `names`; raises FleetLocked naming every node another
        installation holds. Returns the nodes whose record could not be read or written, with why: they are
        not to be synced this pass (nobody can tell whose they are)."""
        now = now or time.time()
        due = [n for n in names if now - self._held.get(n, float("-inf")) >= self.refresh_every]
        if not due:
            return {}

        def one(h: NodeHandle) -> LockDecision:
            engine = engines.get(h.name) or engine_id(h)
            cur, unreadable = read_lock(h, engine)
            d = decide_lock(h.name, cur, unreadable, self.cluster_id, self.holder, self.reason, now,
                            host=socket.gethostname(), pid=os.getpid(), holder_gone=holder_gone(cur))
            if d.record is not None:
                write_lock(h, engine, d.record)
                self._engines[h.name] = engine
            if d.broke is not None:
                log.warning("node %s: took over a stale fleet lock (its holder process is gone): %s", h.name,
                            d.broke.describe(now))
            return d

        refused, errors = [], {}
        for node, res in sorted(fleet.map(one, due, timeout=60).items()):
            if isinstance(res, Exception):
                errors[node] = f"its fleet lock record could not be checked: {res}"
            elif res.refused:
                refused.append(res.refused)
            else:
                with self._lock:
                    self._held[node] = now
        if refused:
            raise FleetLocked("; ".join(refused) + "; refusing to manage these nodes")
        return errors

    def release(self, fleet: Fleet) -> None:
        """Removes the records this process holds (a hold by `gitkube lock acquire` stays); best effort."""
        names = [n for n in self._held if n in self._engines and n in fleet.nodes]
        if not names:
            return

        def one(h: NodeHandle) -> None:
            cur, _ = read_lock(h, self._engines[h.name])
            if cur is not None and cur.cluster_id == self.cluster_id and cur.pid == os.getpid():
                remove_lock(h, self._engines[h.name])

        for node, res in fleet.map(one, names, timeout=15).items():
            if isinstance(res, Exception):
                log.warning("node %s: fleet lock not released (it expires on its own): %s", node, res)
        self._held.clear()


def manage(fleet: Fleet, names: list[str], cluster_id: str, holder: str, action: str, reason: str = "",
           ttl: float | None = None, break_expired: bool = False, now: float | None = None) -> dict[str, object]:
    """`gitkube lock status|acquire|release` on each node: node -> its LockRecord (status), LockDecision (acquire),
    True/False (release: removed or not there), or the exception/refusal text."""
    now = now or time.time()

    def one(h: NodeHandle):
        engine = engine_id(h)
        cur, unreadable = read_lock(h, engine)
        if action == "status":
            return "unreadable lock record" if unreadable else cur
        if action == "release":
            if cur is not None and cur.cluster_id != cluster_id:
                return f"not released: {cur.describe(now)}"
            return remove_lock(h, engine)
        d = decide_lock(h.name, cur, unreadable, cluster_id, holder, reason, now, ttl, break_expired, set_reason=True,
                        host=socket.gethostname(), holder_gone=holder_gone(cur))
        if d.record is not None:
            write_lock(h, engine, d.record)
        return d

    return fleet.map(one, names, timeout=60)
