"""Guestbook on its own sandbox (id 2): images load time, `apply --wait` deploy time, and the time from the start of
the deploy to the first entry written through node 1's NodePort and read back through node 3's.

Run as root: python bench/bench_guestbook.py   (brings sandbox 2 up and tears it down at the end)"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _cli  # noqa: E402
from bench._cli import git  # noqa: E402

SID = int(os.environ.get("GITKUBE_BENCH_SANDBOX_ID", "2"))
NODEPORT = 30001


def gk(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """bench._cli.gk with this bench's sandbox id."""
    return _cli.gk(state, *args, timeout=timeout, env={**os.environ, "GITKUBE_SANDBOX_ID": str(SID)})


def url(node: int, **q) -> str:
    return f"http://198.18.{SID}.{10 + node}:{NODEPORT}/guestbook.php?{urllib.parse.urlencode(q)}"


def get_json(u: str) -> dict | None:
    try:
        with urllib.request.urlopen(u, timeout=5) as r:
            return json.loads(r.read().decode())
    except (OSError, ValueError):
        return None


def main() -> int:
    if os.geteuid() != 0:
        print("run as root (the sandbox needs network namespaces)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="gk-bench-guestbook-"))
    state = tmp / "state"
    try:
        t0 = time.monotonic()
        inv = gk(state, "sandbox", "--id", str(SID), "up").stdout.strip().splitlines()[-1]
        up = time.monotonic() - t0

        t0 = time.monotonic()
        gk(state, "images", "load", "all", "--inventory", inv)
        load = time.monotonic() - t0

        repo = tmp / "repo"
        (repo / "manifests").mkdir(parents=True)
        for f in (ROOT / "manifests" / "guestbook").glob("*.yaml"):
            shutil.copy(f, repo / "manifests" / f.name)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "guestbook")

        t0 = time.monotonic()
        gk(state, "apply", "--repo", str(repo), "--inventory", inv, "--wait", "--timeout", "240")
        deploy = time.monotonic() - t0

        value = f"bench-{int(time.time())}"
        first_write = first_read = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first_read is None:
            if first_write is None:
                if (get_json(url(1, cmd="set", key="messages", value=value)) or {}).get("message") == "Updated":
                    first_write = time.monotonic() - t0
            elif (get_json(url(3, cmd="get", key="messages")) or {}).get("data") == value:
                first_read = time.monotonic() - t0
            if first_read is None:
                time.sleep(0.1)

        print(f"sandbox {SID} up (3 nodes):                    {up:6.1f} s")
        print(f"images load all (6 images, 3 nodes):          {load:6.1f} s")
        print(f"guestbook apply --wait (6 pods, 3 services):  {deploy:6.1f} s")
        print("first write via n1 NodePort (from deploy):    " + (f"{first_write:6.1f} s" if first_write else "  none in 60 s"))
        print("first read back via n3 NodePort (from deploy):" + (f"{first_read:6.1f} s" if first_read else "  none in 60 s"))
        return 0 if first_read else 1
    finally:
        subprocess.run([sys.executable, "-m", "gitkube", "--state-dir", str(state), "sandbox", "--id", str(SID), "down"],
                       capture_output=True, timeout=300, cwd=ROOT)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
