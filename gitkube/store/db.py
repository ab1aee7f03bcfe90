"""The state DB: which objects, events and revisions gitkube knows, and who may write them (one writer)."""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from gitkube.api.content import CLUSTER_SCOPED, authored_content, content_hash, dict_key
from gitkube.store.schema import migrate

DB_FILE = "state.db"
LOCK_FILE = "lock"
CLUSTER_ID_FILE = "cluster-id"  # this installation's identity, labelled on every container it makes

# Status an object starts with when it has none yet (Pods stay Pending until scheduled).
DEFAULT_STATUS: dict[str, dict] = {
    "Pod": {"phase": "Pending"},
    "Namespace": {"phase": "Active"},
    "ReplicationController": {"replicas": 0},
    "ReplicaSet": {"replicas": 0},
    "Service": {"loadBalancer": {}},
}
# Cluster-scoped involved objects have their events recorded here, as Kubernetes does for Nodes.
EVENT_NAMESPACE_FOR_CLUSTER_SCOPED = "default"


class ObjectKey(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class SyncResult:
    """What a revision sync did, by object key."""

    sha: str
    added: list[ObjectKey] = field(default_factory=list)
    changed: list[ObjectKey] = field(default_factory=list)
    unchanged: list[ObjectKey] = field(default_factory=list)
    removed: list[ObjectKey] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not (self.added or self.changed or self.removed)


class StoreLocked(RuntimeError):
    """Another process holds the writer lock of this state dir."""


class StoreURLError(ValueError):
    """A --store value that names no store gitkube knows (sqlite://DIR, etcd://HOST:PORT,...)."""


class StoreCorrupt(RuntimeError):
    """The state DB file cannot be read as a gitkube state DB (a writer moves it aside and rebuilds)."""


class ReadOnlyStore(RuntimeError):
    """A write was attempted on a store opened as a reader."""


class NotFound(KeyError):
    """No object with that kind, namespace and name."""


def now_timestamp(now: datetime | str | None = None) -> str:
    """Decides the Kubernetes RFC 3339 (UTC, seconds) form of a time; `None` means now."""
    if isinstance(now, str):
        return now
    if now is None:
        now = datetime.now(timezone.utc)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def refused_texts(sha: str, problems: Iterable[Any]) -> tuple[str, str]:
    """A refused revision's record (every problem, one a line) and its event message (the first five), as both
    stores write them."""
    lines = [str(p) for p in problems]
    head = f"revision {sha[:12]} refused: {len(lines)} problem(s)"
    shown = lines[:5] + ([f"... and {len(lines) - 5} more"] if len(lines) > 5 else [])
    return "\n".join([head, *lines]), "; ".join([head, *shown])


def object_key(obj: Mapping) -> ObjectKey:
    """Decides an object's key: (kind, namespace, name), namespace '' when cluster-scoped, else default 'default'."""
    return ObjectKey(*dict_key(obj))


def desired_content(obj: Mapping) -> dict:
    """Decides the part of an object its author owns: all of it but status and store-owned metadata."""
    return authored_content(obj)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Store:
    """SQLite state DB of one state dir. Open with `Store.open(state_dir, writer=...)`; close() or use `with`."""

    def __init__(self, conn: sqlite3.Connection, state_dir: str, writer: bool, lock_fd: int | None = None):
        self._conn = conn
        self.state_dir = state_dir
        self.writer = writer
        self._lock_fd = lock_fd
        # Why the state was lost when this writer opened it (missing, empty or corrupt DB), in one line; None if not.
        self.lost: str | None = None

    # ---- opening and closing -------------------------------------------------------------------
    @classmethod
    def open(cls, state_dir: str | os.PathLike, writer: bool = False, fresh: bool = False) -> Store:
        """Decides how to open the state dir's DB: a writer takes the exclusive lock (or is refused), a reader does not.
        A writer finds a missing, empty or corrupt DB (`lost` says which); `fresh` moves a good one aside too."""
        state_dir = os.fspath(state_dir)
        db_path = os.path.join(state_dir, DB_FILE)
        lock_fd = None
        lost = None
        if writer:
            os.makedirs(state_dir, exist_ok=True)
            lock_fd = _take_lock(os.path.join(state_dir, LOCK_FILE))
            try:
                lost = _recover(state_dir, db_path, fresh)
            except BaseException:
                os.close(lock_fd)
                raise
        elif not os.path.exists(db_path):
            # A reader never creates the state dir: an absent DB reads as an empty one.
            conn = _connect(":memory:")
            migrate(conn)
            return cls(conn, state_dir, writer=False)
        else:
            problem = db_problem(db_path)
            if problem:
                raise StoreCorrupt(f"state DB {db_path} {problem}; `gitkube state rebuild` (or the next apply or "
                                   "serve) moves it aside and rebuilds the state from the nodes")
        try:
            conn = _connect(db_path)
            conn.execute("PRAGMA journal_mode=WAL")
            migrate(conn)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        store = cls(conn, state_dir, writer, lock_fd)
        store.lost = lost
        return store

    def cluster_id(self) -> str:
        """This installation's identity: kept in the state dir (and the store, as a spare); a writer makes one."""
        return store_cluster_id(self)

    def close(self) -> None:
        """Closes the DB and releases the writer lock."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _w(self) -> sqlite3.Connection:
        if not self.writer:
            raise ReadOnlyStore(f"state DB in {self.state_dir} was opened read-only")
        return self._conn

    def _tx(self):
        return _Transaction(self._w())

    # ---- revisions ----------------------------------------------------------------------------
    def sync_revision(self, sha: str, objects: Iterable[Mapping], now: datetime | str | None = None) -> SyncResult:
        """Decides which stored Git objects a valid revision adds, changes, leaves alone or removes, and writes only those."""
        ts = now_timestamp(now)
        incoming: dict[ObjectKey, tuple[Mapping, dict, str]] = {}
        for obj in objects:
            key = object_key(obj)
            content = desired_content(obj)
            incoming[key] = (obj, content, content_hash(content))
        result = SyncResult(sha=sha)
        with self._tx() as conn:
            rows = {
                ObjectKey(k, ns, n): (dh, dts, origin)
                for k, ns, n, dh, dts, origin in conn.execute(
                    "SELECT kind, namespace, name, desired_hash, deletion_timestamp, origin FROM objects"
                )
            }
            rv = self._next_rv_base(conn)
            for key, (obj, content, dhash) in incoming.items():
                row = rows.get(key)
                if row is None:
                    rv += 1
                    self._insert(conn, key, obj, content, dhash, "git", ts, rv)
                    result.added.append(key)
                elif row[0] == dhash and row[1] is None and row[2] == "git":
                    result.unchanged.append(key)
                else:
                    rv += 1
                    self._update_desired(conn, key, content, dhash, "git", rv)
                    # an object marked for deletion and back in Git reads as added again
                    (result.added if row[1] is not None else result.changed).append(key)
            for key, (_dh, dts, origin) in rows.items():
                if origin == "git" and dts is None and key not in incoming:
                    rv += 1
                    self._mark_deleted(conn, key, ts, rv)
                    result.removed.append(key)
            self._set_rv(conn, rv)
            summary = (f"{len(result.added)} added, {len(result.changed)} changed, "
                       f"{len(result.unchanged)} unchanged, {len(result.removed)} removed")
            conn.execute("INSERT INTO revisions (sha, time, result, message) VALUES (?, ?, 'applied', ?)",
                         (sha, ts, summary))
        return result

    def record_refused(self, sha: str, problems: Iterable[Any], now: datetime | str | None = None) -> dict:
        """Records that a revision was refused (revisions table + a Warning event); objects stay untouched."""
        ts = now_timestamp(now)
        record, message = refused_texts(sha, problems)
        with self._tx() as conn:
            conn.execute("INSERT INTO revisions (sha, time, result, message) VALUES (?, ?, 'refused', ?)",
                         (sha, ts, record))
            return self._record_event(conn, {"kind": "Revision", "namespace": "", "name": sha, "uid": ""},
                                      "InvalidRevision", message, "Warning", "gitkube", "", ts)

    def desired_index(self) -> dict[ObjectKey, tuple[str, bool, str]]:
        """Every object's (desired content hash, being deleted, origin): what a revision sync compares against."""
        return {ObjectKey(k, ns, n): (dh, dts is not None, origin) for k, ns, n, dh, dts, origin in self._conn.execute(
            "SELECT kind, namespace, name, desired_hash, deletion_timestamp, origin FROM objects")}

    def applied_revision(self) -> str | None:
        """Decides which revision is the applied one: the last synced, refusals ignored."""
        row = self._conn.execute(
            "SELECT sha FROM revisions WHERE result = 'applied' ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def revisions(self, limit: int = 20) -> list[dict]:
        """Lists the latest revisions seen, newest first: sha, time, result, message."""
        return [
            {"sha": s, "time": t, "result": r, "message": m}
            for s, t, r, m in self._conn.execute(
                "SELECT sha, time, result, message FROM revisions ORDER BY id DESC LIMIT ?", (limit,))
        ]

    def first_revision_time(self) -> str | None:
        """When this state dir saw its first revision (the cluster's birth, as the default namespace tells it)."""
        row = self._conn.execute("SELECT time FROM revisions ORDER BY id LIMIT 1").fetchone()
        return row[0] if row else None

    # ---- objects ------------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        """Returns the stored object (Kubernetes JSON) or None."""
        ns = "" if kind in CLUSTER_SCOPED else (namespace or "default")
        row = self._conn.execute("SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                                 (kind, ns, name)).fetchone()
        return json.loads(row[0]) if row else None

    def list(self, kind: str | None = None, namespace: str | None = None, selector: Any = None,
             origin: str | None = None) -> list[dict]:
        """Lists stored objects of a kind (None: all kinds) in a namespace (None or '*': all), matching a label selector.

        `selector` is anything with `.matches(labels)` (gitkube.api.labels.Selector) or a dict of equalities.
        Sorted by (kind, namespace, name).
        """
        sql = "SELECT body, labels FROM objects WHERE 1=1"
        args: list[Any] = []
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        if namespace not in (None, "*") and kind not in CLUSTER_SCOPED:
            sql += " AND namespace = ?"
            args.append(namespace)
        if origin is not None:
            sql += " AND origin = ?"
            args.append(origin)
        sql += " ORDER BY kind, namespace, name"
        match = _matcher(selector)
        return [json.loads(body) for body, labels in self._conn.execute(sql, args)
                if match is None or match(json.loads(labels))]

    def git_digests(self) -> dict[tuple[str, str, str], str]:
        """Per Git-origin object not marked for deletion, the hash of its authored content as last synced."""
        return {(k, ns, n): h for k, ns, n, h in self._conn.execute(
            "SELECT kind, namespace, name, desired_hash FROM objects WHERE origin = 'git' AND deletion_timestamp IS NULL")}

    def put(self, obj: Mapping, origin: str = "controller", now: datetime | str | None = None) -> dict:
        """Creates or updates one object (controller-made Pods, Nodes…); keeps uid/creationTimestamp/status; returns it stored."""
        key = object_key(obj)
        content = desired_content(obj)
        dhash = content_hash(content)
        ts = now_timestamp(now)
        with self._tx() as conn:
            row = conn.execute(
                "SELECT desired_hash, origin, deletion_timestamp FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                key).fetchone()
            if row is not None and row[0] == dhash and row[1] == origin and row[2] is None and "status" not in obj:
                pass
            else:
                rv = self._next_rv_base(conn) + 1
                if row is None:
                    self._insert(conn, key, obj, content, dhash, origin, ts, rv)
                else:
                    self._update_desired(conn, key, content, dhash, origin, rv)
                if "status" in obj and obj["status"] is not None:
                    self._write_status(conn, key, obj["status"], rv)
                self._set_rv(conn, rv)
        return self.get(*key)

    def set_fields(self, kind: str, namespace: str, name: str, spec: Mapping | None = None,
                   metadata: Mapping | None = None) -> bool:
        """Merges controller-owned fields (a pod's spec.nodeName, ownerReferences) into an object without making
        them part of what its author wrote: the next revision sync compares only the author's content."""
        key = object_key({"kind": kind, "metadata": {"namespace": namespace, "name": name}})
        with self._tx() as conn:
            row = conn.execute("SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?", key).fetchone()
            if row is None:
                return False
            body = json.loads(row[0])
            if spec:
                body["spec"] = {**(body.get("spec") or {}), **spec}
            if metadata:
                body["metadata"] = {**body["metadata"], **metadata}
                body["metadata"] = {k: v for k, v in body["metadata"].items() if v is not None}
            rv = self._next_rv_base(conn) + 1
            body["metadata"]["resourceVersion"] = str(rv)
            conn.execute("UPDATE objects SET body = ?, resource_version = ?, labels = ? WHERE kind = ? AND namespace = ? AND name = ?",
                         (_dumps(body), rv, _dumps(body["metadata"].get("labels") or {}), *key))
            self._set_rv(conn, rv)
        return True

    def update_status(self, kind: str, namespace: str, name: str, status: Mapping) -> dict:
        """Replaces an object's status (not its spec or generation); raises NotFound when absent."""
        key = object_key({"kind": kind, "metadata": {"namespace": namespace, "name": name}})
        with self._tx() as conn:
            rv = self._next_rv_base(conn) + 1
            if not self._write_status(conn, key, dict(status), rv):
                raise NotFound(str(key))
            self._set_rv(conn, rv)
        return self.get(*key)

    def mark_deleted(self, kind: str, namespace: str, name: str, now: datetime | str | None = None) -> bool:
        """Sets deletionTimestamp (graceful deletion starts); False when absent or already marked."""
        key = object_key({"kind": kind, "metadata": {"namespace": namespace, "name": name}})
        with self._tx() as conn:
            row = conn.execute("SELECT deletion_timestamp FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                               key).fetchone()
            if row is None or row[0] is not None:
                return False
            rv = self._next_rv_base(conn) + 1
            self._mark_deleted(conn, key, now_timestamp(now), rv)
            self._set_rv(conn, rv)
        return True

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Removes an object's row now (deletion finished); False when it was absent."""
        key = object_key({"kind": kind, "metadata": {"namespace": namespace, "name": name}})
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?", key)
            return cur.rowcount > 0

    def purge(self, kinds: Iterable[str] | None = None) -> list[ObjectKey]:
        """Removes the rows marked for deletion (of the given kinds, or all); returns their keys."""
        with self._tx() as conn:
            sql = "SELECT kind, namespace, name FROM objects WHERE deletion_timestamp IS NOT NULL"
            args: list[str] = []
            if kinds is not None:
                kinds = list(kinds)
                sql += f" AND kind IN ({','.join('?' * len(kinds))})"
                args = kinds
            keys = [ObjectKey(*r) for r in conn.execute(sql, args)]
            conn.executemany("DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?", keys)
        return keys

    # ---- events -------------------------------------------------------------------------------
    def record_event(self, involved: Mapping, reason: str, message: str, type: str = "Normal", *,
                     component: str = "gitkube", host: str = "", now: datetime | str | None = None) -> dict:
        """Records an event about an object; a repeat of (object, reason, message, type, source) bumps count and lastTimestamp.

        `involved` is a stored object (with metadata) or a reference {kind, namespace, name, uid}.
        """
        ref = _involved_ref(involved)
        with self._tx() as conn:
            return self._record_event(conn, ref, reason, message, type, component, host, now_timestamp(now))

    def events(self, involved: Mapping | tuple | None = None, namespace: str | None = None) -> list[dict]:
        """Lists events (Kubernetes Event JSON), oldest lastTimestamp first, for one object and/or namespace."""
        sql = f"SELECT {_EVENT_COLS} FROM events WHERE 1=1"
        args: list[Any] = []
        if involved is not None:
            ref = _involved_ref(involved) if isinstance(involved, Mapping) else dict(
                zip(("kind", "namespace", "name"), involved), uid="")
            sql += " AND involved_kind = ? AND involved_namespace = ? AND involved_name = ?"
            args += [ref["kind"], ref["namespace"], ref["name"]]
            if ref.get("uid"):
                sql += " AND involved_uid IN (?, '')"
                args.append(ref["uid"])
        if namespace not in (None, "*"):
            sql += " AND namespace = ?"
            args.append(namespace)
        sql += " ORDER BY last_timestamp, id"
        return [_event_json(r) for r in self._conn.execute(sql, args)]

    # ---- changes (what a watch reads) ---------------------------------------------------------
    CHANGES_KEPT = 10000  # the change log keeps at least the last this many resourceVersions (schema step 2)

    def resource_version(self) -> int:
        """The store's current resourceVersion: that of its latest change (a list's resourceVersion)."""
        return self._next_rv_base(self._conn)

    def state_version(self) -> int:
        """A number that moves whenever what a pass plans from may have changed: objects, events, and (single
        writer) the records only a pass writes. The heartbeat records do not move it."""
        return self.resource_version()

    def oldest_watchable(self) -> int:
        """Decides the oldest resourceVersion a watch can start from; older ones are gone (410)."""
        row = self._conn.execute("SELECT value FROM kv WHERE key = 'changesFrom'").fetchone()
        return max(int(row[0]) if row else 0, self.resource_version() - self.CHANGES_KEPT)

    def changes_since(self, rv: int, kinds: Iterable[str] | None = None, limit: int = 1000) -> list[dict]:
        """Changes after resourceVersion `rv`, oldest first: {rv, type, kind, namespace, name, object}.

        An event's `object` is read from the events table as it is now (events keep no history)."""
        sql = "SELECT rv, type, kind, namespace, name, body FROM changes WHERE rv > ?"
        args: list[Any] = [rv]
        if kinds is not None:
            kinds = list(kinds)
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += kinds
        sql += " ORDER BY rv LIMIT ?"
        out = []
        for crv, typ, kind, ns, name, body in self._conn.execute(sql, [*args, limit]).fetchall():
            if body is not None:
                obj = json.loads(body)
            else:
                row = self._conn.execute(f"SELECT {_EVENT_COLS} FROM events WHERE namespace = ? AND name = ?",
                                         (ns, name)).fetchone()
                if row is None:
                    continue
                obj = _event_json(row)
            out.append({"rv": crv, "type": typ, "kind": kind, "namespace": ns, "name": name, "object": obj})
        return out

    # ---- key/value ----------------------------------------------------------------------------
    def kv_get(self, key: str, default: Any = None) -> Any:
        """Returns a small JSON value kept under `key` (allocator state and the like)."""
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def kv_set(self, key: str, value: Any) -> None:
        """Stores a small JSON value under `key`."""
        with self._tx() as conn:
            conn.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (key, _dumps(value)))

    # ---- internals ----------------------------------------------------------------------------
    @staticmethod
    def _next_rv_base(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM kv WHERE key = 'resourceVersion'").fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _set_rv(conn: sqlite3.Connection, rv: int) -> None:
        conn.execute("INSERT INTO kv (key, value) VALUES ('resourceVersion', ?) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(rv),))

    @staticmethod
    def _insert(conn, key: ObjectKey, obj: Mapping, content: dict, dhash: str, origin: str, ts: str, rv: int) -> None:
        uid = (obj.get("metadata") or {}).get("uid") or str(uuid.uuid4())
        created = (obj.get("metadata") or {}).get("creationTimestamp") or ts
        meta = dict(content["metadata"])
        meta.update(uid=uid, creationTimestamp=created, generation=1, resourceVersion=str(rv))
        body = {**content, "metadata": meta}
        status = DEFAULT_STATUS.get(key.kind)
        if status is not None:
            body["status"] = json.loads(_dumps(status))
        conn.execute(
            "INSERT INTO objects (kind, namespace, name, uid, generation, resource_version, creation_timestamp,"
            " deletion_timestamp, labels, body, origin, spec_hash, desired_hash)"
            " VALUES (?, ?, ?, ?, 1, ?, ?, NULL, ?, ?, ?, ?, ?)",
            (*key, uid, rv, created, _dumps(meta.get("labels") or {}), _dumps(body), origin,
             content_hash(content.get("spec")), dhash))

    @staticmethod
    def _update_desired(conn, key: ObjectKey, content: dict, dhash: str, origin: str, rv: int) -> None:
        uid, gen, created, spec_hash, body = conn.execute(
            "SELECT uid, generation, creation_timestamp, spec_hash, body FROM objects"
            " WHERE kind = ? AND namespace = ? AND name = ?", key).fetchone()
        old = json.loads(body)
        new_spec_hash = content_hash(content.get("spec"))
        if new_spec_hash != spec_hash:
            gen += 1
        meta = dict(content["metadata"])
        meta.update(uid=uid, creationTimestamp=created, generation=gen, resourceVersion=str(rv))
        new = {**content, "metadata": meta}
        if "status" in old:
            new["status"] = old["status"]
        conn.execute(
            "UPDATE objects SET generation = ?, resource_version = ?, deletion_timestamp = NULL, labels = ?,"
            " body = ?, origin = ?, spec_hash = ?, desired_hash = ? WHERE kind = ? AND namespace = ? AND name = ?",
            (gen, rv, _dumps(meta.get("labels") or {}), _dumps(new), origin, new_spec_hash, dhash, *key))

    @staticmethod
    def _mark_deleted(conn, key: ObjectKey, ts: str, rv: int) -> None:
        (body,) = conn.execute("SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?", key).fetchone()
        obj = json.loads(body)
        obj["metadata"]["deletionTimestamp"] = ts
        obj["metadata"]["resourceVersion"] = str(rv)
        conn.execute("UPDATE objects SET deletion_timestamp = ?, resource_version = ?, body = ?"
                     " WHERE kind = ? AND namespace = ? AND name = ?", (ts, rv, _dumps(obj), *key))

    @staticmethod
    def _write_status(conn, key: ObjectKey, status: Mapping, rv: int) -> bool:
        row = conn.execute("SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?", key).fetchone()
        if row is None:
            return False
        obj = json.loads(row[0])
        obj["status"] = dict(status)
        obj["metadata"]["resourceVersion"] = str(rv)
        conn.execute("UPDATE objects SET resource_version = ?, body = ? WHERE kind = ? AND namespace = ? AND name = ?",
                     (rv, _dumps(obj), *key))
        return True

    @staticmethod
    def _record_event(conn, ref: Mapping, reason: str, message: str, type: str, component: str, host: str,
                      ts: str) -> dict:
        if type not in ("Normal", "Warning"):
            raise ValueError(f"event type must be Normal or Warning, not {type!r}")
        ns = ref["namespace"] or EVENT_NAMESPACE_FOR_CLUSTER_SCOPED
        name = f"{ref['name']}.{uuid.uuid4().hex[:16]}"
        conn.execute(
            "INSERT INTO events (name, namespace, uid, involved_kind, involved_namespace, involved_name, involved_uid,"
            " reason, message, type, count, first_timestamp, last_timestamp, source_component, source_host)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)"
            " ON CONFLICT (involved_kind, involved_namespace, involved_name, involved_uid, reason, message, type,"
            " source_component, source_host) DO UPDATE SET count = count + 1, last_timestamp = excluded.last_timestamp",
            (name, ns, str(uuid.uuid4()), ref["kind"], ref["namespace"], ref["name"], ref.get("uid") or "",
             reason, message, type, ts, ts, component, host))
        row = conn.execute(
            f"SELECT {_EVENT_COLS} FROM events WHERE involved_kind = ? AND involved_namespace = ? AND involved_name = ?"
            " AND involved_uid = ? AND reason = ? AND message = ? AND type = ? AND source_component = ?"
            " AND source_host = ?",
            (ref["kind"], ref["namespace"], ref["name"], ref.get("uid") or "", reason, message, type, component,
             host)).fetchone()
        return _event_json(row)


_EVENT_COLS = ("name, namespace, uid, involved_kind, involved_namespace, involved_name, involved_uid, reason, message,"
               " type, count, first_timestamp, last_timestamp, source_component, source_host, resource_version")


def _event_json(row: tuple) -> dict:
    (name, ns, uid, ikind, ins, iname, iuid, reason, message, type_, count, first, last, comp, host, rv) = row
    ev = event_object(name, ns, uid, {"kind": ikind, "namespace": ins, "name": iname, "uid": iuid}, reason, message,
                      type_, count, first, last, comp, host)
    ev["metadata"]["resourceVersion"] = str(rv)
    return ev


def event_object(name: str, ns: str, uid: str, ref: Mapping, reason: str, message: str, type_: str, count: int,
                 first: str, last: str, comp: str, host: str) -> dict:
    """A v1 Event as both stores serve it: the involved object's ref (kind, namespace, name, uid; apiVersion v1 for
    core kinds), the source component and host."""
    involved = {"kind": ref["kind"], "name": ref["name"]}
    if ref["namespace"]:
        involved["namespace"] = ref["namespace"]
    if ref.get("uid"):
        involved["uid"] = ref["uid"]
    if ref["kind"] in ("Pod", "ReplicationController", "Service", "Namespace", "Node", "Endpoints"):
        involved["apiVersion"] = "v1"
    source = {"component": comp}
    if host:
        source["host"] = host
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "creationTimestamp": first},
        "involvedObject": involved, "reason": reason, "message": message, "type": type_, "count": count,
        "firstTimestamp": first, "lastTimestamp": last, "source": source,
    }


def _involved_ref(involved: Mapping) -> dict:
    if "metadata" in involved:
        key = object_key(involved)
        return {"kind": key.kind, "namespace": key.namespace, "name": key.name,
                "uid": involved["metadata"].get("uid", "")}
    kind = involved["kind"]
    ns = "" if kind in CLUSTER_SCOPED else (involved.get("namespace") or "")
    return {"kind": kind, "namespace": ns, "name": involved["name"], "uid": involved.get("uid") or ""}


def _matcher(selector: Any):
    if selector is None:
        return None
    if hasattr(selector, "matches"):
        return selector.matches
    if isinstance(selector, Mapping):
        want = dict(selector)
        return lambda labels: all(labels.get(k) == v for k, v in want.items())
    raise TypeError(f"selector must be a Selector or a dict, not {type(selector).__name__}")


def store_cluster_id(store) -> str:
    """A store's installation id (`cluster_id()` of the SQLite and the etcd store): the state dir's `cluster-id`
    file, else the one the store keeps (kv `cluster_id`), else, for a writer, a new one; kept in both."""
    path = os.path.join(store.state_dir, CLUSTER_ID_FILE)
    try:
        with open(path) as f:
            cid = f.read().strip()
    except FileNotFoundError:
        cid = ""
    if not cid:
        cid = str(store.kv_get("cluster_id") or "")
        if not cid and store.writer:
            cid = uuid.uuid4().hex[:16]
        if cid and store.writer:
            os.makedirs(store.state_dir, exist_ok=True)
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                f.write(cid + "\n")
            os.replace(tmp, path)
    if cid and store.writer and store.kv_get("cluster_id") != cid:
        store.kv_set("cluster_id", cid)
    return cid


def db_problem(db_path: str, full: bool = False) -> str | None:
    """Decides whether a state DB file is unusable, and says why in a few words (None: usable, or absent).
    SQLite's quick_check (integrity_check when `full`) finds damaged pages; every stored JSON body is decoded too."""
    try:
        size = os.path.getsize(db_path)
    except FileNotFoundError:
        return None
    if size == 0:
        return "is empty (0 bytes)"
    conn = None
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10.0)
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check")]
        if rows != ["ok"]:
            lines = [ln.strip() for r in rows for ln in str(r).splitlines() if ln.strip() and "***" not in ln]
            more = f"; and {len(lines) - 2} more" if len(lines) > 2 else ""
            return f"is corrupt ({'; '.join(lines[:2])}{more})"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if conn.execute("PRAGMA user_version").fetchone()[0] and not {"objects", "kv"} <= tables:
            return "is corrupt (its tables are missing)"
        for table, col in (("objects", "body"), ("kv", "value")):
            if table in tables:
                for (text,) in conn.execute(f"SELECT {col} FROM {table}"):
                    json.loads(text)
    except sqlite3.DatabaseError as e:
        return f"is corrupt ({e})"
    except (ValueError, TypeError) as e:
        return f"is corrupt (a stored object is not valid JSON: {e})"
    finally:
        if conn is not None:
            conn.close()
    return None


def _recover(state_dir: str, db_path: str, fresh: bool = False) -> str | None:
    """Decides whether the state was lost and clears the way for a fresh DB: an empty file is removed, a corrupt
    one moved aside as `state.db.corrupt-<time>`; returns the one line that says so (None: nothing was lost)."""
    problem = db_problem(db_path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if problem is None and fresh and os.path.exists(db_path):
        aside = f"{db_path}.before-rebuild-{stamp}"
        _move_aside(db_path, aside)
        return f"state DB {db_path} moved aside to {aside} on request"
    if problem is None:
        if not os.path.exists(db_path) and os.path.exists(os.path.join(state_dir, CLUSTER_ID_FILE)):
            _move_aside(db_path, None)  # a stale WAL must not be replayed into the new DB
            return f"state DB {db_path} is missing"
        return None
    if problem.startswith("is empty"):
        _move_aside(db_path, None)
        return f"state DB {db_path} {problem}"
    aside = f"{db_path}.corrupt-{stamp}"
    _move_aside(db_path, aside)
    return f"state DB {db_path} {problem}; moved aside to {aside}"


def _move_aside(db_path: str, aside: str | None) -> None:
    """Moves the DB and its WAL/shared-memory files to `aside` (None: removes them)."""
    for suffix in ("", "-wal", "-shm"):
        src = db_path + suffix
        if not os.path.exists(src):
            continue
        if aside is None:
            os.remove(src)
        else:
            os.replace(src, aside + suffix)


def integrity_report(state_dir: str) -> tuple[bool, str]:
    """SQLite's full integrity check of a state dir's DB (and its JSON bodies): whether it passed, and a line."""
    db_path = os.path.join(state_dir, DB_FILE)
    if not os.path.exists(db_path):
        return True, f"state DB {db_path} does not exist (the next apply starts it, rebuilding from the nodes)"
    problem = db_problem(db_path, full=True)
    if problem:
        return False, f"state DB {db_path} {problem}"
    return True, f"state DB {db_path}: integrity check ok"


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per step.
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _take_lock(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise StoreLocked(
            f"another gitkube writer holds the state lock {path} (pid {holder}); "
            "stop it first, or use read-only commands (get, describe, events)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, ROLLBACK on error; nested use joins the outer transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        if self.conn.in_transaction:
            return self.conn
        self.outer = True
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.outer:
            return
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
