"""Kubernetes `Status` answers: what kubectl and the clients print for an error ("Error from server (Reason): …")."""
from __future__ import annotations

from aiohttp import web

REASONS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed", 406: "NotAcceptable",
           410: "Expired", 500: "InternalError", 503: "ServiceUnavailable"}


def status_body(code: int, message: str, reason: str | None = None, details: dict | None = None) -> dict:
    """Decides the v1 Status object for an error."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason or REASONS.get(code, "InternalError"), "code": code}
    if details:
        body["details"] = details
    return body


def status_response(code: int, message: str, reason: str | None = None, details: dict | None = None,
                    headers: dict | None = None) -> web.Response:
    return web.json_response(status_body(code, message, reason, details), status=code, headers=headers)


def not_found(plural: str, name: str, group: str = "") -> web.Response:
    what = f"{plural}.{group}" if group else plural
    return status_response(404, f'{what} "{name}" not found', "NotFound",
                           {"name": name, "group": group, "kind": plural})
