"""Reads of objects: list and get, per namespace and across all, with label and field selectors, as JSON or as
a Table, and watch (?watch=1): ADDED/MODIFIED/DELETED from a resourceVersion, bookmarks, 410 Gone when too old.

The paths are the Kubernetes ones (/api/v1/…, /apis/GROUP/VERSION/…); writes go to gitkube.server.writes."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping

from aiohttp import web

from gitkube.api import resources as res
from gitkube.api.printers import kube_object
from gitkube.server import query, tables
from gitkube.server.context import CTX, SUBRESOURCES
from gitkube.server.status import not_found, status_body, status_response

routes = web.RouteTableDef()

WATCH_DEFAULT_SECONDS = 1800.0
BOOKMARK_SECONDS = 5.0


class Target:
    """What a read path names: a resource, a namespace (None: all), an object name, a subresource."""

    def __init__(self, resource: res.Resource, namespace: str | None, name: str | None, sub: str | None):
        self.resource, self.namespace, self.name, self.sub = resource, namespace, name, sub


def parse_path(group: str, version: str, rest: list[str]) -> Target | None:
    """Decides which resource, namespace, name and subresource a path names (None: no such path)."""
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    r = next((x for x in res.RESOURCES if x.plural == rest[0] and x.group_version == (group, version)), None)
    if r is None or (ns is not None and not r.namespaced):
        return None
    name = rest[1] if len(rest) > 1 else None
    if name is not None and r.namespaced and ns is None:
        return None
    return Target(r, ns, name, rest[2] if len(rest) > 2 else None)


def target_of(request: web.Request) -> Target | None:
    parts = [p for p in request.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        return parse_path("", parts[1], parts[2:])
    if parts[:1] == ["apis"] and len(parts) >= 4:
        return parse_path(parts[1], parts[2], parts[3:])
    return None


def _dump(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _truthy(v: str | None) -> bool:
    return v not in (None, "", "0", "false", "False")


@routes.get("/api/{tail:.*}")
@routes.get("/apis/{tail:.*}")
async def read(request: web.Request) -> web.StreamResponse:
    """GET of an object path: a subresource handler, a watch, a get or a list."""
    t = target_of(request)
    if t is None:
        return status_response(404, "the server could not find the requested resource", "NotFound")
    if t.sub is not None:
        handler = request.app[SUBRESOURCES].get((t.resource.kind, t.sub))
        if handler is None:
            return status_response(404, "the server could not find the requested resource", "NotFound")
        return await handler(request, t)
    ctx = request.app[CTX]
    q = request.query
    try:  # a bad selector is the client's 400 before any work
        query.parse_field_selector(q.get("fieldSelector"), t.resource.kind)
        query.label_matcher(q.get("labelSelector"))
    except query.BadRequest as e:
        return status_response(400, str(e), "BadRequest")
    if _truthy(q.get("watch")):
        return await watch(request, t)
    table = tables.wants_table(request.headers.get("Accept"))
    if t.name is not None:
        obj = await ctx.read(query.get_one, t.resource, t.namespace, t.name)
        if obj is None:
            return not_found(t.resource.plural, t.name, t.resource.group)
        if table:
            return web.json_response(tables.table(t.resource.kind, [obj], obj["metadata"].get("resourceVersion", ""),
                                                  q.get("includeObject", "Metadata")))
        return web.json_response(obj)

    def listing(store):
        rv = store.resource_version()
        return query.select(store, t.resource, t.namespace, q.get("labelSelector"), q.get("fieldSelector")), rv

    items, rv = await ctx.read(listing)
    if table:
        body = tables.table(t.resource.kind, items, rv, q.get("includeObject", "Metadata"))
    else:
        body = {"kind": f"{t.resource.kind}List", "apiVersion": t.resource.api_version,
                "metadata": {"resourceVersion": str(rv)}, "items": items}
    return web.Response(body=_dump(body), content_type="application/json")


class _WatchFilter:
    """Which changes a watch passes on, and as what: an object that stops matching its selectors is DELETED for
    this watcher, one that starts matching is ADDED (as the Kubernetes watch cache does)."""

    def __init__(self, t: Target, label_selector: str | None, fields: list, visible: set):
        self.t, self.labels, self.fields, self.visible = t, label_selector, fields, visible

    def event(self, change: Mapping) -> tuple[str, dict] | None:
        t = self.t
        if t.namespace is not None and t.resource.namespaced and change["namespace"] != t.namespace:
            return None
        if t.name is not None and change["name"] != t.name:
            return None
        obj = kube_object(change["object"])
        key = (change["namespace"], change["name"])
        was = key in self.visible
        if change["type"] == "DELETED":
            self.visible.discard(key)
            return ("DELETED", obj) if was else None
        if query.matches(obj, self.labels, self.fields):
            self.visible.add(key)
            return ("MODIFIED" if was else "ADDED"), obj
        if was:
            self.visible.discard(key)
            return "DELETED", obj
        return None


async def watch(request: web.Request, t: Target) -> web.StreamResponse:
    """A watch: streamed JSON events, one per line, until timeoutSeconds or the client goes away."""
    ctx, q = request.app[CTX], request.query
    table = tables.wants_table(request.headers.get("Accept"))
    include = q.get("includeObject", "Metadata")
    bookmarks = _truthy(q.get("allowWatchBookmarks"))
    fields = query.parse_field_selector(q.get("fieldSelector"), t.resource.kind)
    if t.name is not None:
        fields.append(query.FieldRequirement("metadata.name", "=", t.name))
    try:
        timeout = float(q.get("timeoutSeconds") or WATCH_DEFAULT_SECONDS)
    except ValueError:
        return status_response(400, f"invalid timeoutSeconds {q.get('timeoutSeconds')!r}", "BadRequest")
    start = q.get("resourceVersion") or ""

    def initial(store):
        rv = store.resource_version()
        items = query.select(store, t.resource, t.namespace, q.get("labelSelector"), q.get("fieldSelector"))
        if t.name is not None:
            items = [o for o in items if o["metadata"]["name"] == t.name]
        return items, rv, store.oldest_watchable()

    items, now_rv, oldest = await ctx.read(initial)
    resp = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)

    async def send(kind: str, obj: dict) -> None:
        if table and kind not in ("ERROR", "BOOKMARK"):
            obj = tables.table(t.resource.kind, [obj], obj["metadata"].get("resourceVersion", ""), include)
        await resp.write(_dump({"type": kind, "object": obj}) + b"\n")

    visible = {((o["metadata"].get("namespace") or "") if t.resource.namespaced else "", o["metadata"]["name"])
               for o in items}
    if start in ("", "0"):
        rv = now_rv
        for o in items:
            await send("ADDED", o)
    else:
        try:
            rv = int(start)
        except ValueError:
            rv = -1
        if rv < oldest:
            await send("ERROR", status_body(410, f"too old resource version: {start} ({oldest})", "Expired"))
            await resp.write_eof()
            return resp
    filt = _WatchFilter(t, q.get("labelSelector"), fields, visible)
    await _stream_changes(ctx, t, filt, send, rv, time.monotonic() + timeout, bookmarks)
    await resp.write_eof()
    return resp


async def _stream_changes(ctx, t: Target, filt: _WatchFilter, send, rv: int, deadline: float, bookmarks: bool) -> None:
    """Send the changes after `rv` as the feed reports the store moving; a BOOKMARK when a quiet interval ends
    with the watch's resourceVersion moved (other kinds changed)."""
    last_mark = rv
    kinds = [t.resource.kind]
    while time.monotonic() < deadline:
        moved = await ctx.feed.wait_past(rv, min(BOOKMARK_SECONDS, max(0.0, deadline - time.monotonic())))
        if moved:
            def changes(store, since=rv):
                current = store.resource_version()
                return current, store.changes_since(since, kinds=kinds, limit=500)

            current, batch = await ctx.read(changes)
            for c in batch:
                ev = filt.event(c)
                if ev is not None:
                    await send(*ev)
            # a full batch: go on from its last change; else everything up to `current` has been seen
            rv = batch[-1]["rv"] if len(batch) == 500 else max(current, batch[-1]["rv"] if batch else rv)
        elif bookmarks and rv != last_mark:
            await send("BOOKMARK", {"kind": t.resource.kind, "apiVersion": t.resource.api_version,
                                    "metadata": {"resourceVersion": str(rv)}})
            last_mark = rv
