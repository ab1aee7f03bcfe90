"""Deployments on the sandbox, through the CLI: a rolling update v1 → v2 under a bounded load through the NodePort
of all three nodes drops no request and never has fewer than 3 Ready or more than 4 pods; a broken v3 stops at its
progress deadline with v2 serving, and with gitkube.io/rollback-on-failure goes back to 3 Ready v2 pods while Git
says v3 (diff: OutOfSync); the same update with strategy Recreate does drop requests.

One `gitkube serve` runs for the whole module (a controller restart would start with no probe results)."""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from gitkube.store import open_store
from tests.integration.conftest import eventually
from tests.integration.test_guestbook import Cluster, dump

NODE_PORT = 30081
LABELS = {"app": "rollout-web"}


def deployment(version: str, *, strategy: dict | None = None, probe_path: str = "/version", deadline: int = 600,
               annotations: dict | None = None) -> dict:
    image = f"gitkube/guestbook-frontend:{'v1' if version == 'v1' else 'v2'}"
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": dict(LABELS), "annotations": {"kubernetes.io/change-cause": f"web {version}",
                                                                          **(annotations or {})}},
        "spec": {
            "replicas": 3, "selector": {"matchLabels": dict(LABELS)}, "progressDeadlineSeconds": deadline,
            "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": dict(LABELS)}, "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [{"name": "web", "image": image, "imagePullPolicy": "Never",
                                "ports": [{"containerPort": 80}],
                                "readinessProbe": {"httpGet": {"path": probe_path, "port": 80}, "periodSeconds": 1}}]}},
        },
    }


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"type": "NodePort", "selector": dict(LABELS), "ports": [{"port": 80, "nodePort": NODE_PORT}]}}


class Load:
    """A bounded load loop: `rate` GETs/s of /version, round robin over the NodePort of every node; stops by itself
    after `limit` seconds (or when stopped)."""

    def __init__(self, addresses: list[str], rate: float = 20.0, limit: float = 150.0):
        self.urls = [f"http://{a}:{NODE_PORT}/version" for a in addresses]
        self.rate, self.limit = rate, limit
        self.results: list[tuple[float, str]] = []  # (time, "v1" | "v2" | "FAIL: why")
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t0 = time.monotonic()
        i = 0
        while not self._stop.is_set() and time.monotonic() - t0 < self.limit and i < self.rate * self.limit:
            url = self.urls[i % len(self.urls)]
            try:
                with urllib.request.urlopen(url, timeout=3) as r:
                    body = r.read().decode().strip()
            except Exception as e:  # noqa: BLE001 - every failure is a result
                body = f"FAIL: {url}: {e}"
            self.results.append((time.monotonic(), body))
            i += 1
            time.sleep(max(0.0, t0 + i / self.rate - time.monotonic()))

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=10)

    @property
    def failed(self) -> list[str]:
        return [b for _, b in self.results if b.startswith("FAIL")]

    @property
    def answers(self) -> set[str]:
        return {b for _, b in self.results if not b.startswith("FAIL")}


