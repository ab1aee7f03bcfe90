"""The fleet lock's rules: a small record on each node saying which installation manages it, who holds it and
why (like Kamal's deploy lock). Pure decisions; gitkube.nodes.fleetlock reads and writes the records over SFTP.

- A controller (apply, serve) holds the lock while it runs and releases it when it stops, as Kamal holds its
  lock for a deploy; `gitkube lock acquire --reason` holds it until `gitkube lock release`.
- No record, or our own cluster's: we may go on (our record's time is refreshed, its reason and TTL kept).
- Another cluster's record: refused, naming the holder, the cluster, since when and why — even when it has
  expired (its holder stopped refreshing it), unless the caller explicitly breaks expired locks. One exception:
  a controller's record whose process is provably gone (same host, its pid no longer runs: a kill -9) is stale
  and taken over, saying so.
- A record that cannot be read as one is treated as another holder's: refused, never overwritten silently.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

DEFAULT_TTL = 900.0  # a lock not refreshed for this long (no apply or serve pass of its holder) has expired


@dataclass(frozen=True)
class LockRecord:
    """One node's lock record."""

    cluster_id: str
    holder: str  # user@host:state-dir (pid N)
    time: float  # when the holder last wrote it (seconds since the epoch)
    reason: str
    ttl: float = DEFAULT_TTL
    host: str = ""  # where the holding controller runs
    pid: int | None = None  # the holding controller's process; None for a hold taken by `gitkube lock acquire`

    def expired(self, now: float) -> bool:
        return now > self.time + self.ttl

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> LockRecord | None:
        """The record in `data`, or None if it is not one."""
        try:
            d = json.loads(data)
            pid = d.get("pid")
            return cls(str(d["cluster_id"]), str(d["holder"]), float(d["time"]), str(d.get("reason", "")),
                       float(d.get("ttl", DEFAULT_TTL)), str(d.get("host", "")), int(pid) if pid is not None else None)
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self, now: float) -> str:
        """One line: who holds it, for which cluster, since when and why, and whether it has expired."""
        at = datetime.fromtimestamp(self.time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        state = (f"expired {now - self.time - self.ttl:.0f}s ago" if self.expired(now)
                 else f"expires in {self.time + self.ttl - now:.0f}s")
        return f"held by {self.holder} (cluster {self.cluster_id}) since {at}, {state}: {self.reason or 'no reason given'}"


@dataclass(frozen=True)
class LockDecision:
    """What to do on one node: write `record` (None: leave the node's record alone), or refuse saying why."""

    record: LockRecord | None = None
    refused: str | None = None
    broke: LockRecord | None = None  # the expired record of another cluster this replaces


def decide_lock(node: str, current: LockRecord | None, unreadable: bool, cluster_id: str, holder: str,
                reason: str, now: float, ttl: float | None = None, break_expired: bool = False,
                set_reason: bool = False, host: str = "", pid: int | None = None,
                holder_gone: bool = False) -> LockDecision:
    """Decides whether this installation may hold node `node`'s lock, and the record to write.
    `set_reason`/`ttl` replace our own record's reason/TTL (`gitkube lock acquire`, pid None); a controller's
    pass (its host and pid given) only refreshes. `holder_gone`: the current record's process no longer runs."""
    if unreadable:
        return LockDecision(refused=f"node {node}: its fleet lock record cannot be read; look at it, remove it by "
                                    "hand if it is stale")
    if current is not None and current.cluster_id != cluster_id:
        stale = holder_gone and current.pid is not None
        if not (break_expired and current.expired(now)) and not stale:
            hint = ("; it has expired: break it with `gitkube lock acquire --break-expired --reason TEXT`"
                    if current.expired(now) else "")
            return LockDecision(refused=f"node {node} is locked by another gitkube installation: "
                                        f"{current.describe(now)}{hint}")
        return LockDecision(record=LockRecord(cluster_id, holder, now, reason, ttl or DEFAULT_TTL, host, pid),
                            broke=current)
    if current is None:
        return LockDecision(record=LockRecord(cluster_id, holder, now, reason, ttl or DEFAULT_TTL, host, pid))
    if set_reason:
        return LockDecision(record=LockRecord(cluster_id, holder, now, reason,
                                              ttl if ttl is not None else current.ttl, host, pid))
    if current.pid is not None and current.pid != pid and (holder_gone or current.host != host):
        # Another controller of this installation held it (gone now, or elsewhere): this one holds it now.
        return LockDecision(record=LockRecord(cluster_id, holder, now, reason, current.ttl, host, pid))
    return LockDecision(record=LockRecord(cluster_id, current.holder, now, current.reason, current.ttl,
                                          current.host, current.pid))
