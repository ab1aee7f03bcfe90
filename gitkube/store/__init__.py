"""The state DB (SQLite): objects, events and revisions gitkube keeps between passes; one writer at a time."""
from gitkube.store.db import (
    CLUSTER_SCOPED,
    NotFound,
    ObjectKey,
    ReadOnlyStore,
    Store,
    StoreLocked,
    SyncResult,
    content_hash,
    desired_content,
    now_timestamp,
    object_key,
)
from gitkube.store.schema import SCHEMA_VERSION, SchemaTooNew

__all__ = [
    "CLUSTER_SCOPED", "NotFound", "ObjectKey", "ReadOnlyStore", "SCHEMA_VERSION", "SchemaTooNew", "Store",
    "StoreLocked", "SyncResult", "content_hash", "desired_content", "now_timestamp", "object_key",
]
