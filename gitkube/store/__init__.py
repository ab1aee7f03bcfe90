"""The state store: objects, events and revisions gitkube keeps between passes; one writer at a time. SQLite in the
state dir (the default, for one controller) or an etcd cluster (for two or more: one leader, standbys)."""
from gitkube.store.db import (
    CLUSTER_SCOPED,
    NotFound,
    ObjectKey,
    ReadOnlyStore,
    Store,
    StoreCorrupt,
    StoreLocked,
    StoreURLError,
    SyncResult,
    db_problem,
    integrity_report,
    content_hash,
    desired_content,
    now_timestamp,
    object_key,
)
from gitkube.store.schema import SCHEMA_VERSION, SchemaTooNew



def open_store(state_dir: str, writer: bool = False, url: str | None = None, *, elect: bool = True, ttl: int = 5):
    """Decides which store `--store` names and opens it: None or sqlite://DIR (default DIR: the state dir) is the
    SQLite store; etcd://HOST:PORT[,HOST:PORT...][/PREFIX] the etcd store, whose writer takes the leadership when
    it `elect`s (a standby serve does not)."""
    if url is None or url.startswith("sqlite://"):
        path = url[len("sqlite://"):] if url else ""
        return Store.open(path or state_dir, writer=writer)
    if url.startswith("etcd://"):
        from gitkube.store.etcd import EtcdStore

        return EtcdStore.open(url, state_dir, writer=writer, elect=elect, ttl=ttl)
    raise StoreURLError(f"--store {url!r}: want sqlite://DIR or etcd://HOST:PORT[,HOST:PORT...]")


__all__ = [
    "CLUSTER_SCOPED", "NotFound", "ObjectKey", "ReadOnlyStore", "SCHEMA_VERSION", "SchemaTooNew", "Store",
    "StoreCorrupt", "StoreLocked", "StoreURLError", "SyncResult", "content_hash", "db_problem", "desired_content",
    "integrity_report", "now_timestamp", "object_key", "open_store",
]
