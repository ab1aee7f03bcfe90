"""POST /hooks/git: a remote Git host (GitHub, Gitea, GitLab) says a push happened. The only write endpoint of the
API listener, authenticated by its own shared secret, not the bearer token:
  GitHub  X-Hub-Signature-256: sha256=HMAC-SHA256(secret, body) (Gitea sends it too)
  Gitea   X-Gitea-Signature: HMAC-SHA256(secret, body) in hex (Gogs: X-Gogs-Signature)
  GitLab  X-Gitlab-Token: the secret itself
each compared in constant time. A verified push fetches the remote mirror and wakes the control loop (one pass);
the same push delivered again (the host's redelivery, or both GitHub's and Gitea's header) does nothing more.
Anything not verified gets 401 and nothing else happens."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from aiohttp import web

from gitkube.server.context import CTX

log = logging.getLogger("gitkube.hooks")

routes = web.RouteTableDef()
PATH = "/hooks/git"
MAX_BODY = 1 << 20  # bytes; GitHub caps payloads at 25 MB but a push's is small; a bigger one is refused (413)
REMEMBERED = 1000  # deliveries remembered for idempotency


class Webhook:
    """The secret and what a verified push does (`on_push() -> bool`: fetched new commits; set by serve)."""

    def __init__(self, secret: bytes):
        if not secret:
            raise ValueError("the webhook secret is empty")
        self.secret = secret
        self.on_push: Callable[[], bool] | None = None
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.passes_triggered = 0

    @classmethod
    def from_file(cls, path: str) -> Webhook:
        with open(path, "rb") as f:
            secret = f.read().strip()
        if not secret:
            raise ValueError(f"webhook secret file {path} is empty")
        return cls(secret)

    def verify(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Decides which host signed `body` with our secret ('github', 'gitea', 'gitlab'); None when none did."""
        mac = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        sig = headers.get("X-Hub-Signature-256")
        if sig is not None:
            return "github" if hmac.compare_digest(sig.strip().encode(), f"sha256={mac}".encode()) else None
        for h in ("X-Gitea-Signature", "X-Gogs-Signature"):
            sig = headers.get(h)
            if sig is not None:
                return "gitea" if hmac.compare_digest(sig.strip().lower().encode(), mac.encode()) else None
        tok = headers.get("X-Gitlab-Token")
        if tok is not None:
            return "gitlab" if hmac.compare_digest(tok.encode(), self.secret) else None
        return None

    def first_delivery(self, key: str) -> bool:
        """Whether a push (by its key) is new; remembers it."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = time.time()
            while len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
            return True

    def forget(self, key: str) -> None:
        with self._lock:
            self._seen.pop(key, None)


def _event(headers: Mapping[str, str]) -> str:
    for h in ("X-GitHub-Event", "X-Gitea-Event", "X-Gogs-Event", "X-Gitlab-Event"):
        if h in headers:
            return headers[h].strip().lower()
    return ""


def _delivery(headers: Mapping[str, str]) -> str:
    for h in ("X-GitHub-Delivery", "X-Gitea-Delivery", "X-Gogs-Delivery", "X-Gitlab-Event-UUID"):
        if headers.get(h):
            return headers[h].strip()
    return ""


def _json(status: int, **body) -> web.Response:
    return web.json_response(body, status=status)


@routes.post(PATH)
async def git_push(request: web.Request) -> web.Response:
    hook: Webhook | None = getattr(request.app[CTX], "webhook", None)
    if hook is None:
        return _json(404, message="no webhook is configured here (serve --webhook-secret-file FILE)")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _json(413, message=f"payload larger than {MAX_BODY} bytes")
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        return _json(413, message=f"payload larger than {MAX_BODY} bytes")
    host = hook.verify(request.headers, body)
    if host is None:
        log.warning("webhook from %s refused: signature missing or wrong", request.remote)
        return _json(401, message="signature missing or does not match the shared secret")
    event = _event(request.headers)
    if event in ("ping", "system hook"):
        return _json(200, message="pong")
    if event not in ("push", "push hook", "tag_push", "tag push hook", "create"):
        return _json(202, message=f"event {event or '(none)'} ignored: only pushes trigger a pass")
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return _json(400, message="payload is not JSON")
    after = str(payload.get("after") or payload.get("checkout_sha") or "") if isinstance(payload, dict) else ""
    ref = str(payload.get("ref") or "") if isinstance(payload, dict) else ""
    key = f"{ref}@{after}" if after else f"delivery:{_delivery(request.headers)}"
    if not hook.first_delivery(key):
        return _json(200, message=f"push {after[:12] or key} already handled: no new pass")
    if hook.on_push is None:
        hook.forget(key)
        return _json(503, message="the control loop is not running yet; retry")
    t0 = time.monotonic()
    try:
        fetched = await request.app[CTX].blocking(hook.on_push)
    except Exception as e:  # noqa: BLE001 - the remote did not answer: the host may redeliver
        hook.forget(key)
        log.warning("webhook: push %s to %s: fetch failed: %s", after[:12], ref, e)
        return _json(502, message=f"fetching the remote failed: {e}")
    hook.passes_triggered += bool(fetched)
    log.info("webhook (%s): push %s to %s: %s in %.2fs", host, after[:12], ref,
             "fetched, pass triggered" if fetched else "nothing new to fetch", time.monotonic() - t0)
    return _json(202, message="pass triggered" if fetched else "already fetched", after=after, ref=ref)
