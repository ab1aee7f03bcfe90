"""The real fleet every integration test runs on: `gitkube sandbox up` (network namespaces, sshd, dockerd)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SID = int(os.environ.get("GITKUBE_TEST_SANDBOX_ID", "1"))
NODES = 3
# GITKUBE_TEST_STORE=etcd runs every gitkube command of the suite on a 3-member etcd cluster (started once on
# loopback) instead of each state dir's SQLite file; each test module (or test, see STORE_PER_TEST) gets its own
# key prefix, so the tests stay as isolated from each other as their state dirs.
STORE = os.environ.get("GITKUBE_TEST_STORE", "sqlite")
# Every gitkube process of the suite checks each quiet pass it makes against a full plan (gitkube.controller.quiet)
# and fails loudly when that plan would have done anything.
os.environ.setdefault("GITKUBE_VERIFY_QUIET", "1")
_ETCD: list = []  # the session's EtcdCluster, started on first use


def _prereqs_missing() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root"
    for b in ("dockerd", "sshd", "busybox", "ip", "iptables"):
        if not (shutil.which(b) or os.path.exists(f"/usr/sbin/{b}")):
            return f"{b} is not installed"
    return None


def pytest_collection_modifyitems(config, items):
    why = _prereqs_missing()
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if why:
                if os.environ.get("CI"):
                    raise pytest.UsageError(f"CI must run the integration tests but {why}")
                item.add_marker(pytest.mark.skip(reason=why))


def gk(*args: str, state_dir: str | Path, check: bool = True, timeout: float = 300, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run the gitkube CLI as an operator would."""
    e = {**os.environ, "GITKUBE_SANDBOX_ID": str(SID), **(env or {})}
    r = subprocess.run([sys.executable, "-m", "gitkube", "--state-dir", str(state_dir), *args],
                       capture_output=True, text=True, timeout=timeout, env=e, cwd=cwd)
    if check and r.returncode != 0:
        raise AssertionError(f"gitkube {' '.join(args)} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def gk_json(*args, state_dir, **kw) -> dict:
    return json.loads(gk(*args, "-o", "json", state_dir=state_dir, **kw).stdout)


def eventually(fn, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll fn until it returns a truthy value; fail with the last value seen after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s; last seen: {last!r}")


@dataclass
class SandboxFleet:
    sid: int
    state_dir: Path
    inventory: Path

    def gk(self, *args, **kw):
        kw.setdefault("state_dir", self.state_dir)
        return gk(*args, **kw)

    def nsexec(self, node: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a command inside a node's network namespace (the view from that host)."""
        return subprocess.run(["nsenter", f"--net=/var/run/netns/gk{self.sid}-{node}", *argv],
                              capture_output=True, text=True, timeout=timeout)

    def node_address(self, node: str) -> str:
        return f"198.18.{self.sid}.{10 + int(node.lstrip('n'))}"

    def docker(self, node: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """The docker CLI against a node's engine directly (the test's own view, not gitkube's)."""
        sock = f"unix:///var/lib/gitkube/sandbox/gk{self.sid}/{node}/docker.sock"
        return subprocess.run(["docker", "-H", sock, *argv], capture_output=True, text=True, timeout=timeout)


def etcd_cluster_once(base: Path):
    """The session's 3-member etcd cluster on loopback (Debian's etcd), started on first use, killed at exit."""
    if not _ETCD:
        import atexit

        from gitkube.sandbox.etcd import EtcdCluster

        c = EtcdCluster(base, size=3).start()
        atexit.register(c.stop)
        _ETCD.append(c)
    return _ETCD[0]


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory):
    c = etcd_cluster_once(tmp_path_factory.mktemp("etcd"))
    yield c


@pytest.fixture(scope="module", autouse=True)
def _store_per_module(request, tmp_path_factory):
    """With GITKUBE_TEST_STORE=etcd: GITKUBE_STORE names the etcd cluster with this module's own key prefix."""
    if STORE != "etcd" or "integration" not in str(request.node.fspath):
        yield
        return
    c = etcd_cluster_once(tmp_path_factory.mktemp("etcd"))
    old = os.environ.get("GITKUBE_STORE")
    os.environ["GITKUBE_STORE"] = c.url(f"t-{request.module.__name__.rsplit('.', 1)[-1]}-{os.getpid()}")
    yield
    if old is None:
        os.environ.pop("GITKUBE_STORE", None)
    else:
        os.environ["GITKUBE_STORE"] = old


@pytest.fixture(autouse=True)
def _store_per_test(request):
    """Modules whose state is per test (STORE_PER_TEST = True) get a key prefix per test."""
    if STORE != "etcd" or not getattr(request.module, "STORE_PER_TEST", False):
        yield
        return
    old = os.environ["GITKUBE_STORE"]
    os.environ["GITKUBE_STORE"] = f"{old}-{request.node.name[:80]}"
    yield
    os.environ["GITKUBE_STORE"] = old


@pytest.fixture(scope="session")
def fleet(tmp_path_factory) -> SandboxFleet:
    state = tmp_path_factory.mktemp("gitkube-state")
    r = gk("sandbox", "up", "--nodes", str(NODES), state_dir=state, timeout=600)
    inv = Path(r.stdout.strip().splitlines()[-1])
    yield SandboxFleet(SID, state, inv)
    gk("sandbox", "down", state_dir=state, check=False, timeout=300)
