"""Usage sampling wired to the controller: every interval (APScheduler, in `serve`), read every node's containers
over the controller's fleet (gitkube.nodes.kubelet.stats), compute the snapshot (gitkube.reconcile.usage, pure) and
keep it in the state DB (kv `usage`), where `gitkube top`, the metrics.k8s.io API and /metrics read it."""
from __future__ import annotations

import logging
import threading
import time

from gitkube import instruments
from gitkube.api.quantity import cpu_millis, memory_bytes
from gitkube.api.views import NodeView
from gitkube.nodes.kubelet.stats import DEFAULT_CONCURRENCY, sample_node
from gitkube.reconcile.usage import ContainerReading, snapshot
from gitkube.store import open_store

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 15.0
KV_KEY = "usage"


def node_capacity(nodes: list[dict]) -> dict[str, tuple[int, int]]:
    """node → (CPU millicores, memory bytes) of its allocatable (else capacity) status."""
    out = {}
    for n in nodes:
        st = NodeView(n).status
        cap = st.get("allocatable") or st.get("capacity") or {}
        try:
            out[n["metadata"]["name"]] = (cpu_millis(str(cap.get("cpu", "0"))), memory_bytes(str(cap.get("memory", "0"))))
        except Exception:  # noqa: BLE001 - a node without a usable capacity has no percentages
            out[n["metadata"]["name"]] = (0, 0)
    return out


class UsageSampler:
    """Samples the controller's fleet; `sample()` is the scheduled job (one at a time)."""

    def __init__(self, ctrl, interval: float = DEFAULT_INTERVAL, concurrency: int = DEFAULT_CONCURRENCY):
        self.ctrl = ctrl
        self.interval = interval
        self.concurrency = concurrency
        self.previous: dict[str, ContainerReading] = {}
        self.last: dict | None = None
        self.last_calls = 0
        self.last_seconds = 0.0
        self._busy = threading.Lock()

    def sample(self) -> dict | None:
        """One sample of every node of the fleet; the snapshot is stored and returned (None: no fleet yet)."""
        fleet = self.ctrl.fleet
        try:
            self.ctrl.may_act()  # with an etcd store only the leader samples (and writes the snapshot)
        except Exception:  # noqa: BLE001 - a standby: nothing to do
            return None
        if fleet is None or not self._busy.acquire(blocking=False):
            return None
        try:
            t0 = time.monotonic()
            results = fleet.map(lambda h: sample_node(h, self.concurrency), timeout=max(10.0, 2 * self.interval))
            readings, answered, calls = [], [], 0
            for node, res in sorted(results.items()):
                ok = not isinstance(res, BaseException)
                instruments.usage_sampled(node, ok)
                if not ok:
                    log.debug("usage sample of node %s failed: %s", node, res)
                    continue
                answered.append(node)
                readings += res.readings
                calls += res.calls
            with open_store(self.ctrl.store.state_dir, writer=False, url=getattr(self.ctrl.store, "url", None)) as st:
                capacity = node_capacity(st.list("Node"))
            snap = snapshot(self.previous, readings, capacity, answered, time.time())
            self.previous = {r.id: r for r in readings}
            self.last_calls, self.last_seconds = calls, time.monotonic() - t0
            snap["sample"] = {"intervalSeconds": self.interval, "dockerCalls": calls,
                              "seconds": round(self.last_seconds, 3)}
            with self.ctrl.lock:
                self.ctrl.store.kv_set(KV_KEY, snap)
            instruments.USAGE_SAMPLE_DURATION.observe(self.last_seconds)
            self.last = snap
            return snap
        finally:
            self._busy.release()


def stored_usage(store) -> dict | None:
    """The latest usage snapshot in the state DB (None: `serve` has not sampled yet)."""
    return store.kv_get(KV_KEY)
