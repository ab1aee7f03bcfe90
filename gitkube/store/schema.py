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
    # 2: the change log a watch reads (ADDED/MODIFIED/DELETED by resourceVersion), and events get a resourceVersion.
    # Triggers write it, so every writer of objects/events feeds it without a code path of its own. A deleted row
    # takes the next resourceVersion (deletion is a change a watcher must see after what it listed).
    """
    CREATE TABLE changes (
        rv INTEGER NOT NULL,
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('ADDED', 'MODIFIED', 'DELETED')),
        body TEXT,                          -- the object as of rv; NULL for events (read from the events table)
        PRIMARY KEY (rv, kind, namespace, name)
    ) WITHOUT ROWID;
    CREATE INDEX changes_kind ON changes (kind, rv);
    ALTER TABLE events ADD COLUMN resource_version INTEGER NOT NULL DEFAULT 0;
    INSERT INTO kv (key, value) SELECT 'changesFrom', COALESCE((SELECT value FROM kv WHERE key = 'resourceVersion'), '0');

    CREATE TRIGGER objects_added AFTER INSERT ON objects BEGIN
        INSERT INTO changes (rv, kind, namespace, name, type, body)
        VALUES (NEW.resource_version, NEW.kind, NEW.namespace, NEW.name, 'ADDED', NEW.body)
        ON CONFLICT (rv, kind, namespace, name) DO UPDATE SET body = excluded.body;
        DELETE FROM changes WHERE rv <= NEW.resource_version - 10000;
    END;
    CREATE TRIGGER objects_modified AFTER UPDATE OF body ON objects BEGIN
        INSERT INTO changes (rv, kind, namespace, name, type, body)
        VALUES (NEW.resource_version, NEW.kind, NEW.namespace, NEW.name, 'MODIFIED', NEW.body)
        ON CONFLICT (rv, kind, namespace, name) DO UPDATE SET body = excluded.body;
        DELETE FROM changes WHERE rv <= NEW.resource_version - 10000;
    END;
    CREATE TRIGGER objects_deleted AFTER DELETE ON objects BEGIN
        UPDATE kv SET value = CAST(value AS INTEGER) + 1 WHERE key = 'resourceVersion';
        INSERT INTO changes (rv, kind, namespace, name, type, body)
        SELECT CAST(value AS INTEGER), OLD.kind, OLD.namespace, OLD.name, 'DELETED',
               json_set(OLD.body, '$.metadata.resourceVersion', value)
        FROM kv WHERE key = 'resourceVersion';
    END;
    CREATE TRIGGER events_recorded AFTER INSERT ON events BEGIN
        INSERT INTO kv (key, value) VALUES ('resourceVersion', '1')
        ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
        UPDATE events SET resource_version = (SELECT CAST(value AS INTEGER) FROM kv WHERE key = 'resourceVersion')
        WHERE id = NEW.id;
        INSERT INTO changes (rv, kind, namespace, name, type, body)
        SELECT CAST(value AS INTEGER), 'Event', NEW.namespace, NEW.name, 'ADDED', NULL
        FROM kv WHERE key = 'resourceVersion';
    END;
    CREATE TRIGGER events_repeated AFTER UPDATE OF count ON events BEGIN
        UPDATE kv SET value = CAST(value AS INTEGER) + 1 WHERE key = 'resourceVersion';
        UPDATE events SET resource_version = (SELECT CAST(value AS INTEGER) FROM kv WHERE key = 'resourceVersion')
        WHERE id = NEW.id;
        INSERT INTO changes (rv, kind, namespace, name, type, body)
        SELECT CAST(value AS INTEGER), 'Event', NEW.namespace, NEW.name, 'MODIFIED', NULL
        FROM kv WHERE key = 'resourceVersion';
    END;
    """,
    # 3: what `diff` compares first (each Git object's authored-content hash) read from an index, not the bodies
    """
    CREATE INDEX objects_git_digest ON objects (origin, deletion_timestamp, kind, namespace, name, desired_hash);
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
    # executescript() would COMMIT our transaction; cut the script into whole statements instead (a trigger's
    # body holds several `;`, which sqlite3.complete_statement understands).
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if not buf and (not line.strip() or line.strip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out
