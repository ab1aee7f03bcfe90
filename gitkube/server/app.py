"""The API server's application: the route modules in order, authentication and Kubernetes-shaped errors.

Routes live in their own modules, each with a `routes` table (aiohttp RouteTableDef) and optionally
SUBRESOURCE_HANDLERS {(kind, subresource): handler}; add a module to ROUTE_MODULES to serve more (metrics, a
dashboard, hooks). Modules with specific paths go before
gitkube.server.objects, whose /api/… and /apis/… catch-alls answer every object path."""
from __future__ import annotations

import hmac
import importlib
import logging

from aiohttp import web

from gitkube.server.context import CTX, NODE_LINKS, SUBRESOURCES, ApiContext, ChangeFeed
from gitkube.server.status import status_response

log = logging.getLogger("gitkube.api")

ROUTE_MODULES = [
    "gitkube.server.metricsapi", # /apis/metrics.k8s.io/v1beta1: PodMetrics, NodeMetrics (kubectl top)
    "gitkube.server.metrics",    # /metrics for Prometheus
    "gitkube.server.dashboard",  # / and /ui/…: the read-only web dashboard
    "gitkube.server.discovery",  # /version, /api, /api/v1, /apis…
    "gitkube.server.health",     # /healthz, /livez, /readyz
    "gitkube.server.hooks",      # POST /hooks/git: a remote Git host's signed push (its own secret, not the token)
    "gitkube.server.writes",     # POST/PUT/PATCH/DELETE on object paths: refused, desired state is Git
    "gitkube.server.logs",       # pods/{name}/log (a subresource handler: SUBRESOURCE_HANDLERS)
    "gitkube.server.objects",    # GET of object paths: list, get, watch, Table; subresources from the modules
]
# Paths anyone may read without the bearer token (as Kubernetes' system:public-info-viewer).
PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz", "/hooks/git"})


@web.middleware
async def authenticate(request: web.Request, handler):
    token = request.app[CTX].token
    if token and request.path not in PUBLIC_PATHS:
        got = request.headers.get("Authorization", "")
        if not (got.startswith("Bearer ") and hmac.compare_digest(got[7:].strip().encode(), token.encode())):
            return status_response(401, "Unauthorized: a bearer token is required (`gitkube kubeconfig` prints "
                                        "a kubeconfig that carries it)", "Unauthorized")
    return await handler(request)


@web.middleware
async def kube_errors(request: web.Request, handler):
    """aiohttp's own errors and unexpected ones answered as a Kubernetes Status, never a bare page or a trace."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        msg = "the server could not find the requested resource" if e.status == 404 else e.reason
        return status_response(e.status, msg)
    except (ConnectionResetError, OSError) as e:
        log.debug("%s %s: client went away: %s", request.method, request.path, e)
        raise
    except Exception as e:  # noqa: BLE001 - one request fails, the server goes on
        log.exception("%s %s failed", request.method, request.path)
        return status_response(500, f"{type(e).__name__}: {e}")


def build_app(ctx: ApiContext) -> web.Application:
    """The aiohttp application for a context: every route module, the subresource table, the change feed."""
    app = web.Application(middlewares=[kube_errors, authenticate])
    app[CTX] = ctx
    app[SUBRESOURCES] = {}
    for name in ROUTE_MODULES:
        mod = importlib.import_module(name)
        app.router.add_routes(mod.routes)
        app[SUBRESOURCES].update(getattr(mod, "SUBRESOURCE_HANDLERS", {}))
    from gitkube.server import logs

    app[NODE_LINKS] = logs.NodeLinks(ctx.nodes)

    async def on_startup(app):
        ctx.feed = ChangeFeed(ctx)
        ctx.feed.start()

    async def on_cleanup(app):
        if ctx.feed is not None:
            await ctx.feed.stop()
        app[NODE_LINKS].close()
        ctx.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
