"""The dashboard (the Kube UI role): server-rendered HTML (Jinja2) at / of the API listener, read-only.

/                                    overview: revision and sync, health, nodes with usage and their pods, RCs and
                                     Deployments, Services with endpoints, the latest events (warnings first)
/ui/namespaces/NS/pods/NAME          one pod: containers' states, conditions, events, the last log lines
Each page polls itself (?fragment=1, every POLL_MS) and swaps its live part in place: no reload, no script or style
fetched from anywhere but this page."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone

import jinja2
from aiohttp import web

from gitkube.api import printers as pr
from gitkube.api.views import ObjectView
from gitkube.reconcile.usage import cpu_text, memory_text
from gitkube.server.context import CTX, NODE_LINKS

log = logging.getLogger(__name__)

POLL_MS = 2000
EVENTS_SHOWN = 25
LOG_LINES = 20

routes = web.RouteTableDef()
_env = jinja2.Environment(loader=jinja2.PackageLoader("gitkube.server", "templates"),
                          autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def _ready(obj: Mapping) -> tuple[str, str]:
    c = ObjectView(obj).condition("Ready")
    return c.get("status", "Unknown"), f"{c.get('reason', '')}: {c.get('message', '')}".strip(": ")


def revision_view(store) -> dict:
    """The applied revision, and the newest one when it was refused (with its file:line problems)."""
    applied = store.applied_revision()
    revs = store.revisions(limit=1)
    out = {"applied": applied, "refused": None, "problems": [], "sync": "Synced" if applied else "Unknown"}
    if revs and revs[0]["result"] == "refused":
        lines = (revs[0].get("message") or "").splitlines()
        out.update(refused=revs[0]["sha"], problems=lines[1:], sync="OutOfSync", refused_at=revs[0]["time"])
    return out


def health_view(store, pods, nodes, rcs) -> dict:
    """Healthy / Progressing / Degraded with reasons: `gitkube status`'s own function, on the same stored objects."""
    from gitkube.reconcile.health import health

    h = health(pods, nodes, rcs, store.kv_get("heartbeats", {}) or {})
    return {"status": h.status, "reasons": list(h.reasons)[:20]}


def _pod_row(p: Mapping, usage: Mapping) -> dict:
    m, st = p["metadata"], p.get("status") or {}
    ns = m.get("namespace") or "default"
    u = usage.get(f"{ns}/{m['name']}") or {}
    return {"namespace": ns, "name": m["name"], "node": (p.get("spec") or {}).get("nodeName") or "",
            "status": pr.pod_status_reason(p), "ready": pr.ready_column(p), "restarts": pr.pod_restarts(p),
            "ip": st.get("podIP") or "", "age": pr.format_age(m.get("creationTimestamp")),
            "cpu": cpu_text(u["cpu"]) if u.get("complete") else "", "memory": memory_text(u["memory"]) if u else ""}


def _event_row(e: Mapping) -> dict:
    return {"type": e.get("type", "Normal"), "reason": e.get("reason", ""), "object": pr.involved_text(e),
            "message": e.get("message", ""), "age": pr.format_age(e.get("lastTimestamp") or e.get("eventTime")),
            "count": e.get("count") or 1, "time": e.get("lastTimestamp") or ""}


def latest_events(events: list[dict], n: int = EVENTS_SHOWN) -> list[dict]:
    """The latest `n` events, warnings first, newest first within each type."""
    recent = sorted(events, key=lambda e: e.get("lastTimestamp") or "", reverse=True)[:n]
    return [_event_row(e) for e in sorted(recent, key=lambda e: e.get("type") != "Warning")]


def overview(store) -> dict:
    """Everything the overview shows, from one read of the state DB (runs on a reader thread)."""
    from gitkube.controller.usage import stored_usage

    snap = stored_usage(store) or {}
    pods = store.list("Pod", namespace="*")
    nodes = store.list("Node")
    rcs = store.list("ReplicationController", namespace="*")
    deps = store.list("Deployment", namespace="*")
    eps = {(e["metadata"].get("namespace") or "default", e["metadata"]["name"]): e
           for e in store.list("Endpoints", namespace="*")}
    usage = snap.get("pods") or {}
    rows = [_pod_row(p, usage) for p in pods]
    node_rows = []
    for n in nodes:
        name = n["metadata"]["name"]
        status, why = _ready(n)
        u = (snap.get("nodes") or {}).get(name) or {}
        node_rows.append({"name": name, "status": pr._node_status(n), "ready": status == "True", "why": why,
                          "ip": pr._node_address(n, "InternalIP"),
                          "cpu": f"{cpu_text(u['cpu'])} ({u.get('cpuPercent')}%)" if u else "",
                          "memory": f"{memory_text(u['memory'])} ({u.get('memoryPercent')}%)" if u else "",
                          "pods": [r for r in rows if r["node"] == name]})
    svcs = []
    for s in store.list("Service", namespace="*"):
        key = (s["metadata"].get("namespace") or "default", s["metadata"]["name"])
        spec = s.get("spec") or {}
        svcs.append({"namespace": key[0], "name": key[1], "type": spec.get("type", "ClusterIP"),
                     "clusterIP": spec.get("clusterIP") or "", "ports": pr._svc_ports(s),
                     "endpoints": pr._endpoints_text(eps.get(key, {}), limit=6)})
    return {
        "revision": revision_view(store), "health": health_view(store, pods, nodes, rcs), "nodes": node_rows,
        "unscheduled": [r for r in rows if not r["node"]],
        "rcs": [{"namespace": r["metadata"].get("namespace") or "default", "name": r["metadata"]["name"],
                 "desired": (r.get("spec") or {}).get("replicas", 1),
                 "current": (r.get("status") or {}).get("replicas") or 0,
                 "ready": (r.get("status") or {}).get("readyReplicas") or 0} for r in rcs],
        "deployments": [{"namespace": d["metadata"].get("namespace") or "default", "name": d["metadata"]["name"],
                         "desired": (d.get("spec") or {}).get("replicas", 1),
                         "updated": (d.get("status") or {}).get("updatedReplicas") or 0,
                         "ready": (d.get("status") or {}).get("readyReplicas") or 0,
                         "available": (d.get("status") or {}).get("availableReplicas") or 0} for d in deps],
        "services": svcs, "events": latest_events(store.events()),
        "usage_time": snap.get("timestamp"), "pod_count": len(pods),
    }


