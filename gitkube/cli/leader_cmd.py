"""Who acts on the cluster: the store in use and, on etcd, the `serve` holding the leader lease (what `gitkube status`
prints after the sync and health lines)."""
from __future__ import annotations

from datetime import datetime, timezone


def leader_lines(store) -> list[str]:
    """Decides the lines naming the store and its leader (etcd) or its single writer (SQLite)."""
    if getattr(store, "backend", "sqlite") != "etcd":
        return [f"Store:    sqlite ({store.state_dir}); one controller at a time (the state dir's lock)"]
    lines = [f"Store:    etcd {','.join(store.endpoints)} (prefix {store.prefix})"]
    h = store.leader()
    if h is None:
        lines.append("Leader:   none (no serve holds the lease: passes stop until a standby takes it)")
        return lines
    age = ""
    try:
        since = datetime.strptime(h.get("acquireTime", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        age = f", for {int((datetime.now(timezone.utc) - since).total_seconds())}s"
    except ValueError:
        pass
    lines.append(f"Leader:   {h.get('holderIdentity', '?')} ({h.get('role', 'serve')}, lease "
                 f"{h.get('leaseDurationSeconds', '?')}s{age})")
    return lines

