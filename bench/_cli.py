"""What the benches share: `gitkube` and `git` as subprocesses, and settling a controller into quiet passes. `gk` runs in the state dir's parent (a temp dir),
so no bench picks up the checkout's ./inventory.yaml by accident: each passes its inventory explicitly."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple


def gk(state: Path, *args: str, timeout: float = 600, check: bool = True,
       env: dict | None = None) -> subprocess.CompletedProcess:
    """`gitkube --state-dir STATE ARGS...` with this interpreter; exits the bench with its stderr when it fails."""
    r = subprocess.run([sys.executable, "-m", "gitkube", "--state-dir", str(state), *args], capture_output=True,
                       text=True, timeout=timeout, cwd=Path(state).parent, env=env)
    if check and r.returncode != 0:
        raise SystemExit(f"gitkube {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return r


def git(cwd: Path, *args: str) -> str:
    """`git ARGS...` in `cwd` as the bench's author; its stdout, stripped."""
    r = subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args], cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"git {args}: {r.stderr}")
    return r.stdout.strip()


def settle(ctrl, quiet_in_a_row: int = 3, limit: float = 20.0) -> None:
    """Passes until `quiet_in_a_row` in a row were quiet (gitkube.controller.quiet), for at most `limit` seconds: a
    new controller's first passes still take in what arrives late (each node's host identity, read in the
    background)."""
    t0, run = time.monotonic(), 0
    while run < quiet_in_a_row and time.monotonic() - t0 < limit:
        run = run + 1 if ctrl.reconcile().quiet else 0
        time.sleep(0.2)


class TimedPass(NamedTuple):
    wall: float  # seconds, as the caller waits
    report: object  # the PassReport
    calls: dict  # node -> Docker calls made in the pass
    cpu: float  # CPU seconds of the thread that ran the pass (the nodes' calls run on others)


def timed_passes(ctrl, count: int, full: bool = False, apart: float = 0.2) -> list[TimedPass]:
    """`count` reconcile passes `apart` seconds apart (as serve's are), each planned in full when `full` (as a pass
    whose inputs moved does). Wall time and the pass thread's CPU time differ by what the pass waited for: the
    nodes' answers, and on a loaded machine the run queue."""
    out = []
    for _ in range(count):
        if full:
            ctrl.quiet = None
        before = {n: ctrl.fleet[n].docker.calls for n in ctrl.fleet.names()}
        c0, t0 = time.thread_time(), time.perf_counter()
        rep = ctrl.reconcile()
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        out.append(TimedPass(wall, rep, {n: ctrl.fleet[n].docker.calls - before[n] for n in before}, cpu))
        time.sleep(apart)
    return out
