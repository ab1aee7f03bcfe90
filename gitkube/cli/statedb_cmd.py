"""`gitkube state check|rebuild`: the state DB's integrity, and rebuilding it from the nodes on request."""
from __future__ import annotations

import argparse
import sys

from gitkube.cli.common import add_source_args


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    st = sub.add_parser(
        "state", formatter_class=fmt, help="check the state DB, or rebuild it from the nodes",
        description="The state DB (state.db in --state-dir) holds objects, statuses, events and allocations between "
        "passes. The nodes are the ground truth: every container gitkube makes carries its pod's names, uids, owner, "
        "node, spec hash, restart count and Git revision, and the proxy's configuration carries the Services' "
        "ClusterIPs and NodePorts. A writer (apply, serve) that finds the DB missing, empty or corrupt says so in "
        "one line, moves a corrupt file aside as state.db.corrupt-<time>, and rebuilds from one list call per node "
        "plus the Git revision, adopting every running pod Git still wants (nothing restarted).")
    ssub = st.add_subparsers(dest="state_command", metavar="SUBCOMMAND", required=True)
    ck = ssub.add_parser("check", help="run SQLite's integrity check on the state DB",
                         description="Run SQLite's full integrity check (PRAGMA integrity_check) on the state DB and "
                         "decode every stored object. With an etcd --store: read the store (etcd checks its own "
                         "data) and say how many objects it holds and which revision is applied. Changes nothing.",
                         epilog="exit status: 0 intact (or absent), 1 corrupt (or the etcd store cannot be read)")
    ck.set_defaults(func=cmd_check)
    rb = ssub.add_parser(
        "rebuild", formatter_class=fmt, help="rebuild the state DB from the nodes and the Git revision",
        description="Move the current state DB aside (state.db.before-rebuild-<time>; a corrupt one as "
        "state.db.corrupt-<time>) and rebuild objects, pod statuses, bindings and Service allocations from one "
        "list call per node plus the Git revision. Running pods that Git still wants are adopted with their "
        "names and uids; nothing on the nodes is changed (the next apply removes only containers shown not to be "
        "wanted: owner gone from Git, or a duplicate of a pod running elsewhere). Containers of another "
        "installation (another cluster id) are reported and left alone. The SQLite store only: with an etcd "
        "--store, apply or serve rebuilds by itself when this installation's keys are gone from etcd.",
        epilog="exit status: 0 rebuilt, 2 error (state dir locked, revision or inventory unreadable, an etcd store)")
    add_source_args(rb)
    rb.set_defaults(func=cmd_rebuild)


def _etcd(args) -> bool:
    return str(getattr(args, "store", None) or "").startswith("etcd://")


def cmd_check(args) -> int:
    from gitkube.store import integrity_report

    if _etcd(args):  # etcd checks its own data (raft log and snapshots carry checksums): can it be read, and is it there
        from gitkube.store import open_store

        try:
            with open_store(args.state_dir, url=args.store) as st:
                n, applied = len(st.list()), st.applied_revision()
        except Exception as e:  # noqa: BLE001 - unreachable or no quorum: said in one line
            print(f"etcd store {args.store}: cannot be read: {e}")
            return 1
        print(f"etcd store {args.store}: {n} object(s), applied revision {str(applied or 'none')[:12]}"
              + ("" if applied else " (a writer finding this installation's keys gone rebuilds them from the nodes)"))
        return 0
    ok, line = integrity_report(args.state_dir)
    print(line)
    return 0 if ok else 1


def cmd_rebuild(args) -> int:
    from gitkube.cli.common import fail
    from gitkube.cli.run_cmds import _say, _source
    from gitkube.controller import Controller

    if _etcd(args):
        return fail("state rebuild moves the state dir's SQLite DB aside; with an etcd store, apply or serve rebuilds "
                    "from the nodes by itself when this installation's keys are gone from etcd", 2)
    ctrl = Controller(args.state_dir, _source(args), progress=_say, fresh_store=True)
    try:
        rep = ctrl.rebuild()
        if rep is None:
            return fail("the revision or the inventory could not be read; nothing was rebuilt", 2)
        for u in rep.unwanted:
            print(f"not wanted: pod {u.pod} ({u.pod_uid}) on node {u.node}: {u.why}", file=sys.stderr)
        print(f"state rebuilt from revision {str(rep.revision)[:12]}: {rep.summary()}")
        return 0
    finally:
        ctrl.close()
