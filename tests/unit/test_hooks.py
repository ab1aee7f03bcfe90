"""POST /hooks/git without a fleet: which signatures pass, what a bad one gets, and that a push runs once."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from types import SimpleNamespace

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gitkube.server import hooks
from gitkube.server.context import CTX
from gitkube.server.hooks import Webhook

SECRET = b"topsecret"
BODY = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()
MAC = hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()


def test_each_hosts_signature_is_checked():
    w = Webhook(SECRET)
    assert w.verify({"X-Hub-Signature-256": f"sha256={MAC}"}, BODY) == "github"
    assert w.verify({"X-Gitea-Signature": MAC}, BODY) == "gitea"
    assert w.verify({"X-Gogs-Signature": MAC.upper()}, BODY) == "gitea"
    assert w.verify({"X-Gitlab-Token": "topsecret"}, BODY) == "gitlab"
    assert w.verify({"X-Hub-Signature-256": f"sha256={MAC}"}, BODY + b" ") is None  # body changed
    assert w.verify({"X-Hub-Signature-256": MAC}, BODY) is None  # no sha256= prefix
    assert w.verify({"X-Gitea-Signature": "0" * 64}, BODY) is None
    assert w.verify({"X-Gitlab-Token": "topsecret2"}, BODY) is None
    assert w.verify({}, BODY) is None
    # a wrong GitHub signature is not rescued by a right token in another header
    assert w.verify({"X-Hub-Signature-256": "sha256=00", "X-Gitlab-Token": "topsecret"}, BODY) is None


def _run(coro):
    return asyncio.run(coro)


async def _post(w: Webhook, headers: dict, body: bytes = BODY):
    app = web.Application()
    loop = asyncio.get_running_loop()
    app[CTX] = SimpleNamespace(webhook=w, blocking=lambda fn, *a: loop.run_in_executor(None, fn, *a))
    app.router.add_routes(hooks.routes)
    async with TestClient(TestServer(app)) as client:
        r = await client.post("/hooks/git", data=body, headers=headers)
        return r.status, await r.json()


def test_bad_signature_is_401_and_nothing_runs():
    w = Webhook(SECRET)
    calls = []
    w.on_push = lambda: calls.append(1) or True
    status, body = _run(_post(w, {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64}))
    assert status == 401 and not calls
    status, _ = _run(_post(w, {"X-GitHub-Event": "push"}))  # unsigned
    assert status == 401 and not calls


def test_a_push_runs_once_however_often_delivered_and_a_ping_runs_nothing():
    w = Webhook(SECRET)
    calls = []
    w.on_push = lambda: calls.append(1) or True
    hdr = {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={MAC}", "X-GitHub-Delivery": "d1"}
    assert _run(_post(w, hdr))[0] == 202
    status, body = _run(_post(w, hdr))
    assert status == 200 and "already handled" in body["message"]
    # the same push announced by Gitea's header too: still once
    assert _run(_post(w, {"X-Gitea-Event": "push", "X-Gitea-Signature": MAC}))[0] == 200
    assert calls == [1]
    ping = json.dumps({"zen": "hi"}).encode()
    sig = hmac.new(SECRET, ping, hashlib.sha256).hexdigest()
    assert _run(_post(w, {"X-GitHub-Event": "ping", "X-Hub-Signature-256": f"sha256={sig}"}, ping))[0] == 200
    assert calls == [1]


def test_a_failed_fetch_is_502_and_the_redelivery_is_tried_again():
    w = Webhook(SECRET)
    attempts = []

    def fetch():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("remote down")
        return True

    w.on_push = fetch
    hdr = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "topsecret"}
    assert _run(_post(w, hdr))[0] == 502
    assert _run(_post(w, hdr))[0] == 202
    assert len(attempts) == 2
