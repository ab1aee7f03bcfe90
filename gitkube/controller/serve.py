"""`gitkube serve`: the continuous control loop. Triggers only say "look again"; every pass is level-triggered.
It wakes on a push (the watch on the refs), when the last plan says work is due (a back-off ending, a node's grace
period or eviction time), on a probe's readiness change, and at the latest every --resync seconds (the safety net)."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

from gitkube.nodes.fleetlock import FleetLocked

log = logging.getLogger("gitkube.serve")


def _git_dir(repo: str) -> str:
    dot = os.path.join(repo, ".git")
    return dot if os.path.isdir(dot) else repo


def _watch(repo: str, trigger: threading.Event):
    """Watch a repository's refs so that a commit or a push into it triggers a pass at once."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    gitdir = os.path.abspath(_git_dir(repo))

    class OnRefChange(FileSystemEventHandler):
        def on_any_event(self, event):
            # Reading refs (as every pass does) raises opened/closed events on inotify: only changes count,
            # else each pass would trigger the next one.
            if event.event_type not in ("created", "modified", "moved", "deleted"):
                return
            paths = [getattr(event, "src_path", ""), getattr(event, "dest_path", "") or ""]
            for p in paths:
                rel = os.path.relpath(p, gitdir) if p else ""
                if rel.startswith(("refs", "packed-refs", "HEAD")) and not rel.endswith(".lock"):
                    trigger.set()
                    return
            # A working tree that is not a git dir: any manifest change counts (plain directories)
            if gitdir == os.path.abspath(repo) and not os.path.isdir(os.path.join(repo, "refs")):
                trigger.set()

    obs = Observer()
    obs.schedule(OnRefChange(), gitdir, recursive=True)
    obs.daemon = True
    obs.start()
    return obs


def next_wake(now: float, last_pass: float, resync: float, due: float | None, min_gap: float = 0.2) -> float:
    """Seconds to sleep before the next pass unless a trigger comes: until the plan's next due time, at most until
    the periodic resync, and never less than `min_gap` (a due time already past is not a busy loop)."""
    until = last_pass + resync - now
    if due is not None:
        until = min(until, due - now)
    return max(min_gap, until)


def _remote_fetch(ctrl, args, sched, trigger: threading.Event, webhook=None) -> str | None:
    """With a remote --repo: fetch it into the state dir's mirror now and on every --fetch-interval (a fetch that
    brings commits triggers a pass); the controller reads the mirror. Returns the remote URL, or None. A webhook
    (gitkube.server.hooks) gets what a verified push runs: a fetch now (else, with a local --repo, a pass)."""
    from gitkube.source.remote import is_remote, sync_mirror

    remote = args.repo if is_remote(args.repo) else None
    if not remote:
        if webhook is not None:
            webhook.on_push = lambda: trigger.set() or True
        return None
    mirror = os.path.join(args.state_dir, "mirror.git")
    fetch_lock = threading.Lock()

    def fetch(raise_errors: bool = False) -> bool:
        with fetch_lock:  # the interval and a webhook delivery may fetch at once
            try:
                if sync_mirror(remote, mirror):
                    log.info("fetched new commits from %s", remote)
                    trigger.set()
                    return True
            except Exception as e:  # noqa: BLE001 - a remote that is down is retried on the next interval
                log.warning("fetch from %s failed: %s (retrying in %ss)", remote, e, args.fetch_interval)
                if raise_errors:
                    raise
            return False

    if webhook is not None:
        webhook.on_push = lambda: fetch(raise_errors=True)
    fetch()
    ctrl.source.repo = mirror
    sched.add_job(fetch, "interval", seconds=args.fetch_interval, id="fetch", max_instances=1, coalesce=True)
    return remote


def _sample_usage(ctrl, args, sched) -> None:
    """Resource usage (gitkube top, metrics.k8s.io, /metrics) sampled every --usage-interval by the scheduler."""
    usage_interval = getattr(args, "usage_interval", 15.0)
    if usage_interval and usage_interval > 0:
        from gitkube.controller.usage import UsageSampler

        ctrl.usage = UsageSampler(ctrl, usage_interval)
        # max_instances=2: a late sample returns at once (UsageSampler is one at a time) instead of a warning
        sched.add_job(ctrl.usage.sample, "interval", seconds=usage_interval, id="usage", max_instances=2, coalesce=True)


def _one_pass(ctrl, passes: int, gate=None):
    """One pass, logged (INFO when it changed something, DEBUG when it had nothing to do); None if it failed (or
    this serve stopped being the leader during it)."""
    try:
        rep = ctrl.reconcile()
    except FleetLocked as e:
        if passes <= 1:
            raise  # refused from the start: another installation manages these nodes
        log.error("pass refused: %s", e)
        return None
    except Exception as e:  # noqa: BLE001 - one failed pass must not end the loop: logged with its traceback
        if gate is not None and gate.fenced(e):
            return None
        log.exception("pass failed: %s", e)
        return None
    summary = rep.summary()
    for p in rep.refused:
        log.warning("%s", p)
    (log.info if summary != "no changes" or passes == 1 else log.debug)(
        "pass %d at %s: %s (%.2fs)", passes, str(rep.sha)[:12], summary, rep.seconds)
    return rep


def serve(ctrl, args, on_event, webhook=None) -> int:
    """Run passes on every trigger (push, due work, probe change, resync) until SIGTERM/SIGINT."""
    from apscheduler.schedulers.background import BackgroundScheduler

    trigger = threading.Event()
    stop = threading.Event()

    def on_signal(signum, frame):
        log.info("received %s: stopping after the current pass", signal.Signals(signum).name)
        stop.set()
        trigger.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sched = BackgroundScheduler(daemon=True)
    remote = _remote_fetch(ctrl, args, sched, trigger, webhook)
    _sample_usage(ctrl, args, sched)
    sched.start()
    observer = _watch(ctrl.source.repo, trigger)
    trigger.set()
    log.info("serving %s (path %s, rev %s); resync every %ss; state in %s", remote or os.path.abspath(args.repo),
             args.path, args.rev or "checked-out branch", args.resync, args.state_dir)
    passes = 0
    last_pass, due = time.time(), None
    gate = None
    if getattr(ctrl.store, "backend", "sqlite") == "etcd":  # two or more serves: only the leader acts
        from gitkube.controller.leader import LeaderGate

        gate = LeaderGate(ctrl, getattr(args, "lease_ttl", 5))
    try:
        while not stop.is_set():
            wait = next_wake(time.time(), last_pass, args.resync, due)
            woke = trigger.wait(timeout=wait if gate is None or gate.leading else min(wait, gate.poll))
            if stop.is_set():
                break
            if gate is not None:
                gate.step()
                if not gate.leading:
                    trigger.clear()  # a standby runs no pass; the leader does
                    continue
            trigger.clear()
            last_pass = time.time()
            log.debug("pass %d starting", passes + 1)
            rep = _one_pass(ctrl, passes + 1, gate)
            if rep is None:
                time.sleep(1)
                continue
            passes += 1
            due = rep.next_due
            ctrl.start_probes(on_event=on_event, wake=trigger.set)
            log.debug("pass %d woken by %s; next due %s", passes, "a trigger" if woke else "its timer",
                      f"in {due - time.time():.1f}s" if due else "-")
    finally:
        if gate is not None:
            gate.close()
        sched.shutdown(wait=False)
        observer.stop()
    log.info("stopped after %d passes", passes)
    return 0
