"""`gitkube logs -l SELECTOR`: the logs of every pod a selector picks, followed at once with -f, each line
prefixed with `[pod/NAME/CONTAINER]` when asked (--prefix), as kubectl logs -l does."""
from __future__ import annotations

import re
import sys
import threading
import time

from gitkube.cli.common import fail

SELECTOR_TAIL = 10  # kubectl's default --tail with a selector


def parse_duration(text: str) -> float:
    """kubectl's --since: a Go duration such as 30s, 5m, 1h30m, 1.5h."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 5m, 1h30m")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def add_args(lg) -> None:
    """The options `logs` gains for many pods (the parser is the one in run_cmds)."""
    lg.add_argument("-l", "--selector", help="label selector: the logs of every pod it picks (then --tail defaults to "
                    f"{SELECTOR_TAIL}, as kubectl's)")
    lg.add_argument("--all-containers", action="store_true", help="every container of the pod(s), not only one")
    lg.add_argument("--prefix", action="store_true", help="prefix each line with [pod/NAME/CONTAINER]")
    lg.add_argument("--since", metavar="DURATION", help="only lines newer than DURATION (e.g. 30s, 5m, 1h)")
    lg.add_argument("--timestamps", action="store_true", help="each line starts with its RFC 3339 timestamp")
    lg.add_argument("--max-log-requests", type=int, default=5, metavar="N",
                    help="with -l and -f, follow at most N containers at once (default 5, as kubectl)")


def _sources(args, pods, fleet):
    from gitkube.nodes.kubelet.logstream import LogSource
    from gitkube.nodes.kubelet.podio import container_for

    out, missing = [], []
    for p in pods:
        node = (p.get("spec") or {}).get("nodeName")
        names = [c["name"] for c in p["spec"]["containers"]]
        if args.all_containers:
            chosen = names
        elif args.container:
            if args.container not in names:
                continue
            chosen = [args.container]
        else:
            chosen = names[:1]
        for c in chosen:
            try:
                cid = container_for(fleet[node], p["metadata"]["uid"], c, previous=args.previous) \
                    if node in fleet.nodes else None
            except Exception as e:  # noqa: BLE001 - one node that does not answer leaves the other pods' logs
                missing.append(f"pod/{p['metadata']['name']}/{c}: node {node}: {e}")
                continue
            if cid is None:
                missing.append(f"pod/{p['metadata']['name']}/{c}: container not found (waiting to start?)")
                continue
            out.append(LogSource(node, cid, p["metadata"].get("namespace") or "default", p["metadata"]["name"], c))
    return out, missing


def cmd_logs_many(args) -> int:
    """Logs of pods chosen by a selector (or one pod's containers with --all-containers); exit 1 when none."""
    from gitkube.api.labels import parse_selector
    from gitkube.nodes.inventory import load_inventory
    from gitkube.nodes.kubelet.logstream import log_kwargs, read_lines
    from gitkube.nodes.transport.fleet import Fleet
    from gitkube.store import open_store

    try:
        since = parse_duration(args.since) if args.since else None
        sel = parse_selector(args.selector) if args.selector else None
    except ValueError as e:
        return fail(str(e), 2)
    with open_store(args.state_dir, url=getattr(args, "store", None)) as store:
        pods = store.list("Pod", namespace=args.namespace, selector=sel) if sel is not None else \
            [p for p in [store.get("Pod", args.namespace, args.pod)] if p]
    pods = [p for p in pods if not p["metadata"].get("deletionTimestamp") and (p.get("spec") or {}).get("nodeName")]
    if not pods:
        return fail(f"no pods found for selector {args.selector!r} in namespace {args.namespace}" if sel is not None
                    else f'pods "{args.pod}" not found in namespace {args.namespace}', 1)
    wanted = {p["spec"]["nodeName"] for p in pods}
    fleet = Fleet([n for n in load_inventory(args.inventory) if n.name in wanted], call_timeout=30.0)
    try:
        srcs, missing = _sources(args, pods, fleet)
        for m in missing:
            print(f"warning: {m}", file=sys.stderr)
        if not srcs:
            return fail("no running container to read logs from", 1)
        tail = args.tail if args.tail >= 0 else (SELECTOR_TAIL if sel is not None else -1)
        kw = log_kwargs(tail, time.time() - since if since is not None else None, args.timestamps)
        if args.follow and len(srcs) > args.max_log_requests:
            return fail(f"you are attempting to follow {len(srcs)} log streams, but maximum allowed concurrency is "
                        f"{args.max_log_requests}, use --max-log-requests to increase the limit", 1)
        out = sys.stdout.buffer
        lock = threading.Lock()

        def sink(src, line: bytes) -> None:
            with lock:
                out.write((src.prefix.encode() + b" " if args.prefix else b"") + line)
                out.flush()

        if not args.follow:
            for s in srcs:
                for line in read_lines(fleet[s.node], s, kw):
                    sink(s, line)
            return 0
        return _follow_all(fleet, srcs, kw, sink)
    finally:
        fleet.close()


def _follow_all(fleet, srcs, kw, sink) -> int:
    from gitkube.nodes.kubelet.logstream import follow

    stop = threading.Event()
    errors: list[str] = []

    def run(s):
        try:
            follow(fleet[s.node], s, kw, sink, stop)
        except Exception as e:  # noqa: BLE001 - one stream ending does not end the others
            errors.append(f"{s.prefix}: {e}")

    threads = [threading.Thread(target=run, args=(s,), daemon=True, name=f"logs-{s.pod}") for s in srcs]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop.set()
        return 0
    for e in errors:
        print(f"warning: {e}", file=sys.stderr)
    return 0
