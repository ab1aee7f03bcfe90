"""Event counters for Prometheus, counted where the event happens (a pass, a Docker call, a probe, a proxy reload).

Only counters and histograms live here (prometheus_client's default registry, process-wide); gauges — pods by phase,
node readiness, endpoints, usage — are computed from the state DB when /metrics is scraped
(gitkube.server.metrics). Names follow Prometheus' conventions: `gitkube_` prefix, base units, `_total` counters.
Every hook is one call that never raises into its caller."""
from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

RECONCILE_PASSES = Counter("gitkube_reconcile_passes", "Reconcile passes run by this process.")
RECONCILE_QUIET = Counter("gitkube_reconcile_quiet_passes", "Reconcile passes that had nothing to plan (nothing "
                          "moved since a pass that changed nothing).")
RECONCILE_DURATION = Histogram("gitkube_reconcile_pass_duration_seconds", "Wall time of one reconcile pass.",
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
RECONCILE_ERRORS = Counter("gitkube_reconcile_errors", "Reconcile pass errors by kind: revision_refused, "
                           "node_sync (a node that could not be synced), services (its data plane), pass (the pass "
                           "raised).", ["kind"])
REVISIONS_REFUSED = Counter("gitkube_revisions_refused", "Revisions refused (invalid manifests or inventory); the "
                            "last good revision stays applied.")
DOCKER_CALLS = Counter("gitkube_docker_api_calls", "Docker Engine API requests made to each node.", ["node"])
PROBE_RESULTS = Counter("gitkube_prober_probe", "Container probe results, as the kubelet's prober_probe_total.",
                        ["probe_type", "result", "namespace", "pod", "container"])
PROXY_RELOADS = Counter("gitkube_proxy_reloads", "Proxy (HAProxy) configuration changes on a node by outcome: "
                        "created, confirmed (the first reload took), retried (signalled again), restarted, failed.",
                        ["node", "result"])
USAGE_SAMPLES = Counter("gitkube_usage_samples", "Resource usage samples taken per node, by result.",
                        ["node", "result"])
USAGE_SAMPLE_DURATION = Histogram("gitkube_usage_sample_duration_seconds", "Wall time of one usage sample of all "
                                  "nodes.", buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

_PROXY_WORDS = {"created": "created", "started": "restarted", "reloaded": "confirmed", "reloaded twice": "retried",
                "restarted": "restarted"}


def _safe(fn):
    def wrapped(*a, **k):
        try:
            fn(*a, **k)
        except Exception:  # noqa: BLE001 - counting must never break what is counted
            log.debug("instrument %s failed", fn.__name__, exc_info=True)
    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


@_safe
def pass_done(report, seconds: float, raised: bool = False) -> None:
    """One reconcile pass ended (report: a PassReport, or None when it raised)."""
    RECONCILE_PASSES.inc()
    RECONCILE_DURATION.observe(seconds)
    if raised or report is None:
        RECONCILE_ERRORS.labels("pass").inc()
        return
    if getattr(report, "quiet", False):
        RECONCILE_QUIET.inc()
    if report.refused:
        RECONCILE_ERRORS.labels("revision_refused").inc()
    for why in (report.node_errors or {}).values():
        RECONCILE_ERRORS.labels("services" if str(why).startswith("services:") else "node_sync").inc()


@_safe
def revision_refused() -> None:
    REVISIONS_REFUSED.inc()


@_safe
def docker_call(node: str) -> None:
    DOCKER_CALLS.labels(node).inc()


@_safe
def probe_result(kind: str, ok: bool, namespace: str, pod: str, container: str) -> None:
    PROBE_RESULTS.labels(kind, "successful" if ok else "failed", namespace, pod, container).inc()


@_safe
def proxy_synced(node: str, changed) -> None:
    """What sync_services returned for a node (a dict of role → what happened), or the exception it raised."""
    if isinstance(changed, BaseException):
        PROXY_RELOADS.labels(node, "failed").inc()
        return
    how = (changed or {}).get("proxy")
    if how in _PROXY_WORDS:
        PROXY_RELOADS.labels(node, _PROXY_WORDS[how]).inc()


@_safe
def usage_sampled(node: str, ok: bool) -> None:
    USAGE_SAMPLES.labels(node, "ok" if ok else "failed").inc()
