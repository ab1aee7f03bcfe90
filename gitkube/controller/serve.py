"""`gitkube serve`: the continuous control loop. Triggers only say "look again"; every pass is level-triggered."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

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


def serve(ctrl, args, on_event) -> int:
    """Run passes on every trigger (push, timer, probe change) until SIGTERM/SIGINT."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from gitkube.nodes.kubelet.probes import ProbeManager
    from gitkube.source.remote import is_remote, sync_mirror

    trigger = threading.Event()
    stop = threading.Event()

    def on_signal(signum, frame):
        log.info("received %s: stopping after the current pass", signal.Signals(signum).name)
        stop.set()
        trigger.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sched = BackgroundScheduler(daemon=True)
    remote = args.repo if is_remote(args.repo) else None
    if remote:
        mirror = os.path.join(args.state_dir, "mirror.git")

        def fetch():
            try:
                if sync_mirror(remote, mirror):
                    log.info("fetched new commits from %s", remote)
                    trigger.set()
            except Exception as e:  # noqa: BLE001 - a remote that is down is retried on the next interval
                log.warning("fetch from %s failed: %s (retrying in %ss)", remote, e, args.fetch_interval)

        fetch()
        ctrl.source.repo = mirror
        sched.add_job(fetch, "interval", seconds=args.fetch_interval, id="fetch", max_instances=1, coalesce=True)
    sched.add_job(trigger.set, "interval", seconds=args.resync, id="resync", max_instances=1, coalesce=True)
    usage_interval = getattr(args, "usage_interval", 15.0)
    if usage_interval and usage_interval > 0:  # resource usage (gitkube top, metrics.k8s.io, /metrics)
        from gitkube.controller.usage import UsageSampler

        ctrl.usage = UsageSampler(ctrl, usage_interval)
        sched.add_job(ctrl.usage.sample, "interval", seconds=usage_interval, id="usage", max_instances=1, coalesce=True)
    sched.start()
    observer = _watch(ctrl.source.repo, trigger)
    ctrl.probes = None
    trigger.set()
    log.info("serving %s (path %s, rev %s); resync every %ss; state in %s", remote or os.path.abspath(args.repo),
             args.path, args.rev or "checked-out branch", args.resync, args.state_dir)
    passes = 0
    try:
        while not stop.is_set():
            trigger.wait(timeout=args.resync)
            if stop.is_set():
                break
            trigger.clear()
            try:
                rep = ctrl.reconcile()
            except Exception as e:  # noqa: BLE001 - one failed pass must not end the loop
                log.exception("pass failed: %s", e)
                time.sleep(1)
                continue
            if ctrl.probes is None and ctrl.fleet is not None:
                ctrl.probes = ProbeManager(ctrl.fleet, ctrl.runtimes, on_event=on_event, wake=trigger.set)
            passes += 1
            summary = rep.summary()
            for p in rep.refused:
                log.warning("%s", p)
            (log.info if summary != "no changes" or passes == 1 else log.debug)(
                "pass %d at %s: %s (%.2fs)", passes, str(rep.sha)[:12], summary, rep.seconds)
    finally:
        sched.shutdown(wait=False)
        observer.stop()
    log.info("stopped after %d passes", passes)
    return 0