class Sampler:
    """Counts the Deployment's pods from the store (the state DB, or etcd's with GITKUBE_STORE) every 0.2 s (more often than passes run): (pods not
    terminating, Ready pods not terminating, terminating pods)."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.samples: list[tuple[int, int, int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                with open_store(str(self.state_dir), url=os.environ.get("GITKUBE_STORE")) as s:
                    pods = [p for p in s.list("Pod", namespace="default")
                            if (p["metadata"].get("labels") or {}).get("app") == "rollout-web"]
            except Exception:  # noqa: BLE001 - a read racing a write: sample again
                time.sleep(0.05)
                continue
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            ready = [p for p in live if any(c.get("type") == "Ready" and c.get("status") == "True"
                                            for c in (p.get("status") or {}).get("conditions") or [])]
            self.samples.append((len(live), len(ready), len(pods) - len(live)))
            time.sleep(0.2)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=10)


@pytest.fixture(scope="module")
def web(fleet, tmp_path_factory):
    c = Cluster(fleet, tmp_path_factory.mktemp("rollout"))
    c.gk("images", "load", "guestbook-frontend", "guestbook-frontend-v2", "--inventory", str(fleet.inventory), timeout=300)
    c.commit({"web.yaml": dump(SERVICE, deployment("v1"))}, "web v1")
    log = open(c.repo.parent / "serve.log", "w")
    env = {**os.environ, "GITKUBE_SANDBOX_ID": str(fleet.sid)}
    serve = subprocess.Popen([sys.executable, "-m", "gitkube", "--state-dir", str(c.state), "serve", *c.src(),
                              "--resync", "1"], stdout=log, stderr=log, env=env)
    c.serve, c.serve_log = serve, c.repo.parent / "serve.log"
    c.addresses = [fleet.node_address(n) for n in ("n1", "n2", "n3")]
    try:
        eventually(lambda: c.gk("get", "deploy", "web", check=False).returncode == 0, 60, what="the Deployment stored")
        c.gk("rollout", "status", "deployment/web", "--timeout", "120", timeout=180)
        try:
            eventually(lambda: all(_get(u) == "v1" for u in _urls(c)), 90, what="v1 on every NodePort")
        except AssertionError as e:
            raise AssertionError(f"{e}\nanswers: {[_get(u) for u in _urls(c)]}\n{_serve_tail(c)}") from None
        yield c
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
        c.commit({}, "remove everything")
        c.gk("apply", *c.src(), "--wait", "--timeout", "120", check=False, timeout=200)


def _urls(c) -> list[str]:
    return [f"http://{a}:{NODE_PORT}/version" for a in c.addresses]


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read().decode().strip()
    except OSError:
        return None


def _serve_tail(c) -> str:
    try:
        return "\n".join(c.serve_log.read_text().splitlines()[-60:])
    except OSError:
        return ""


def _rollout(c, commit_files: dict, message: str, *, expect_fail: bool = False, timeout: float = 150):
    """Commit, then `rollout status` until it finishes (exit 0) or exceeds its deadline (exit 1)."""
    before = c.get("deploy", "web")["metadata"]["generation"]
    c.commit(commit_files, message)

    def observed():
        d = c.get("deploy", "web")
        gen = d["metadata"]["generation"]
        return gen > before and (d.get("status") or {}).get("observedGeneration", 0) >= gen
    eventually(observed, 30, what="the new generation observed")
    r = c.gk("rollout", "status", "deployment/web", "--timeout", str(timeout), check=False, timeout=timeout + 60)
    assert r.returncode == (1 if expect_fail else 0), f"rollout status: {r.returncode}\n{r.stdout}\n{r.stderr}\n{_serve_tail(c)}"
    return r


def _preview_diff(c, files: dict) -> subprocess.CompletedProcess:
    """`gitkube diff` of a commit made in a clone (the served repository does not see it)."""
    preview = c.repo.parent / "preview"
    if not preview.exists():
        subprocess.run(["git", "clone", "-q", str(c.repo), str(preview)], check=True, timeout=60)
    subprocess.run(["git", "pull", "-q"], cwd=preview, check=True, timeout=60)
    for name, text in files.items():
        (preview / "manifests" / name).write_text(text)
    subprocess.run(["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.com", "commit", "-qam", "preview"],
                   cwd=preview, check=True, timeout=60)
    return c.gk("diff", "--repo", str(preview), "--inventory", str(c.fleet.inventory), "--objects-only", check=False)


def test_rolling_update_drops_no_request(web):
    d = _preview_diff(web, {"web.yaml": dump(SERVICE, deployment("v2"))})
    assert d.returncode == 1 and "~ rollout default/web: 3 pods v1 → v2, maxSurge 1, maxUnavailable 0" in d.stdout, d.stdout
    t0 = time.monotonic()
    with Sampler(web.state) as sampler, Load(web.addresses) as load:
        time.sleep(2)
        r = _rollout(web, {"web.yaml": dump(SERVICE, deployment("v2"))}, "web v2")
        tail = time.monotonic()
        eventually(lambda: all(_get(u) == "v2" for u in _urls(web)), 30, what="only v2 on every NodePort")
        while time.monotonic() - tail < 3:  # a few more seconds of answers, all from v2
            time.sleep(0.2)
    took = time.monotonic() - t0
    assert "successfully rolled out" in r.stdout
    assert load.failed == [], f"{len(load.failed)} of {len(load.results)} requests failed: {load.failed[:5]}\n{_serve_tail(web)}"
    assert load.answers <= {"v1", "v2"} and "v2" in load.answers, load.answers
    last = [b for t, b in load.results if t > tail + 1]
    assert last and set(last) == {"v2"}, f"after the rollout: {set(last)}"
    assert len(load.results) > 200, len(load.results)
    live = [s[0] for s in sampler.samples]
    ready = [s[1] for s in sampler.samples]
    assert len(sampler.samples) > 20
    assert min(ready) >= 3, f"fewer than 3 Ready pods in a sample: {sampler.samples}"
    assert max(live) <= 4, f"more than 4 pods (maxSurge 1) in a sample: {sampler.samples}"
    d = web.get("deploy", "web")
    assert d["status"]["updatedReplicas"] == 3 and d["status"]["availableReplicas"] == 3
    assert {c["type"]: c["reason"] for c in d["status"]["conditions"]} == {
        "Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
    rs = web.get("rs")["items"]
    assert sorted((x["spec"]["replicas"], x["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for x in rs) == [
        (0, "1"), (3, "2")]
    for x in rs:
        h = x["metadata"]["labels"]["pod-template-hash"]
        assert x["metadata"]["name"] == f"web-{h}" and x["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    hist = web.gk("rollout", "history", "deployment/web", "--repo", str(web.repo)).stdout
    assert "web v1" in hist and "web v2" in hist, hist
    table = web.gk("get", "deploy").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] and table[1].split()[:4] == ["web", "3/3", "3", "3"]
    print(f"\nrolling v1→v2: {took:.1f}s, {len(load.results)} requests, {len(load.failed)} failed, "
          f"pods max {max(live)}, Ready min {min(ready)} over {len(sampler.samples)} samples")


def test_broken_rollout_stops_and_is_undone(web):
    broken = deployment("v3", probe_path="/no-such-page", deadline=10)
    with Load(web.addresses) as load:
        r = _rollout(web, {"web.yaml": dump(SERVICE, broken)}, "web v3 (broken readiness)", expect_fail=True, timeout=90)
        assert 'deployment "web" exceeded its progress deadline' in r.stderr
        d = web.get("deploy", "web")
        prog = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
        assert (prog["status"], prog["reason"]) == ("False", "ProgressDeadlineExceeded")
        assert d["status"]["availableReplicas"] == 3 and d["status"]["updatedReplicas"] == 1
        # Kubernetes stops there; gitkube too without the annotation. Now opt in, Git still says v3:
        with_rollback = copy.deepcopy(broken)
        with_rollback["metadata"]["annotations"]["gitkube.io/rollback-on-failure"] = "true"
        web.commit({"web.yaml": dump(SERVICE, with_rollback)}, "web v3, rollback on failure")

        def rolled_back():
            rs = {x["metadata"]["name"]: x for x in web.get("rs")["items"]}
            bad = [x for x in rs.values() if x["metadata"].get("annotations", {}).get("gitkube.io/rolled-back-generation")]
            return bad and bad[0]["spec"]["replicas"] == 0 and (bad[0].get("status") or {}).get("replicas") == 0 and rs
        rs = eventually(rolled_back, 60, what="the failed ReplicaSet scaled to 0")
        eventually(lambda: (web.get("deploy", "web")["status"].get("readyReplicas") == 3) or None, 30, what="3 Ready")
        time.sleep(2)
    assert load.failed == [], f"{len(load.failed)} of {len(load.results)} failed: {load.failed[:5]}\n{_serve_tail(web)}"
    assert load.answers == {"v2"}, load.answers
    d = web.get("deploy", "web")
    assert d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/no-such-page"
    pods = [p for p in web.get("pods")["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 3 and {p["spec"]["containers"][0]["image"] for p in pods} == {"gitkube/guestbook-frontend:v2"}
    stable = [x for x in rs.values() if x["spec"]["replicas"] == 3]
    assert len(stable) == 1 and stable[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    ev = web.gk("events", "--for", "deployment/web").stdout
    sha = web.git("rev-parse", "HEAD~1").strip()
    assert "RolledBack" in ev and sha[:12] in ev, ev
    diff = web.gk("diff", *web.src(), "--objects-only", check=False)
    assert diff.returncode == 1 and "OutOfSync" in diff.stdout, diff.stdout + diff.stderr
    assert "rolled back" in web.gk("rollout", "history", "deployment/web", "--repo", str(web.repo)).stdout


def test_recreate_drops_requests(web):
    recreate = deployment("v1", strategy={"type": "Recreate"}, deadline=120)
    with Load(web.addresses) as load:
        time.sleep(1)
        _rollout(web, {"web.yaml": dump(SERVICE, recreate)}, "web v1 by Recreate", timeout=120)
        eventually(lambda: all(_get(u) == "v1" for u in _urls(web)), 30, what="only v1 on every NodePort")
        time.sleep(1)
    assert load.failed, f"Recreate stops every pod before starting new ones, yet no request failed ({len(load.results)})"
    assert load.answers <= {"v1", "v2"}
    print(f"\nrecreate v2→v1: {len(load.failed)} of {len(load.results)} requests failed")


def test_apply_wait_follows_rollouts_and_fails_past_the_deadline(web):
    web.serve.send_signal(signal.SIGTERM)
    web.serve.wait(timeout=60)
    web.commit({"web.yaml": dump(SERVICE, deployment("v2"))}, "web v2 by apply --wait")
    r = web.gk("apply", *web.src(), "--wait", "--timeout", "120", timeout=200)
    d = web.get("deploy", "web")
    assert d["status"]["updatedReplicas"] == 3 and d["status"]["availableReplicas"] == 3, (r.stderr, d["status"])
    assert d["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2")
    # A fresh process's pass (no probe result of its own yet) keeps the ready pods Ready and in the endpoints.
    web.gk("apply", *web.src(), timeout=200)
    pods = [p for p in web.get("pods").get("items") if p["metadata"]["labels"].get("app") == "rollout-web"]
    ready = [p["metadata"]["name"] for p in pods
             if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]
    assert len(pods) == 3 and len(ready) == 3, [(p["metadata"]["name"], p["status"].get("conditions")) for p in pods]
    subsets = web.get("endpoints", "web").get("subsets") or []
    assert sum(len(s.get("addresses") or []) for s in subsets) == 3 and not any(s.get("notReadyAddresses")
                                                                               for s in subsets), subsets
    web.commit({"web.yaml": dump(SERVICE, deployment("v3", probe_path="/no-such-page", deadline=6))}, "broken v3")
    r = web.gk("apply", *web.src(), "--wait", "--timeout", "120", check=False, timeout=200)
    assert r.returncode == 1 and "exceeded its progress deadline" in r.stderr, r.stderr[-2000:]
    web.commit({}, "no more web")
    web.gk("apply", *web.src(), "--wait", "--timeout", "120", timeout=200)
    assert web.get("deploy").get("items") == [] and web.get("rs").get("items") == []
    assert [p for p in web.get("pods").get("items") if p["metadata"]["labels"].get("app") == "rollout-web"] == []
