"""The state DB's schema and its migrations: which steps bring a database file up to the current version."""
from __future__ import annotations

import sqlite3

# Each step runs once, in order, inside one transaction; PRAGMA user_version counts the steps applied.
# Append new steps; never edit a step that has shipped.
MIGRATIONS: list[str] = [
    # 1: objects, events, revisions, kv
    """
    CREATE TABLE objects (
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,            -- '' for cluster-scoped kinds (Node, Namespace)
        name TEXT NOT NULL,
        uid TEXT NOT NULL UNIQUE,
        generation INTEGER NOT NULL,
        resource_version INTEGER NOT NULL,
        creation_timestamp TEXT NOT NULL,
        deletion_timestamp TEXT,
        labels TEXT NOT NULL,               -- JSON object
        body TEXT NOT NULL,                 -- the full Kubernetes object (metadata, spec, status) as JSON
        origin TEXT NOT NULL CHECK (origin IN ('git', 'controller')),
        spec_hash TEXT NOT NULL,            -- hash of spec: generation rises when it changes
        desired_hash TEXT NOT NULL,         -- hash of everything but store-owned fields: skip unchanged writes
        PRIMARY KEY (kind, namespace, name)
    ) WITHOUT ROWID;
    CREATE INDEX objects_origin ON objects (origin, kind);

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        namespace TEXT NOT NULL,
        uid TEXT NOT NULL UNIQUE,
        involved_kind TEXT NOT NULL,
        involved_namespace TEXT NOT NULL,
        involved_name TEXT NOT NULL,
        involved_uid TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('Normal', 'Warning')),
        count INTEGER NOT NULL,
        first_timestamp TEXT NOT NULL,
        last_timestamp TEXT NOT NULL,
        source_component TEXT NOT NULL,
        source_host TEXT NOT NULL
    );
    -- Kubernetes' aggregation key: a repeat bumps count/lastTimestamp instead of adding a row.
    CREATE UNIQUE INDEX events_key ON events (involved_kind, involved_namespace, involved_name,
        involved_uid, reason, message, type, source_component, source_host);
    CREATE INDEX events_involved ON events (involved_kind, involved_namespace, involved_name);

    CREATE TABLE revisions (
        id INTEGER PRIMARY KEY,
        sha TEXT NOT NULL,
        time TEXT NOT NULL,
        result TEXT NOT NULL CHECK (result IN ('applied', 'refused')),
        message TEXT NOT NULL
    );

    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer gitkube than this one."""


def migrate(conn: sqlite3.Connection) -> int:
    """Decides which migration steps a database still needs and applies them; returns the version reached."""
    conn.execute("BEGIN IMMEDIATE")  # serialises concurrent migrators; re-read the version under the lock
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"state DB schema version {version} is newer than this gitkube's ({SCHEMA_VERSION})"
            )
        for step in range(version, SCHEMA_VERSION):
            for stmt in _statements(MIGRATIONS[step]):
                conn.execute(stmt)
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; split on ';' instead (no ';' inside our DDL strings).
    out = []
    for chunk in script.split(";"):
        lines = [ln for ln in chunk.splitlines() if ln.strip() and not ln.strip().startswith("--")]
        if lines:
            out.append("\n".join(lines))
    return out
