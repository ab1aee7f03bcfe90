"""POST /hooks/git: a bare repository served over smart HTTP on loopback (dulwich's server) is the "remote Git
host"; serve mirrors it with polling all but off, and the host's signed push deliveries drive the passes."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.integration.conftest import eventually
from tests.integration.test_control_loops import Cluster, Serve, WorkTree, assert_fleet_empty, pod_yaml, running
from tests.integration.test_control_loops import serve_procs  # noqa: F401 - the fixture

SECRET = b"s3cret-for-tests"


@pytest.fixture
def http_remote(tmp_path):
    """A bare repository served read-only over Git's smart HTTP protocol by dulwich on 127.0.0.1."""
    from dulwich.repo import Repo
    from dulwich.server import DictBackend
    from dulwich.web import make_server, make_wsgi_chain

    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, timeout=30)
    repo = Repo(str(bare))
    app = make_wsgi_chain(DictBackend({"/": repo}))
    srv = make_server("127.0.0.1", 0, app)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield bare, f"http://127.0.0.1:{srv.server_port}/"
    srv.shutdown()
    repo.close()


def deliver(api: str, body: dict, headers: dict, secret: bytes = SECRET, how: str = "github") -> tuple[int, dict]:
    data = json.dumps(body).encode()
    mac = hmac.new(secret, data, hashlib.sha256).hexdigest()
    sig = {"github": {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={mac}"},
           "gitea": {"X-Gitea-Event": "push", "X-Gitea-Signature": mac},
           "gitlab": {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret.decode()}}[how]
    req = urllib.request.Request(f"{api}/hooks/git", data=data, method="POST",
                                 headers={"Content-Type": "application/json", **sig, **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def push_event(sha: str) -> dict:
    return {"ref": "refs/heads/main", "before": "0" * 40, "after": sha, "repository": {"full_name": "t/r"}}


def test_signed_push_runs_a_pass_at_the_commit_within_1s_bad_signature_401_redelivery_once(
        fleet, tmp_path, http_remote, serve_procs):
    from gitkube.store import open_store

    bare, url = http_remote
    wt = WorkTree(tmp_path / "work", clone_of=bare)
    secret_file = tmp_path / "hook-secret"
    secret_file.write_bytes(SECRET + b"\n")
    cl = Cluster(fleet, tmp_path, repo=url)

    def push():
        wt.git("push", "-q", "origin", "main")

    wt.commit({}, "empty")
    push()
    s = Serve(cl, "--resync", "600", "--fetch-interval", "600", "--webhook-secret-file", str(secret_file),
              "--api-listen", "127.0.0.1:0")
    serve_procs.append(s)
    eventually(lambda: s.passes_after(0), timeout=30, interval=0.2, what=f"serve's first pass\n{s.log()}")
    api = json.loads((cl.state / "api" / "endpoint.json").read_text())["server"]
    reader = open_store(str(cl.state), url=os.environ.get("GITKUBE_STORE"))
    cl.repo = cl.state / "mirror.git"  # what the cleanup's apply reads
    try:
        first = wt.commit({"hooked.yaml": pod_yaml("hooked")}, "add pod hooked")
        push()
        # Wrongly signed: 401, nothing fetched, no pass, nothing stored.
        n, fetched = len(s.passes_after(0)), s.log().count("fetched new commits")
        code, body = deliver(api, push_event(first), {"X-GitHub-Delivery": str(uuid.uuid4())}, secret=b"wrong")
        assert code == 401, body
        code, _ = deliver(api, push_event(first), {"X-Gitea-Delivery": "1"}, secret=b"wrong", how="gitea")
        assert code == 401
        code, _ = deliver(api, push_event(first), {}, secret=b"wrong", how="gitlab")
        assert code == 401
        time.sleep(1.5)
        assert len(s.passes_after(0)) == n and s.log().count("fetched new commits") == fetched, s.log()
        assert reader.applied_revision() != first

        # Signed (GitHub): a pass at the pushed commit in under a second from delivery.
        delivery = {"X-GitHub-Delivery": str(uuid.uuid4())}
        t0 = time.monotonic()
        code, body = deliver(api, push_event(first), delivery)
        assert code == 202, body
        eventually(lambda: reader.applied_revision() == first, timeout=5, interval=0.01,
                   what=f"revision {first[:12]} applied\n{s.log()}")
        took = time.monotonic() - t0
        print(f"\nsigned delivery -> pass at the pushed commit: {took:.3f}s")
        assert took < 1.0, s.log()
        eventually(lambda: any(p["metadata"]["name"] == "hooked" and running(p) for p in cl.pods()),
                   timeout=30, interval=0.3, what="pod hooked Running")
        # The same delivery again: answered, but no second pass.
        t1 = time.monotonic()
        code, body = deliver(api, push_event(first), delivery)
        assert code == 200 and "already handled" in body["message"], body
        time.sleep(2)
        assert not s.passes_after(t1), s.log()

        # Gitea's and GitLab's ways of signing work the same.
        for how in ("gitea", "gitlab"):
            sha = wt.commit({"hooked.yaml": pod_yaml("hooked"), f"{how}.yaml": pod_yaml(how)}, f"add {how}")
            push()
            t0 = time.monotonic()
            code, body = deliver(api, push_event(sha), {}, how=how)
            assert code == 202, body
            eventually(lambda: reader.applied_revision() == sha, timeout=5, interval=0.01, what=f"{how} push")
            print(f"{how} delivery -> pass: {time.monotonic() - t0:.3f}s")
        assert re.search(r"webhook \(gitlab\)", s.log()), s.log()
    finally:
        reader.close()
        sha = wt.commit({}, "remove everything")
        push()
        deliver(api, push_event(sha), {})
        assert_fleet_empty(fleet, timeout=60)
        s.stop()
