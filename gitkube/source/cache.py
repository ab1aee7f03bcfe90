"""The manifest cache: what a Git blob (and a whole Git tree) of manifests defines, kept in the state directory
keyed by the object id and gitkube's schema version, so a revision re-reads only the files that changed.

A blob's id fixes its bytes, and the bytes (with the loader's code and limits) fix its parsed, validated objects,
so the cache can never be stale, only absent or damaged. Every entry carries a checksum; an entry that does not
read back whole is dropped and its file parsed again. Only files without problems and without secrets are
stored: encrypted files (`*.age`) and files defining a Secret are always parsed from the repository.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from typing import Any

import pydantic

from gitkube.source.loader import Entry

CACHE_FILE = "manifest-cache.sqlite"
# Beyond this many rows the cache is emptied and refilled: a bound for a state dir that sees many revisions.
MAX_ROWS = 200_000
_FINGERPRINT: str | None = None


def schema_version() -> str:
    """gitkube's schema version as far as parsing goes: a hash of the code that decides what a file defines
    (the api models and validation, the loader, this cache) and of pydantic's version."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import gitkube.api as api
        import gitkube.source.loader as loader

        h = hashlib.blake2b(digest_size=8)
        h.update(pydantic.VERSION.encode())
        api_dir = os.path.dirname(api.__file__)
        paths = sorted(os.path.join(api_dir, n) for n in os.listdir(api_dir) if n.endswith(".py"))
        for path in paths + [loader.__file__, __file__]:
            with open(path, "rb") as f:
                h.update(f.read())
        _FINGERPRINT = h.hexdigest()
    return _FINGERPRINT


def cacheable_path(path: str) -> bool:
    """Decides whether a file's objects may be kept: plain manifests only, never encrypted ones."""
    return path.endswith((".yaml", ".yml", ".json"))


def _seal(value: Any) -> bytes:
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest().encode() + b"\n" + data


def _open_seal(raw: Any) -> Any:
    """The value of a sealed entry; raises ValueError when it does not read back whole."""
    if not isinstance(raw, bytes) or raw[32:33] != b"\n":
        raise ValueError("not a sealed entry")
    data = raw[33:]
    if hashlib.blake2b(data, digest_size=16).hexdigest().encode() != raw[:32]:
        raise ValueError("checksum mismatch")
    return json.loads(data)


def _meta(e: Entry) -> list:
    return [e.kind, e.namespace, e.name, e.name_line, e.ns_line, e.hash()]


def _entry(m: Any) -> Entry:
    kind, ns, name, name_line, ns_line, digest = m
    if not (isinstance(kind, str) and isinstance(ns, str) and isinstance(name, str) and isinstance(digest, str)
            and (name_line is None or isinstance(name_line, int)) and (ns_line is None or isinstance(ns_line, int))):
        raise ValueError("malformed object entry")
    return Entry(kind, ns, name, name_line, ns_line, digest)


