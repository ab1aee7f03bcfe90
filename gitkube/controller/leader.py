"""serve's side of leader election on an etcd store: stand by (serving reads) while another serve holds the leader
key; take the key when its lease is gone; while leading, every store write is fenced by the lease in etcd and every
node action by this process's own clock of the lease; when the lease is lost, stop acting at once."""
from __future__ import annotations

import logging

from gitkube.store.etcd import Fenced, Leadership, StoreUnavailable, default_identity

log = logging.getLogger("gitkube.serve")


def _standby() -> None:
    raise Fenced("standby: another serve is the leader")


class LeaderGate:
    """`step()` before every pass: 'gained' when this serve just became the leader, 'lost' when it just stopped
    being it, else None; `leading` says which it is now."""

    def __init__(self, ctrl, ttl: int, info: dict | None = None):
        self.ctrl = ctrl
        store = ctrl.store
        self.lead = Leadership(store.gw, store.prefix, default_identity(), ttl=ttl, info={"role": "serve", **(info or {})})
        self.leading = False
        self.poll = min(0.5, ttl / 6)  # how often a standby looks at the leader key
        self._said_holder: str | None = None
        store.guard = None
        ctrl.may_act = _standby

    def step(self) -> str | None:
        if self.leading:
            if self.lead.valid():
                return None
            self.step_down(self.lead.lost_reason or "lease not renewed in time")
            return "lost"
        try:
            holder = self.lead.holder()
            if holder is None and self.lead.try_acquire():
                self.leading = True
                self.ctrl.store.guard = self.lead
                self.ctrl.may_act = self.lead.check
                log.info("leader now: %s holds the lease (TTL %ss)", self.lead.identity, self.lead.ttl)
                return "gained"
        except StoreUnavailable as e:
            log.warning("standby: %s", e)
            return None
        who = (holder or {}).get("holderIdentity")
        if who and who != self._said_holder:
            log.info("standby: the leader is %s (since %s)", who, (holder or {}).get("acquireTime"))
            self._said_holder = who
        return None

    def fenced(self, e: BaseException) -> bool:
        """Whether a pass ended because this serve may no longer act (then it stands by)."""
        if isinstance(e, Fenced):
            self.step_down(str(e))
            return True
        return False

    def step_down(self, why: str) -> None:
        """Stops acting now: no more writes (the store has no guard) and no node actions."""
        if not self.leading:
            return
        self.leading = False
        self.ctrl.store.guard = None
        self.ctrl.may_act = _standby
        if self.ctrl.probes is not None:
            self.ctrl.probes.close()
            self.ctrl.probes = None
        self.lead.resign()  # our lease, if it still lives: a standby need not wait for it
        self._said_holder = None
        log.warning("standby now: %s", why)

    def close(self) -> None:
        """On a clean stop the leader gives the lease back so that a standby takes over at once."""
        if self.leading:
            self.leading = False
            self.ctrl.store.guard = None
            self.lead.resign()
