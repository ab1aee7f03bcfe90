"""metrics.k8s.io/v1beta1 (what metrics-server serves): PodMetrics and NodeMetrics from the latest usage sample
`serve` stored, so `kubectl top pods|nodes` works against gitkube. Discovery of the group is here too; the group
list (/apis) names it through gitkube.server.discovery.AGGREGATED."""
from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from gitkube.server import query
from gitkube.server.status import not_found, status_response
from gitkube.server.context import CTX

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GV = f"{GROUP}/{VERSION}"
BASE = f"/apis/{GROUP}/{VERSION}"

routes = web.RouteTableDef()


def resource_list() -> dict:
    """Decides the APIResourceList of metrics.k8s.io/v1beta1 (as metrics-server's)."""
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GV, "resources": [
        {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]}]}


def _window(u: Mapping, snap: Mapping) -> str:
    w = u.get("window") or (snap.get("sample") or {}).get("intervalSeconds") or 0
    return f"{round(float(w), 3):g}s"


def pod_metrics(pod: Mapping, u: Mapping, snap: Mapping) -> dict:
    """Decides a PodMetrics object from a stored pod and its usage (CPU in millicores, memory in bytes)."""
    m = pod["metadata"]
    return {"kind": "PodMetrics", "apiVersion": GV,
            "metadata": {"name": m["name"], "namespace": m.get("namespace") or "default",
                         "creationTimestamp": snap.get("timestamp"), "labels": m.get("labels") or {}},
            "timestamp": u.get("timestamp") or snap.get("timestamp"), "window": _window(u, snap),
            "containers": [{"name": c["name"], "usage": {"cpu": f"{int(c['cpu'] or 0)}m", "memory": str(int(c["memory"]))}}
                           for c in u.get("containers") or []]}


def node_metrics(node: Mapping, u: Mapping, snap: Mapping) -> dict:
    """Decides a NodeMetrics object from a stored Node and its usage."""
    m = node["metadata"]
    return {"kind": "NodeMetrics", "apiVersion": GV,
            "metadata": {"name": m["name"], "creationTimestamp": snap.get("timestamp"), "labels": m.get("labels") or {}},
            "timestamp": u.get("timestamp") or snap.get("timestamp"), "window": _window(u, snap),
            "usage": {"cpu": f"{int(u['cpu'])}m", "memory": str(int(u["memory"]))}}


def pod_items(store, namespace: str | None, label_selector: str | None, name: str | None = None) -> list[dict]:
    """PodMetrics of the stored pods chosen that have a complete usage figure."""
    from gitkube.api.resources import BY_KIND
    from gitkube.controller.usage import stored_usage

    snap = stored_usage(store) or {}
    usage = snap.get("pods") or {}
    pods = query.select(store, BY_KIND["Pod"], namespace, label_selector, None)
    out = []
    for p in pods:
        if name is not None and p["metadata"]["name"] != name:
            continue
        u = usage.get(f"{p['metadata'].get('namespace') or 'default'}/{p['metadata']['name']}")
        if u and u.get("complete"):
            out.append(pod_metrics(p, u, snap))
    return out


def node_items(store, label_selector: str | None, name: str | None = None) -> list[dict]:
    """NodeMetrics of the stored nodes chosen that were sampled."""
    from gitkube.api.resources import BY_KIND
    from gitkube.controller.usage import stored_usage

    snap = stored_usage(store) or {}
    usage = snap.get("nodes") or {}
    out = []
    for n in query.select(store, BY_KIND["Node"], None, label_selector, None):
        u = usage.get(n["metadata"]["name"])
        if (name is None or n["metadata"]["name"] == name) and u is not None:
            out.append(node_metrics(n, u, snap))
    return out


def _list(kind: str, items: list[dict]) -> dict:
    return {"kind": f"{kind}List", "apiVersion": GV, "metadata": {}, "items": items}


@routes.get(f"/apis/{GROUP}")
async def group(request: web.Request) -> web.Response:
    gv = {"groupVersion": GV, "version": VERSION}
    return web.json_response({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv],
                              "preferredVersion": gv})


@routes.get(BASE)
async def resources(request: web.Request) -> web.Response:
    return web.json_response(resource_list())


def _selector(request: web.Request) -> str | None:
    sel = request.query.get("labelSelector")
    query.label_matcher(sel)  # raises BadRequest for a bad one
    return sel


@routes.get(f"{BASE}/nodes")
@routes.get(BASE + "/nodes/{name}")
async def nodes(request: web.Request) -> web.Response:
    name = request.match_info.get("name")
    try:
        items = await request.app[CTX].read(node_items, _selector(request), name)
    except query.BadRequest as e:
        return status_response(400, str(e), "BadRequest")
    if name is None:
        return web.json_response(_list("NodeMetrics", items))
    return web.json_response(items[0]) if items else not_found("nodes", name, GROUP)


@routes.get(f"{BASE}/pods")
@routes.get(BASE + "/namespaces/{namespace}/pods")
@routes.get(BASE + "/namespaces/{namespace}/pods/{name}")
async def pods(request: web.Request) -> web.Response:
    ns, name = request.match_info.get("namespace"), request.match_info.get("name")
    try:
        items = await request.app[CTX].read(pod_items, ns, _selector(request), name)
    except query.BadRequest as e:
        return status_response(400, str(e), "BadRequest")
    if name is None:
        return web.json_response(_list("PodMetrics", items))
    return web.json_response(items[0]) if items else not_found("pods", name, GROUP)
