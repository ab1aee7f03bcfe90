"""Discovery as kubectl needs it: /version, /api, /api/v1, /apis, /apis/GROUP[/VERSION], from the resource table
(gitkube.api.resources), so a kind added there is listed by `kubectl api-resources` with nothing more to do."""
from __future__ import annotations

import platform

from aiohttp import web

from gitkube.api import resources as res

# The Kubernetes minor this API answers as (kubectl warns about a skew of more than one minor).
KUBE_MAJOR, KUBE_MINOR = "1", "37"
GITKUBE_VERSION = "0.1.0"

# Groups served by route modules of their own rather than the object table (listed in /apis all the same).
AGGREGATED = [("metrics.k8s.io", "v1beta1")]  # gitkube.server.metricsapi

routes = web.RouteTableDef()


def version_info() -> dict:
    """Decides /version: the Kubernetes version answered, with gitkube's own in gitVersion."""
    return {"major": KUBE_MAJOR, "minor": KUBE_MINOR, "gitVersion": f"v{KUBE_MAJOR}.{KUBE_MINOR}.0+gitkube.{GITKUBE_VERSION}",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "",
            "compiler": "gitkube", "platform": f"linux/{platform.machine() or 'amd64'}"}


def resource_list(group: str, version: str) -> dict | None:
    """Decides the APIResourceList of one group version (None when not served)."""
    items = [r for r in res.RESOURCES if r.group_version == (group, version)]
    if not items:
        return None
    out = []
    for r in items:
        entry = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                 "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        if r.kind == "Pod":
            out.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": out}


def group_list() -> dict:
    """Decides /apis: every named group with its versions (the core group is /api)."""
    groups: dict[str, list[str]] = {}
    for g, v in [*res.group_versions(), *AGGREGATED]:
        if g:
            groups.setdefault(g, []).append(v)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g, vs) for g, vs in groups.items()]}


def _group(name: str, versions: list[str]) -> dict:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


@routes.get("/version")
async def version(request: web.Request) -> web.Response:
    return web.json_response(version_info())


@routes.get("/api")
async def core_versions(request: web.Request) -> web.Response:
    return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})


@routes.get("/api/v1")
async def core_resources(request: web.Request) -> web.Response:
    return web.json_response(resource_list("", "v1"))


@routes.get("/apis")
async def groups(request: web.Request) -> web.Response:
    return web.json_response(group_list())


@routes.get("/apis/{group}")
async def one_group(request: web.Request) -> web.Response:
    g = request.match_info["group"]
    vs = [v for gg, v in res.group_versions() if gg == g]
    if not vs:
        raise web.HTTPNotFound()
    return web.json_response({"kind": "APIGroup", "apiVersion": "v1", **_group(g, vs)})


@routes.get("/apis/{group}/{version}")
async def group_resources(request: web.Request) -> web.Response:
    body = resource_list(request.match_info["group"], request.match_info["version"])
    if body is None:
        raise web.HTTPNotFound()
    return web.json_response(body)