class ManifestCache:
    """The cache file of one state dir. Every failure to read or write it is a miss, never an error."""

    def __init__(self, state_dir: str, params: tuple = ()):
        self.path = os.path.join(state_dir, CACHE_FILE)
        self.prefix = schema_version() + ":" + ":".join(map(str, params)) + ":"
        self.dropped = 0  # damaged entries removed (for tests and benches)
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._connect()
        except sqlite3.Error:
            # Not a database (damaged file): start again from an empty one.
            self._reset_file()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=2, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, meta BLOB NOT NULL, docs BLOB NOT NULL)"
                     " WITHOUT ROWID")
        conn.execute("CREATE TABLE IF NOT EXISTS trees (key TEXT PRIMARY KEY, files BLOB NOT NULL) WITHOUT ROWID")
        return conn

    def _reset_file(self) -> None:
        self.dropped += 1
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(self.path + suffix)
            except OSError:
                pass
        try:
            self._conn = self._connect()
        except sqlite3.Error:
            self._conn = None

    def close(self) -> None:
        """Closes the cache file."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _blob_key(self, blob_id: str, path: str) -> str:
        # JSON and YAML files with the same bytes parse differently.
        return f"{self.prefix}{blob_id}:{'json' if path.endswith('.json') else 'yaml'}"

    def _drop(self, table: str, key: str) -> None:
        self.dropped += 1
        try:
            self._conn.execute(f"DELETE FROM {table} WHERE key = ?", (key,))  # type: ignore[union-attr]
        except sqlite3.Error:
            pass

    # ---- reading ------------------------------------------------------------------------------
    def tree(self, tree_id: str) -> list[tuple[str, str, list[Entry]]] | None:
        """The files under a tree (path relative to it, blob id, objects) in path order, or None when the tree or
        one of its subtrees is not cached."""
        key = self.prefix + tree_id
        try:
            row = self._conn.execute("SELECT files FROM trees WHERE key = ?", (key,)).fetchone() if self._conn else None
        except sqlite3.Error:
            return None
        if row is None:
            return None
        try:
            files, subtrees = _open_seal(row[0])
            out = [(rel, blob, [_entry(m) for m in metas]) for rel, blob, metas in files]
            names = [name for name, _ in subtrees]
        except (ValueError, TypeError):
            self._drop("trees", key)
            return None
        for name, sub_id in subtrees:
            below = self.tree(sub_id)
            if below is None:
                return None
            out.extend((f"{name}/{rel}", blob, entries) for rel, blob, entries in below)
        if names:
            out.sort(key=lambda f: f[0])
        return out

    def blobs(self, wanted: list[tuple[str, str]]) -> dict[str, list[Entry]]:
        """The objects each cached blob defines (identity, lines, hash; content on demand), by blob id, for
        (blob id, path) pairs; blobs not cached are left out."""
        keys = {self._blob_key(b, p): b for b, p in wanted if cacheable_path(p)}
        if not keys or self._conn is None:
            return {}
        out: dict[str, list[Entry]] = {}
        try:
            names = list(keys)
            rows = []
            for i in range(0, len(names), 500):
                chunk = names[i:i + 500]
                rows += self._conn.execute(f"SELECT key, meta FROM blobs WHERE key IN ({','.join('?' * len(chunk))})",
                                           chunk).fetchall()
        except sqlite3.Error:
            return {}
        for key, meta in rows:
            try:
                out[keys[key]] = [_entry(m) for m in _open_seal(meta)]
            except (ValueError, TypeError):
                self._drop("blobs", key)
        return out

    def fill_docs(self, files: list[tuple[str, str, list[Entry]]]) -> bool:
        """Gives cached objects their Kubernetes JSON (path, blob id, entries); False when some blob's JSON is
        missing or damaged (those entries are dropped and the caller parses the files again)."""
        ok = True
        for path, blob_id, entries in files:
            if all(e.doc is not None or e.model is not None for e in entries):
                continue
            key = self._blob_key(blob_id, path)
            try:
                row = self._conn.execute("SELECT docs FROM blobs WHERE key = ?", (key,)).fetchone() if self._conn else None
                docs = _open_seal(row[0]) if row is not None else None
                if not isinstance(docs, list) or len(docs) != len(entries) or not all(isinstance(d, dict) for d in docs):
                    raise ValueError("missing or malformed documents")
            except sqlite3.Error:
                return False
            except (ValueError, TypeError):
                self._drop("blobs", key)
                ok = False
                continue
            for e, d in zip(entries, docs):
                e.doc = d
        return ok

    # ---- writing ------------------------------------------------------------------------------
    def put_blobs(self, blobs: list[tuple[str, str, list[Entry]]]) -> None:
        """Keeps what problem-free, secret-free blobs define: (blob id, path, entries made with their Kubernetes JSON)."""
        self._write("INSERT OR REPLACE INTO blobs (key, meta, docs) VALUES (?, ?, ?)",
                    [(self._blob_key(blob_id, path), _seal([_meta(e) for e in entries]),
                      _seal([e.k8s() for e in entries])) for blob_id, path, entries in blobs])

    def put_trees(self, trees: list[tuple[str, list[tuple[str, str, list[Entry]]], list[tuple[str, str]]]]) -> None:
        """Keeps, per tree id, its own files (name, blob id, objects) and its subtrees (name, tree id)."""
        self._write("INSERT OR REPLACE INTO trees (key, files) VALUES (?, ?)",
                    [(self.prefix + tree_id, _seal([[[rel, blob, [_meta(e) for e in es]] for rel, blob, es in files],
                                                    subtrees]))
                     for tree_id, files, subtrees in trees])

    def _write(self, sql: str, rows: list[tuple]) -> None:
        if self._conn is None or not rows:
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(sql, rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._bound()
        except sqlite3.Error:
            pass  # a busy or read-only cache is only a slower load next time

    def _bound(self) -> None:
        assert self._conn is not None
        (n,) = self._conn.execute("SELECT (SELECT count(*) FROM blobs) + (SELECT count(*) FROM trees)").fetchone()
        if n > MAX_ROWS:
            self._conn.execute("DELETE FROM blobs")
            self._conn.execute("DELETE FROM trees")


def open_cache(state_dir: str | None, params: tuple = ()) -> ManifestCache | None:
    """The cache of a state dir, or None when there is no state dir (a reader never creates one)."""
    if not state_dir or not os.path.isdir(state_dir):
        return None
    try:
        return ManifestCache(state_dir, params)
    except OSError:
        return None


__all__ = ["ManifestCache", "open_cache", "schema_version", "cacheable_path", "CACHE_FILE"]
