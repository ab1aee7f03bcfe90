"""The state store on etcd v3, for two or more controllers: the same interface as the SQLite store, every
read-modify-write a transaction that compares the key's mod revision, every write fenced by the leader's lease,
and the API's watch served from an etcd watch. Speaks etcd's JSON gateway through etcd3gw.

Keys under the prefix (default /gitkube/):
  o/KIND/NAMESPACE/NAME   an object ({"b": body, "o": origin, "sh": spec hash, "dh": desired hash}); Events too
  ev/HASH                 Kubernetes' event aggregation key -> the event's name (a repeat bumps count)
  rev/NNNN                revisions seen (sha, time, result, message); meta/applied: the applied one
  kv/KEY                  small JSON values (heartbeats, bindings, allocations)
  leader                  the leader's record, attached to its lease
An object's resourceVersion is its key's mod revision, as in Kubernetes."""
from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import etcd3gw
import requests
import requests.adapters
from etcd3gw import exceptions as gwerr

from gitkube.api.content import CLUSTER_SCOPED
from gitkube.store.db import (
    EVENT_NAMESPACE_FOR_CLUSTER_SCOPED,
    NotFound,
    ObjectKey,
    ReadOnlyStore,
    StoreLocked,
    StoreURLError,
    SyncResult,
    _involved_ref,
    _matcher,
    desired_content,
    event_object,
    now_timestamp,
    object_key,
    refused_texts,
)
from gitkube.store.records import content_hash, inserted_body, spec_hash_of, updated_body

log = logging.getLogger("gitkube.store.etcd")

DEFAULT_PREFIX = "/gitkube/"
TXN_OBJECTS = 50  # objects per transaction (etcd refuses more than --max-txn-ops, 128 by default, operations)
CAS_RETRIES = 20
POOL_SIZE = 32  # pooled HTTP connections per etcd member


class StoreUnavailable(RuntimeError):
    """No etcd member answered (or none has a quorum)."""


class Fenced(RuntimeError):
    """This process is not (or no longer) the leader: its write was refused and nothing was written."""


class Conflict(RuntimeError):
    """A compare-and-swap kept failing: another writer changed the key meanwhile."""


def parse_url(url: str) -> tuple[list[str], str]:
    """Decides the endpoints and key prefix of `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`."""
    if not url.startswith("etcd://"):
        raise StoreURLError(f"not an etcd store URL: {url!r} (want etcd://HOST:PORT[,HOST:PORT...])")
    rest = url[len("etcd://"):]
    hosts, _, path = rest.partition("/")
    endpoints = [h.strip() for h in hosts.split(",") if h.strip()]
    if not endpoints:
        raise StoreURLError(f"{url!r} names no etcd endpoint (want etcd://HOST:PORT[,HOST:PORT...])")
    for e in endpoints:
        parts = urlsplit(f"//{e}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or not port:
            raise StoreURLError(f"etcd endpoint {e!r} in {url!r} is not HOST:PORT")
    prefix = "/" + path.strip("/") + "/" if path.strip("/") else DEFAULT_PREFIX
    return endpoints, prefix


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)


def _range_end(prefix: str) -> str:
    b = bytearray(prefix.encode())
    b[-1] += 1
    return _b64(bytes(b))


def _dumps(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _kv_value(kv: Mapping) -> Any:
    return json.loads(_unb64(kv["value"])) if kv.get("value") else None


class Gateway:
    """etcd3gw clients, one per member; a call that cannot reach one member goes to the next."""

    def __init__(self, endpoints: list[str], timeout: float = 5.0):
        self.endpoints = endpoints
        self.timeout = timeout
        self.clients = []
        for e in endpoints:
            host, _, port = e.rpartition(":")
            # A pass writes from a thread per node and the watch holds one connection: more than requests' 8 pooled
            # connections per host (each one past them was opened, used once and dropped, with a warning each).
            session = requests.Session()
            session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE))
            self.clients.append(etcd3gw.client(host=host, port=int(port), timeout=timeout, api_path="/v3/",
                                               session=session))
        self._i = 0
        self.calls = 0  # requests made (benches count a pass's store cost)

    def call(self, path: str, body: Mapping) -> dict:
        last: Exception | None = None
        for k in range(len(self.clients)):
            i = (self._i + k) % len(self.clients)
            c = self.clients[i]
            try:
                self.calls += 1
                out = c.post(c.get_url(path), json=body)
                self._i = i
                return out
            except (gwerr.ConnectionFailedError, gwerr.ConnectionTimeoutError, gwerr.InternalServerError) as e:
                last = e  # a stopped member, or one that lost its quorum: the next one
            except gwerr.Etcd3Exception as e:
                if "no leader" in str(e) or "timed out" in str(e) or "unavailable" in str(e).lower():
                    last = e
                    continue
                raise
        why = (str(last).strip() or type(last).__name__)[:300]
        raise StoreUnavailable(f"no etcd member of {','.join(self.endpoints)} answered ({why})")

    def stream(self, path: str, body: Mapping):
        """A streamed response (a watch) from the first member that answers."""
        last: Exception | None = None
        for k in range(len(self.clients)):
            i = (self._i + k) % len(self.clients)
            c = self.clients[i]
            try:
                r = c.session.post(c.get_url(path), json=body, stream=True, timeout=(self.timeout, None))
                if r.status_code == 200:
                    return r
                last = RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
                r.close()
            except Exception as e:  # noqa: BLE001 - requests' connection errors: try the next member
                last = e
        raise StoreUnavailable(f"no etcd member of {','.join(self.endpoints)} accepted a watch: {last}")

    def range(self, key: str, prefix: bool = False, **extra) -> dict:
        return self.call("/kv/range", _key_range(key, prefix, extra))

    def delete_range(self, key: str, prefix: bool = False) -> dict:
        """Deletes `key` (with `prefix`: every key under it); the answer says how many went (`deleted`)."""
        return self.call("/kv/deleterange", _key_range(key, prefix, {}))