def _state_text(state: Mapping | None) -> str:
    if not state:
        return ""
    (word, d), = list(state.items())[:1] or [("", {})]
    d = d or {}
    if word == "running":
        return f"Running since {d.get('startedAt', '')}"
    if word == "waiting":
        return f"Waiting: {d.get('reason', '')} {d.get('message', '')}".strip()
    if word == "terminated":
        return (f"Terminated: {d.get('reason', '')} (exit code {d.get('exitCode', '')}) "
                f"{d.get('startedAt', '')} – {d.get('finishedAt', '')}").strip()
    return word


def pod_view(store, namespace: str, name: str) -> dict | None:
    """One pod's page: its containers' states, conditions and events (logs are read from the node apart)."""
    p = store.get("Pod", namespace, name)
    if p is None:
        return None
    st = p.get("status") or {}
    statuses = {c["name"]: c for c in st.get("containerStatuses") or []}
    containers = []
    for c in (p.get("spec") or {}).get("containers") or []:
        cs = statuses.get(c["name"], {})
        containers.append({"name": c["name"], "image": c.get("image", ""), "ready": bool(cs.get("ready")),
                           "restarts": cs.get("restartCount") or 0, "state": _state_text(cs.get("state")),
                           "last": _state_text(cs.get("lastState"))})
    events = store.events(involved=("Pod", namespace, name))
    return {"pod": _pod_row(p, {}), "uid": p["metadata"].get("uid"), "containers": containers,
            "conditions": [{"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason", ""),
                            "message": c.get("message", "")} for c in st.get("conditions") or []],
            "events": [_event_row(e) for e in reversed(events)][:EVENTS_SHOWN]}


def last_log_lines(links, node: str, uid: str, containers: list[str], n: int = LOG_LINES) -> dict[str, str]:
    """The last n log lines of each container, read from the pod's node (errors are shown, not raised)."""
    from gitkube.nodes.kubelet.podio import container_for

    out = {}
    try:
        h = links.handle(node)
    except Exception as e:  # noqa: BLE001 - the page shows it
        return {c: f"(cannot reach node {node}: {e})" for c in containers}
    if h is None:
        return {c: f"(node {node} is not in the inventory)" for c in containers}
    for c in containers:
        try:
            cid = container_for(h, uid, c)
            out[c] = "(no container yet)" if cid is None else h.docker.logs(
                cid, stdout=True, stderr=True, tail=n).decode(errors="replace")
        except Exception as e:  # noqa: BLE001
            out[c] = f"(cannot read logs: {e})"
    return out


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _html(page: str, fragment: bool, **data) -> web.Response:
    """A whole page, or (?fragment=1) only its live part, which the page's script swaps in."""
    if fragment:
        body = _env.get_template(f"{page}_live.html").render(**data)
    else:
        body = _env.get_template(f"{page}.html").render(poll_ms=POLL_MS, now=_now(), **data)
    return web.Response(text=str(body), content_type="text/html", headers={"Cache-Control": "no-store"})


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    data = await request.app[CTX].read(overview)
    return _html("overview", "fragment" in request.query, o=data)


@routes.get("/ui/namespaces/{namespace}/pods/{name}")
async def pod_page(request: web.Request) -> web.Response:
    ctx, ns, name = request.app[CTX], request.match_info["namespace"], request.match_info["name"]
    data = await ctx.read(pod_view, ns, name)
    if data is None:
        return web.Response(status=404, text=f"pod {ns}/{name} not found", content_type="text/plain")
    logs = {}
    if data["pod"]["node"]:
        logs = await ctx.blocking(last_log_lines, request.app[NODE_LINKS], data["pod"]["node"], data["uid"],
                                  [c["name"] for c in data["containers"]])
    return _html("pod", "fragment" in request.query, p=data, logs=logs)
