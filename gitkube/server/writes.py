"""Writes are refused: desired state is the Git repository. POST/PUT/PATCH/DELETE on an object path answer a
Kubernetes Status (405 MethodNotAllowed) that says so and names the repository, so `kubectl delete pod x` prints
that sentence. (POST /hooks/git, a later issue, is no object path and not refused here.)"""
from __future__ import annotations

from aiohttp import web

from gitkube.server.context import CTX
from gitkube.server.status import status_response

routes = web.RouteTableDef()
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def refusal(desired_state: str, method: str, path: str) -> str:
    """Decides the sentence a refused write answers with."""
    return (f"gitkube serves a read-only API: desired state is {desired_state}; commit the change there "
            f"and gitkube applies it ({method} {path} refused, nothing changed)")


async def refuse(request: web.Request) -> web.Response:
    return status_response(405, refusal(request.app[CTX].desired_state, request.method, request.path),
                           "MethodNotAllowed", headers={"Allow": "GET"})


for _m in WRITE_METHODS:
    routes.route(_m, "/api/{tail:.*}")(refuse)
    routes.route(_m, "/apis/{tail:.*}")(refuse)