def _key_range(key: str, prefix: bool, extra: Mapping) -> dict:
    body = {"key": _b64(key), **extra}
    if prefix:
        body["range_end"] = _range_end(key)
    return body


_GATEWAYS: dict[tuple, Gateway] = {}
_GATEWAYS_LOCK = threading.Lock()


def gateway(endpoints: list[str]) -> Gateway:
    with _GATEWAYS_LOCK:
        g = _GATEWAYS.get(tuple(endpoints))
        if g is None:
            g = _GATEWAYS[tuple(endpoints)] = Gateway(endpoints)
        return g


# ---- leadership ---------------------------------------------------------------------------------------------
class Leadership:
    """Leader election on an etcd lease: the leader key exists while its lease lives; the holder keeps the lease
    alive every TTL/3 and knows, by its own monotonic clock, until when it surely still holds it. Writes compare the
    leader key's create revision (the fence in etcd); node actions check `valid()` (the fence in this process)."""

    def __init__(self, gw: Gateway, prefix: str, identity: str, ttl: int = 5, info: Mapping | None = None):
        self.gw = gw
        self.key = prefix + "leader"
        self.identity = identity
        self.ttl = int(ttl)
        self.info = dict(info or {})
        self.lease_id: int | None = None
        self.create_revision: int | None = None
        self.valid_until = 0.0
        self.lost_reason: str | None = None
        self.on_lost: list[Callable[[str], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.margin = min(1.0, self.ttl / 4)

    def holder(self) -> dict | None:
        """The current leader's record (holderIdentity, acquireTime, ...) or None when there is none."""
        kvs = self.gw.range(self.key).get("kvs") or []
        if not kvs:
            return None
        rec = _kv_value(kvs[0]) or {}
        rec["createRevision"] = int(kvs[0].get("create_revision", 0))
        return rec

    def try_acquire(self) -> bool:
        """Takes the leader key if nobody holds it (one transaction); starts the keepalive. False when held."""
        t0 = time.monotonic()
        lease = self.gw.call("/lease/grant", {"TTL": self.ttl})
        lease_id = int(lease["ID"])
        ttl = int(lease.get("TTL", self.ttl))
        rec = {"holderIdentity": self.identity, "acquireTime": now_timestamp(), "leaseDurationSeconds": self.ttl,
               **self.info}
        r = self.gw.call("/kv/txn", {
            "compare": [{"key": _b64(self.key), "result": "EQUAL", "target": "VERSION", "version": "0"}],
            "success": [{"request_put": {"key": _b64(self.key), "value": _b64(_dumps(rec)), "lease": str(lease_id)}}],
            "failure": [],
        })
        if not r.get("succeeded"):
            try:
                self.gw.call("/kv/lease/revoke", {"ID": str(lease_id)})
            except Exception:  # noqa: BLE001 - it expires anyway
                pass
            return False
        self.lease_id = lease_id
        self.create_revision = int(r["header"]["revision"])
        self.valid_until = t0 + ttl
        self.lost_reason = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._keepalive, name="etcd-lease-keepalive", daemon=True)
        self._thread.start()
        return True

    def _keepalive(self) -> None:
        lease_id = self.lease_id
        while not self._stop.wait(self.ttl / 3):
            if self.lease_id != lease_id or self.lost_reason:
                return
            t0 = time.monotonic()
            if t0 >= self.valid_until:
                self._lose(f"lease {lease_id:x} not renewed within its TTL of {self.ttl}s")
                return
            try:
                r = self.gw.call("/lease/keepalive", {"ID": str(lease_id)})
            except Exception as e:  # noqa: BLE001 - no member answered: retry until the lease would be gone
                log.warning("lease keepalive failed: %s", e)
                continue
            ttl = int((r.get("result") or {}).get("TTL", -1))
            if ttl <= 0:
                self._lose(f"lease {lease_id:x} expired in etcd")
                return
            self.valid_until = t0 + ttl

    def _lose(self, why: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = why
            log.warning("leadership lost: %s", why)
            for cb in list(self.on_lost):
                try:
                    cb(why)
                except Exception:  # noqa: BLE001
                    log.exception("on_lost callback failed")

    def valid(self) -> bool:
        """Whether this process surely still holds the lease (with a margin before its TTL runs out)."""
        return (self.create_revision is not None and self.lost_reason is None
                and time.monotonic() < self.valid_until - self.margin)

    def check(self) -> None:
        """Raises Fenced unless `valid()`: called before every write and every node action."""
        if not self.valid():
            if self.create_revision is not None and self.lost_reason is None:
                self._lose(f"lease not renewed for {self.ttl}s (this process was paused or cut off)")
            raise Fenced(f"not the leader: {self.lost_reason or 'leadership not held'}")

    def compare(self) -> dict:
        return {"key": _b64(self.key), "result": "EQUAL", "target": "CREATE",
                "create_revision": str(self.create_revision or 0)}

    def refused(self, holder: str) -> None:
        self._lose(f"a write was refused by etcd's fence: the leader key is now {holder}")

    def resign(self) -> None:
        """Gives the leadership up now (revokes the lease: a standby takes over at once)."""
        self._stop.set()
        lease_id, self.lease_id = self.lease_id, None
        self.create_revision = None
        if lease_id is not None:
            try:
                self.gw.call("/kv/lease/revoke", {"ID": str(lease_id)})
            except Exception:  # noqa: BLE001 - it expires anyway
                pass


def default_identity() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


# ---- the process's mirror of the store, kept by one etcd watch --------------------------------------------------
class Mirror:
    """Every key under the prefix (but the revision history) as of revision `rv`, kept current by one etcd watch
    per process and prefix (an informer's cache): the leader reads from it instead of asking etcd again, and the
    API's watch reads its last CHANGES_KEPT object changes. A write this process made is applied at once (it knows
    the revision); the watch's copy of it then changes nothing. Compare-and-swap on every write keeps a stale read
    harmless: the write fails, the key is read from etcd, and the change is retried."""

    CHANGES_KEPT = 10000

    def __init__(self, gw: Gateway, prefix: str):
        self.gw = gw
        self.prefix = prefix
        self.objects_prefix = prefix + "o/"
        self.skip = prefix + "rev/"
        self.keys: dict[str, tuple[str, int, int]] = {}  # key -> (JSON text, mod revision, create revision)
        self.tombs: dict[str, int] = {}  # key -> revision of its deletion (an older put seen later is ignored)
        self.changes: deque[dict] = deque(maxlen=self.CHANGES_KEPT)
        self.cond = threading.Condition()
        r = gw.range(prefix, prefix=True)
        for kv in r.get("kvs") or []:
            key = _unb64(kv["key"]).decode()
            if not key.startswith(self.skip):
                self.keys[key] = (_unb64(kv["value"]).decode(), int(kv["mod_revision"]), int(kv["create_revision"]))
        self.rv = self.oldest = int(r["header"]["revision"])
        self.state_rv = self.rv  # see EtcdStore.state_version
        self._state_prefixes = (self.objects_prefix, prefix + "kv/", prefix + "meta/")
        self._not_state = prefix + "kv/heartbeats"
        self._t = threading.Thread(target=self._run, name="etcd-watch", daemon=True)
        self._t.start()

    # -- reads ------------------------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[Any, int]:
        with self.cond:
            got = self.keys.get(key)
        return (json.loads(got[0]), got[1]) if got else (None, 0)

    def scan(self, prefix: str, skip: str | None = None) -> list[tuple[str, Any, int, int]]:
        with self.cond:
            hits = [(k, v) for k, v in self.keys.items() if k.startswith(prefix)
                    and not (skip and k.startswith(skip))]
        return [(k, json.loads(t), mod, cre) for k, (t, mod, cre) in hits]

    # -- writes seen --------------------------------------------------------------------------------------------
    def _moved(self, key: str, mod: int) -> None:
        if key.startswith(self._state_prefixes) and key != self._not_state and mod > self.state_rv:
            self.state_rv = mod

    def put(self, key: str, text: str, mod: int, create: int | None = None, change: bool = False) -> None:
        if key.startswith(self.skip):
            return
        with self.cond:
            self._moved(key, mod)
            old = self.keys.get(key)
            cre = create or (old[2] if old else mod)
            if change:
                self._change(key, "ADDED" if cre == mod else "MODIFIED", text, mod)
            if (old is not None and old[1] >= mod) or self.tombs.get(key, 0) >= mod:
                return
            self.tombs.pop(key, None)
            self.keys[key] = (text, mod, cre)

    def delete(self, key: str, mod: int, prev_text: str | None = None, change: bool = False) -> None:
        with self.cond:
            self._moved(key, mod)
            old = self.keys.get(key)
            if old is not None and old[1] < mod:
                del self.keys[key]
            if self.tombs.get(key, 0) < mod:
                self.tombs[key] = mod
            if change and prev_text is not None:
                self._change(key, "DELETED", prev_text, mod)

    def _change(self, key: str, typ: str, text: str, rev: int) -> None:
        if not key.startswith(self.objects_prefix):
            return
        try:
            kind, ns, name = key[len(self.objects_prefix):].split("/", 2)
        except ValueError:
            return
        if len(self.changes) == self.changes.maxlen:
            self.oldest = self.changes[0]["rv"]
        self.changes.append({"rv": rev, "type": typ, "kind": kind, "namespace": ns, "name": name, "text": text})

    # -- the watch ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                self._watch()
            except Exception as e:  # noqa: BLE001 - a member went away: watch again from where we were
                log.debug("watch ended: %s", e)
            time.sleep(0.5)

    def _watch(self) -> None:
        resp = self.gw.stream("/watch", {"create_request": {
            "key": _b64(self.prefix), "range_end": _range_end(self.prefix), "start_revision": str(self.rv + 1),
            "prev_kv": True}})
        with resp:
            for line in resp.iter_lines(chunk_size=None):
                if not line.strip():
                    continue
                res = json.loads(line).get("result") or {}
                if res.get("compact_revision") and int(res["compact_revision"]) > self.rv:
                    self._resync()
                    return
                evs = res.get("events") or []
                for ev in evs:
                    kv = ev["kv"]
                    key = _unb64(kv["key"]).decode()
                    mod = int(kv["mod_revision"])
                    if ev.get("type") == "DELETE":
                        prev = (ev.get("prev_kv") or {}).get("value")
                        self.delete(key, mod, _unb64(prev).decode() if prev else None, change=True)
                    else:
                        self.put(key, _unb64(kv.get("value", "")).decode(), mod, int(kv["create_revision"]),
                                 change=True)
                rev = int((res.get("header") or {}).get("revision", 0))
                with self.cond:
                    if evs and rev > self.rv:
                        self.rv = rev
                    self.cond.notify_all()

    def _resync(self) -> None:
        """History we missed was compacted away: list again; watches from before now get 410."""
        r = self.gw.range(self.prefix, prefix=True)
        keys = {}
        for kv in r.get("kvs") or []:
            key = _unb64(kv["key"]).decode()
            if not key.startswith(self.skip):
                keys[key] = (_unb64(kv["value"]).decode(), int(kv["mod_revision"]), int(kv["create_revision"]))
        with self.cond:
            self.keys, self.tombs = keys, {}
            self.rv = self.oldest = self.state_rv = int(r["header"]["revision"])
            self.changes.clear()

    def since(self, rv: int, kinds: Iterable[str] | None, limit: int) -> list[dict]:
        kinds = set(kinds) if kinds is not None else None
        with self.cond:
            hits = [c for c in self.changes if c["rv"] > rv and (kinds is None or c["kind"] in kinds)][:limit]
        out = []
        for c in hits:
            body = (json.loads(c["text"]) or {}).get("b") or {}
            body.setdefault("metadata", {})["resourceVersion"] = str(c["rv"])
            out.append({k: v for k, v in c.items() if k != "text"} | {"object": body})
        return out


_MIRRORS: dict[tuple, Mirror] = {}


# ---- the store ----------------------------------------------------------------------------------------------
class EtcdStore:
    """The state store on an etcd cluster. Writes need `writer=True` and a held Leadership (`guard`)."""

    backend = "etcd"
    CHANGES_KEPT = Mirror.CHANGES_KEPT

    def __init__(self, url: str, state_dir: str, writer: bool = False, guard: Leadership | None = None):
        self.url = url
        self.endpoints, self.prefix = parse_url(url)
        self.gw = gateway(self.endpoints)
        self.state_dir = state_dir
        self.writer = writer
        self.guard = guard
        self._seen_kv: dict[str, int] = {}
        self._owns_guard = False
        self.cache: Mirror | None = None  # a writer reads from the process's mirror
        # Why the state was lost when this writer opened it (its keys gone from etcd), in one line; None if not.
        self.lost: str | None = None
        self._index_memo: dict[str, tuple[int, tuple[str, bool, str]]] = {}  # desired_index's decoded entries

    @classmethod
    def open(cls, url: str, state_dir: str = "", writer: bool = False, elect: bool = True,
             ttl: int = 5) -> EtcdStore:
        """Opens the store; a writer that `elect`s takes the leadership now or is refused (StoreLocked)."""
        st = cls(url, state_dir, writer)
        try:
            st.gw.range(st.prefix + "leader", count_only=True)
        except StoreUnavailable as e:
            raise StoreUnavailable(f"etcd store {url}: {e}") from None
        if writer:
            st.cache = st._mirror()
            st.lost = st._lost()
        if writer and elect:
            lead = Leadership(st.gw, st.prefix, default_identity(), ttl=ttl, info={"role": "apply"})
            # A leader killed without resigning holds the key until its lease runs out: wait that long at most.
            deadline = time.monotonic() + ttl + 1
            while (h := lead.holder()) is not None or not lead.try_acquire():
                if time.monotonic() > deadline:
                    h = h or {}
                    raise StoreLocked(f"the etcd store {url} has a leader: {h.get('holderIdentity', 'unknown')} "
                                      f"(since {h.get('acquireTime', '?')})")
                time.sleep(0.25)
            st.guard, st._owns_guard = lead, True
        return st

    def _lost(self) -> str | None:
        """Decides whether this installation's state is gone from etcd: the state dir names an installation (its
        cluster-id file, written by every writer) but no key under the prefix names one. The first pass of the
        leader then rebuilds the state from the nodes (adopting what runs) instead of starting everything anew:
        etcd's data lost or wiped, the prefix deleted, or a state dir moving from SQLite to etcd."""
        from gitkube.store.db import CLUSTER_ID_FILE

        if not os.path.exists(os.path.join(self.state_dir, CLUSTER_ID_FILE)):
            return None  # a new installation (or a standby's first start): nothing to lose
        if self._read(f"{self.prefix}kv/cluster_id", fresh=True)[1] or self._read(self.prefix + "meta/applied")[1]:
            return None
        return f"etcd store {self.url} holds no state under {self.prefix}"

    def close(self) -> None:
        if self._owns_guard and self.guard is not None:
            self.guard.resign()
            self.guard = None

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def leader(self) -> dict | None:
        """The leader's record: holderIdentity, acquireTime, leaseDurationSeconds (None: no leader now)."""
        return Leadership(self.gw, self.prefix, "").holder()

    # ---- transactions -----------------------------------------------------------------------------------
    def _txn(self, compares: list[dict], ops: list[dict]) -> tuple[bool, int]:
        """One fenced transaction: (succeeded, revision). Raises Fenced when the leader key is not ours any more."""
        self._may_write()
        r = self.gw.call("/kv/txn", {"compare": [self.guard.compare(), *compares], "success": ops,
                                     "failure": [{"request_range": {"key": _b64(self.guard.key)}}]})
        rev = int(r["header"]["revision"])
        if r.get("succeeded"):
            if self.cache is not None:
                for op in ops:
                    if "request_put" in op:
                        self.cache.put(_unb64(op["request_put"]["key"]).decode(),
                                       _unb64(op["request_put"]["value"]).decode(), rev)
                    elif "request_delete_range" in op:
                        self.cache.delete(_unb64(op["request_delete_range"]["key"]).decode(), rev)
            return True, rev
        kvs = ((r.get("responses") or [{}])[0].get("response_range") or {}).get("kvs") or []
        if not kvs or int(kvs[0].get("create_revision", 0)) != self.guard.create_revision:
            holder = (_kv_value(kvs[0]) or {}).get("holderIdentity", "?") if kvs else "absent (lease expired)"
            self.guard.refused(holder)
            raise Fenced(f"write refused by etcd's fence: the leader key is now {holder}")
        return False, rev

    def _may_write(self) -> None:
        """Raises unless this store may write now: opened as a writer, holding a leadership still surely held."""
        if not self.writer:
            raise ReadOnlyStore(f"etcd store {self.url} was opened read-only")
        if self.guard is None:
            raise Fenced("not the leader: this process holds no leadership of the store")
        self.guard.check()

    @staticmethod
    def _cmp_mod(key: str, mod: int) -> dict:
        return {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(mod)}

    @staticmethod
    def _put(key: str, value: Any) -> dict:
        return {"request_put": {"key": _b64(key), "value": _b64(_dumps(value))}}

    @staticmethod
    def _delete(key: str) -> dict:
        return {"request_delete_range": {"key": _b64(key)}}

    def _read(self, key: str, fresh: bool = False) -> tuple[Any, int]:
        """A key's value and mod revision (None, 0 when absent): from the mirror, or from etcd when `fresh`."""
        if self.cache is not None and not fresh:
            return self.cache.get(key)
        kvs = self.gw.range(key).get("kvs") or []
        if not kvs:
            return None, 0
        text, mod = _unb64(kvs[0]["value"]).decode(), int(kvs[0]["mod_revision"])
        if self.cache is not None:
            self.cache.put(key, text, mod, int(kvs[0]["create_revision"]))
        return json.loads(text), mod

    def _scan(self, prefix: str, fresh: bool = False, skip: str | None = None) -> list[tuple[str, Any, int, int]]:
        """(key, value, mod revision, create revision) of every key under `prefix` but those under `skip` (left
        undecoded: the events, when objects are wanted, are most of the keys after a deploy)."""
        if self.cache is not None and not fresh:
            return self.cache.scan(prefix, skip)
        out = []
        for kv in self.gw.range(prefix, prefix=True).get("kvs") or []:
            key, text = _unb64(kv["key"]).decode(), _unb64(kv["value"]).decode()
            mod, cre = int(kv["mod_revision"]), int(kv["create_revision"])
            if self.cache is not None:
                self.cache.put(key, text, mod, cre)
            if not (skip and key.startswith(skip)):
                out.append((key, json.loads(text), mod, cre))
        return out

    def _rmw(self, key: str, change: Callable[[Any], Any]):
        """Read-modify-write of one key, compared on its mod revision and retried (reading etcd itself) on a
        conflict. `change(value)` returns (new value | None for no write, result)."""
        self._may_write()
        for attempt in range(CAS_RETRIES):
            value, mod = self._read(key, fresh=attempt > 0)
            new, result = change(value)
            if new is None:
                return result, mod
            ok, rev = self._txn([self._cmp_mod(key, mod)], [self._put(key, new)])
            if ok:
                return result, rev
        raise Conflict(f"{key}: changed by another writer {CAS_RETRIES} times in a row")

    def copy_to(self, dst) -> int:
        """Copies the objects (uids, status, origin kept) and kv values into another store (a dry run's SQLite
        copy); returns the objects copied."""
        n = 0
        for _key, rec, _mod, _cre in self._scan(self.prefix + "o/", skip=self.prefix + "o/Event/"):
            if "o" in rec:
                dst.put(rec["b"], origin=rec["o"])
                n += 1
        for key, value, _mod, _cre in self._scan(self.prefix + "kv/"):
            dst.kv_set(key[len(self.prefix) + 3:], value)
        return n

    # ---- keys -------------------------------------------------------------------------------------------
    def _okey(self, kind: str, namespace: str, name: str) -> str:
        return f"{self.prefix}o/{kind}/{namespace}/{name}"

    @staticmethod
    def _nskey(kind: str, namespace: str | None) -> str:
        return "" if kind in CLUSTER_SCOPED else (namespace or "default")

    @staticmethod
    def _body(rec: Mapping, mod: int) -> dict:
        body = rec["b"]
        body.setdefault("metadata", {})["resourceVersion"] = str(mod)
        return body

    # ---- revisions --------------------------------------------------------------------------------------
    def sync_revision(self, sha: str, objects: Iterable[Mapping], now: datetime | str | None = None) -> SyncResult:
        """Decides which stored Git objects a valid revision adds, changes, leaves alone or removes, and writes only
        those: in transactions of TXN_OBJECTS objects, each comparing every key's mod revision; a conflict re-reads
        and starts again."""
        self._may_write()
        ts = now_timestamp(now)
        incoming: dict[ObjectKey, tuple[Mapping, dict, str]] = {}
        for obj in objects:
            content = desired_content(obj)
            incoming[object_key(obj)] = (obj, content, content_hash(content))
        for attempt in range(CAS_RETRIES):
            result = SyncResult(sha=sha)
            rows = self._rows(fresh=attempt > 0)
            writes: list[tuple[str, int, dict]] = []  # (key, mod seen, new record)
            for key, (obj, content, dhash) in incoming.items():
                k = self._okey(*key)
                rec, mod = rows.get(key, (None, 0))
                deleting = rec is not None and rec["b"]["metadata"].get("deletionTimestamp")
                if rec is None:
                    writes.append((k, 0, {"b": inserted_body(key.kind, obj, content, ts, None), "o": "git",
                                          "sh": spec_hash_of(content), "dh": dhash}))
                    result.added.append(key)
                elif rec["dh"] == dhash and not deleting and rec["o"] == "git":
                    result.unchanged.append(key)
                else:
                    body, sh = updated_body(rec["b"], rec["sh"], content, None)
                    writes.append((k, mod, {"b": body, "o": "git", "sh": sh, "dh": dhash}))
                    (result.added if deleting else result.changed).append(key)
            for key, (rec, mod) in rows.items():
                if rec["o"] == "git" and not rec["b"]["metadata"].get("deletionTimestamp") and key not in incoming:
                    body = rec["b"]
                    body["metadata"]["deletionTimestamp"] = ts
                    writes.append((self._okey(*key), mod, {**rec, "b": body}))
                    result.removed.append(key)
            summary = (f"{len(result.added)} added, {len(result.changed)} changed, "
                       f"{len(result.unchanged)} unchanged, {len(result.removed)} removed")
            if self._write_batches(writes, self._revision_ops(sha, ts, "applied", summary)):
                return result
        raise Conflict(f"revision {sha[:12]}: the stored objects kept changing under the sync")

    def _write_batches(self, writes: list[tuple[str, int, dict]], last_ops: list[dict]) -> bool:
        """Writes (key, mod, record) in fenced compare-and-swap transactions; False at the first conflict."""
        batches = [writes[i:i + TXN_OBJECTS] for i in range(0, len(writes), TXN_OBJECTS)] or [[]]
        for i, batch in enumerate(batches):
            ops = [self._put(k, rec) for k, _m, rec in batch] + (last_ops if i == len(batches) - 1 else [])
            ok, _rev = self._txn([self._cmp_mod(k, m) for k, m, _r in batch], ops)
            if not ok:
                return False
        return True

    def _revision_ops(self, sha: str, ts: str, result: str, message: str) -> list[dict]:
        rec = {"sha": sha, "time": ts, "result": result, "message": message}
        ops = [self._put(f"{self.prefix}rev/{time.time_ns():020d}", rec)]
        if result == "applied":
            ops.append(self._put(self.prefix + "meta/applied", sha))
        return ops

    def record_refused(self, sha: str, problems: Iterable[Any], now: datetime | str | None = None) -> dict:
        """Records that a revision was refused (a revision record + a Warning event); objects stay untouched."""
        ts = now_timestamp(now)
        record, message = refused_texts(sha, problems)
        self._txn([], self._revision_ops(sha, ts, "refused", record))
        return self.record_event({"kind": "Revision", "namespace": "", "name": sha, "uid": ""},
                                 "InvalidRevision", message, "Warning", now=ts)

    def cluster_id(self) -> str:
        """This installation's identity (gitkube.store.db.store_cluster_id: the state dir's file, kept in etcd too,
        so a standby with another state dir labels and recognises the same containers)."""
        from gitkube.store.db import CLUSTER_ID_FILE, store_cluster_id

        if self.writer and not self.kv_get("cluster_id"):
            # The first process to open the store names the installation, leader or not (a standby that starts
            # first must not fail on a fenced write): one create-if-absent transaction, the first one wins. The
            # name is the state dir's when it has one (a lost store: the containers on the nodes carry that one).
            key = f"{self.prefix}kv/cluster_id"
            try:
                with open(os.path.join(self.state_dir, CLUSTER_ID_FILE)) as f:
                    cid = f.read().strip()
            except OSError:
                cid = ""
            self.gw.call("/kv/txn", {
                "compare": [{"key": _b64(key), "result": "EQUAL", "target": "VERSION", "version": "0"}],
                "success": [self._put(key, cid or uuid.uuid4().hex[:16])], "failure": []})
            value, mod = self._read(key, fresh=True)
            self._seen_kv["cluster_id"] = mod
        if self.guard is None:  # not the leader: read it, keep the state dir's copy, write nothing to the store
            cid = str(self.kv_get("cluster_id") or "")
            if cid and self.writer:
                path = os.path.join(self.state_dir, CLUSTER_ID_FILE)
                try:
                    os.makedirs(self.state_dir, exist_ok=True)
                    with open(path, "w") as f:
                        f.write(cid + "\n")
                except OSError:
                    pass
            return cid or store_cluster_id(self)
        return store_cluster_id(self)

    def applied_revision(self) -> str | None:
        """Decides which revision is the applied one: the last synced, refusals ignored."""
        return self._read(self.prefix + "meta/applied")[0]

    def first_revision_time(self) -> str | None:
        """When this store saw its first revision (the cluster's birth, as the default namespace tells it)."""
        r = self.gw.range(self.prefix + "rev/", prefix=True, sort_order="ASCEND", sort_target="KEY", limit=1)
        kvs = r.get("kvs") or []
        return _kv_value(kvs[0])["time"] if kvs else None

    def revisions(self, limit: int = 20) -> list[dict]:
        """Lists the latest revisions seen, newest first: sha, time, result, message."""
        r = self.gw.range(self.prefix + "rev/", prefix=True, sort_order="DESCEND", sort_target="KEY", limit=limit)
        return [_kv_value(kv) for kv in r.get("kvs") or []]

    # ---- objects ----------------------------------------------------------------------------------------
    def _rows(self, fresh: bool = False) -> dict[ObjectKey, tuple[dict, int]]:
        out = {}
        for key, rec, mod, _cre in self._scan(self.prefix + "o/", fresh, skip=self.prefix + "o/Event/"):
            kind, ns, name = key[len(self.prefix) + 2:].split("/", 2)
            out[ObjectKey(kind, ns, name)] = (rec, mod)
        return out

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        """Returns the stored object (Kubernetes JSON) or None."""
        rec, mod = self._read(self._okey(kind, self._nskey(kind, namespace), name))
        return self._body(rec, mod) if rec is not None else None

    def list(self, kind: str | None = None, namespace: str | None = None, selector: Any = None,
             origin: str | None = None) -> list[dict]:
        """Lists stored objects of a kind (None: all kinds) in a namespace (None or '*': all), matching a label
        selector; sorted by (kind, namespace, name)."""
        key = self.prefix + "o/"
        if kind is not None:
            key += f"{kind}/"
            if namespace not in (None, "*") and kind not in CLUSTER_SCOPED:
                key += f"{namespace}/"
        match = _matcher(selector)
        out = []
        for _k, rec, mod, _cre in self._scan(key, skip=self.prefix + "o/Event/" if kind != "Event" else None):
            if "o" not in rec or (origin is not None and rec["o"] != origin):
                continue  # events have no origin
            body = self._body(rec, mod)
            if match is None or match((body.get("metadata") or {}).get("labels") or {}):
                out.append(body)
        out.sort(key=lambda b: tuple(object_key(b)))
        return out

    def desired_index(self) -> dict[ObjectKey, tuple[str, bool, str]]:
        """Every object's (desired content hash, being deleted, origin): what a revision sync compares against.
        From the mirror, an object is decoded only when its mod revision changed since the last call (every pass
        asks: decoding 300 pods' bodies each time was most of a no-op pass's store time)."""
        if self.cache is None:
            return {k: (rec["dh"], bool(rec["b"]["metadata"].get("deletionTimestamp")), rec["o"])
                    for k, (rec, _m) in self._rows().items()}
        objects, events = self.prefix + "o/", self.prefix + "o/Event/"
        with self.cache.cond:
            keys = [(k, t, mod) for k, (t, mod, _c) in self.cache.keys.items()
                    if k.startswith(objects) and not k.startswith(events)]
        memo, out = {}, {}
        for key, text, mod in keys:
            hit = self._index_memo.get(key)
            if hit is None or hit[0] != mod:
                rec = json.loads(text)
                hit = (mod, (rec["dh"], bool(rec["b"]["metadata"].get("deletionTimestamp")), rec["o"]))
            memo[key] = hit
            out[ObjectKey(*key[len(objects):].split("/", 2))] = hit[1]
        self._index_memo = memo  # only the keys that still exist
        return out

    def git_digests(self) -> dict[tuple[str, str, str], str]:
        """Per Git-origin object not marked for deletion, the hash of its authored content as last synced."""
        return {tuple(k): rec["dh"] for k, (rec, _m) in self._rows().items()
                if rec["o"] == "git" and not rec["b"]["metadata"].get("deletionTimestamp")}

    def put(self, obj: Mapping, origin: str = "controller", now: datetime | str | None = None) -> dict:
        """Creates or updates one object (controller-made Pods, Nodes…); keeps uid/creationTimestamp/status."""
        key = object_key(obj)
        content = desired_content(obj)
        dhash = content_hash(content)
        ts = now_timestamp(now)

        def change(rec):
            if rec is not None and rec["dh"] == dhash and rec["o"] == origin and \
                    not rec["b"]["metadata"].get("deletionTimestamp") and "status" not in obj:
                return None, rec["b"]
            if rec is None:
                new = {"b": inserted_body(key.kind, obj, content, ts, None), "o": origin,
                       "sh": spec_hash_of(content), "dh": dhash}
            else:
                body, sh = updated_body(rec["b"], rec["sh"], content, None)
                new = {"b": body, "o": origin, "sh": sh, "dh": dhash}
            if obj.get("status") is not None:
                new["b"]["status"] = dict(obj["status"])
            return new, new["b"]

        body, rev = self._rmw(self._okey(*key), change)
        body.setdefault("metadata", {})["resourceVersion"] = str(rev)
        return body

    def set_fields(self, kind: str, namespace: str, name: str, spec: Mapping | None = None,
                   metadata: Mapping | None = None) -> bool:
        """Merges controller-owned fields (spec.nodeName, ownerReferences) without making them authored content."""
        def change(rec):
            if rec is None:
                return None, False
            body = rec["b"]
            if spec:
                body["spec"] = {**(body.get("spec") or {}), **spec}
            if metadata:
                body["metadata"] = {k: v for k, v in {**body["metadata"], **metadata}.items() if v is not None}
            return rec, True

        return self._rmw(self._okey(kind, self._nskey(kind, namespace), name), change)[0]

    def update_status(self, kind: str, namespace: str, name: str, status: Mapping) -> dict:
        """Replaces an object's status (not its spec or generation); raises NotFound when absent."""
        key = self._okey(kind, self._nskey(kind, namespace), name)

        def change(rec):
            if rec is None:
                raise NotFound(key)
            rec["b"]["status"] = dict(status)
            return rec, rec["b"]

        body, rev = self._rmw(key, change)
        body["metadata"]["resourceVersion"] = str(rev)
        return body

    def mark_deleted(self, kind: str, namespace: str, name: str, now: datetime | str | None = None) -> bool:
        """Sets deletionTimestamp (graceful deletion starts); False when absent or already marked."""
        ts = now_timestamp(now)

        def change(rec):
            if rec is None or rec["b"]["metadata"].get("deletionTimestamp"):
                return None, False
            rec["b"]["metadata"]["deletionTimestamp"] = ts
            return rec, True

        return self._rmw(self._okey(kind, self._nskey(kind, namespace), name), change)[0]

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Removes an object now (deletion finished); False when it was absent."""
        key = self._okey(kind, self._nskey(kind, namespace), name)
        for attempt in range(CAS_RETRIES):
            _rec, mod = self._read(key, fresh=attempt > 0)
            if not mod:
                return False
            if self._txn([self._cmp_mod(key, mod)], [self._delete(key)])[0]:
                return True
        raise Conflict(f"{key}: changed by another writer {CAS_RETRIES} times in a row")

    def purge(self, kinds: Iterable[str] | None = None) -> list[ObjectKey]:
        """Removes the objects marked for deletion (of the given kinds, or all); returns their keys."""
        kinds = set(kinds) if kinds is not None else None
        keys = []
        for key, (rec, mod) in self._rows().items():
            if rec["b"]["metadata"].get("deletionTimestamp") and (kinds is None or key.kind in kinds):
                k = self._okey(*key)
                if self._txn([self._cmp_mod(k, mod)], [self._delete(k)])[0]:
                    keys.append(key)
        return sorted(keys)

    # ---- events -----------------------------------------------------------------------------------------
    def record_event(self, involved: Mapping, reason: str, message: str, type: str = "Normal", *,
                     component: str = "gitkube", host: str = "", now: datetime | str | None = None) -> dict:
        """Records an event about an object; a repeat of (object, reason, message, type, source) bumps count and
        lastTimestamp (the aggregation key's index and the event change in one transaction)."""
        if type not in ("Normal", "Warning"):
            raise ValueError(f"event type must be Normal or Warning, not {type!r}")
        self._may_write()
        ref = _involved_ref(involved)
        ts = now_timestamp(now)
        agg = content_hash([ref["kind"], ref["namespace"], ref["name"], ref.get("uid") or "", reason, message, type,
                            component, host])
        idx = f"{self.prefix}ev/{agg}"
        ns = ref["namespace"] or EVENT_NAMESPACE_FOR_CLUSTER_SCOPED
        for attempt in range(CAS_RETRIES):
            name, idx_mod = self._read(idx, fresh=attempt > 0)
            if name is not None:
                ekey = self._okey("Event", ns, name)
                rec, mod = self._read(ekey, fresh=attempt > 0)
                if rec is not None:
                    ev = rec["b"]
                    ev["count"] += 1
                    ev["lastTimestamp"] = ts
                    ok, rev = self._txn([self._cmp_mod(idx, idx_mod), self._cmp_mod(ekey, mod)],
                                        [self._put(ekey, rec)])
                    if ok:
                        return self._body(rec, rev)
                    continue
            name = f"{ref['name']}.{os.urandom(8).hex()}"
            ekey = self._okey("Event", ns, name)
            ev = event_object(name, ns, str(uuid.uuid4()), ref, reason, message, type, 1, ts, ts, component, host)
            ok, rev = self._txn([self._cmp_mod(idx, idx_mod)],
                                [self._put(ekey, {"b": ev}), self._put(idx, name)])
            if ok:
                return self._body({"b": ev}, rev)
        raise Conflict(f"event {reason} on {ref['kind']}/{ref['name']}: kept changing")

    def events(self, involved: Mapping | tuple | None = None, namespace: str | None = None) -> list[dict]:
        """Lists events (Kubernetes Event JSON), oldest lastTimestamp first, for one object and/or namespace."""
        key = self.prefix + "o/Event/" + (f"{namespace}/" if namespace not in (None, "*") else "")
        ref = None
        if involved is not None:
            ref = _involved_ref(involved) if isinstance(involved, Mapping) else dict(
                zip(("kind", "namespace", "name"), involved), uid="")
        out = []
        for _k, rec, mod, cre in self._scan(key):
            ev = self._body(rec, mod)
            io = ev["involvedObject"]
            if ref is not None and not (io["kind"] == ref["kind"] and io.get("namespace", "") == ref["namespace"]
                                        and io["name"] == ref["name"]
                                        and (not ref.get("uid") or io.get("uid", "") in (ref["uid"], ""))):
                continue
            out.append((ev["lastTimestamp"], cre, ev))
        return [e for _t, _c, e in sorted(out, key=lambda x: (x[0], x[1]))]

    # ---- changes (what a watch reads) -------------------------------------------------------------------
    def _mirror(self) -> Mirror:
        with _GATEWAYS_LOCK:
            m = _MIRRORS.get((tuple(self.endpoints), self.prefix))
            if m is None:
                m = _MIRRORS[(tuple(self.endpoints), self.prefix)] = Mirror(self.gw, self.prefix)
            return m

    def resource_version(self) -> int:
        """The revision up to which this process's etcd watch has seen every change (a list's resourceVersion)."""
        return self._mirror().rv

    def state_version(self) -> int:
        """The etcd revision of the latest change to what a pass plans from (objects, events, the applied revision,
        the records but the heartbeats), as this process's watch has seen it; the leader key does not move it."""
        return self._mirror().state_rv

    def oldest_watchable(self) -> int:
        """Decides the oldest resourceVersion a watch can start from; older ones are gone (410)."""
        return self._mirror().oldest

    def changes_since(self, rv: int, kinds: Iterable[str] | None = None, limit: int = 1000) -> list[dict]:
        """Changes after resourceVersion `rv`, oldest first: {rv, type, kind, namespace, name, object}."""
        return self._mirror().since(rv, kinds, limit)

    # ---- key/value --------------------------------------------------------------------------------------
    def kv_get(self, key: str, default: Any = None) -> Any:
        """Returns a small JSON value kept under `key`; a later kv_set of it compares this read's revision."""
        value, mod = self._read(f"{self.prefix}kv/{key}")
        self._seen_kv[key] = mod
        return default if value is None else value

    def kv_set(self, key: str, value: Any) -> None:
        """Stores a small JSON value under `key`; when this store read it, only if nobody changed it since."""
        k = f"{self.prefix}kv/{key}"
        cmps = [self._cmp_mod(k, self._seen_kv[key])] if key in self._seen_kv else []
        ok, rev = self._txn(cmps, [self._put(k, value)])
        if not ok:
            self._seen_kv.pop(key, None)
            raise Conflict(f"kv {key}: changed by another writer since this process read it")
        self._seen_kv[key] = rev
