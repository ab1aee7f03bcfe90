"""/healthz, /livez, /readyz: "ok" while the server answers (as the Kubernetes API server's probes)."""
from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()


@routes.get("/healthz")
@routes.get("/livez")
@routes.get("/readyz")
async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")
