"""`gitkube lock status|acquire|release`: the fleet lock on the nodes (which installation manages them)."""
from __future__ import annotations

import argparse
import sys
import time


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    lk = sub.add_parser(
        "lock", formatter_class=fmt, help="show, take or release the fleet lock on the nodes",
        description="Every node carries a small lock record (over SFTP, in the SSH user's home: "
        "~/.gitkube/fleet-lock-<docker engine id>.json) naming the gitkube installation that manages it: its "
        "cluster id (kept in --state-dir/cluster-id and labelled on every container), the holder "
        "(user@host:state-dir), the time and a reason. apply and serve take it on their first pass and refresh it; "
        "a controller of another installation (another state dir) is refused with the holder's name and reason. "
        "A lock that was not refreshed within its TTL has expired, but is still only broken on request "
        "(acquire --break-expired).")
    lsub = lk.add_subparsers(dest="lock_command", metavar="SUBCOMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--inventory", default="inventory.yaml", metavar="FILE",
                        help="node inventory (default: inventory.yaml)")
    common.add_argument("--node", action="append", metavar="NAME", help="only this node (repeatable; default: all)")
    s = lsub.add_parser("status", parents=[common], help="show each node's lock record",
                        description="Print each node's lock record: holder, cluster, time, reason, expiry.",
                        epilog="exit status: 0 no node is held by another installation, 1 some are, 2 error")
    s.set_defaults(func=cmd_lock)
    a = lsub.add_parser("acquire", parents=[common], help="take the lock on every node, with a reason",
                        description="Write this installation's lock record on each node (refused where another "
                        "installation holds it), with a reason others will see when they are refused.",
                        epilog="exit status: 0 held on every node, 1 refused somewhere, 2 error")
    a.add_argument("--reason", required=True, metavar="TEXT", help="why the fleet is held (shown to those refused)")
    a.add_argument("--ttl", type=float, default=None, metavar="S",
                   help="seconds until the lock expires unless refreshed (default 900; apply/serve refresh it)")
    a.add_argument("--break-expired", action="store_true",
                   help="replace another installation's lock where it has EXPIRED (a held one is never broken)")
    a.set_defaults(func=cmd_lock)
    r = lsub.add_parser("release", parents=[common], help="remove this installation's lock records",
                        description="Remove this installation's lock record from each node (another "
                        "installation's is left alone).", epilog="exit status: 0 released, 1 some were not ours")
    r.set_defaults(func=cmd_lock)


def cmd_lock(args) -> int:
    from gitkube.nodes.fleetlock import holder_name, manage
    from gitkube.nodes.inventory import load_inventory
    from gitkube.nodes.transport.fleet import Fleet
    from gitkube.reconcile.fleetlock import LockDecision, LockRecord
    from gitkube.store import Store

    nodes = load_inventory(args.inventory)
    if args.node:
        nodes = [n for n in nodes if n.name in set(args.node)]
    action = args.lock_command
    with Store.open(args.state_dir) as store:  # a reader: a running apply/serve keeps the writer lock
        cluster_id = store.cluster_id()
    if not cluster_id and action == "acquire":
        with Store.open(args.state_dir, writer=True) as store:  # a new installation gets its id
            cluster_id = store.cluster_id()
    fleet = Fleet(nodes)
    now = time.time()
    try:
        res = manage(fleet, [n.name for n in nodes], cluster_id, holder_name(args.state_dir, pid=False), action,
                     reason=getattr(args, "reason", ""), ttl=getattr(args, "ttl", None),
                     break_expired=getattr(args, "break_expired", False), now=now)
    finally:
        fleet.close()
    rc = 0
    for node, r in sorted(res.items()):
        if isinstance(r, Exception):
            print(f"{node}: error: {r}", file=sys.stderr)
            rc = 2
        elif isinstance(r, str):
            print(f"{node}: {r}")
            rc = max(rc, 1)
        elif r is None:
            print(f"{node}: not locked")
        elif isinstance(r, LockRecord):
            mine = " (this installation)" if r.cluster_id == cluster_id else ""
            print(f"{node}: {r.describe(now)}{mine}")
            rc = max(rc, 0 if mine else 1)
        elif isinstance(r, LockDecision):
            if r.refused:
                print(f"{node}: refused: {r.refused}")
                rc = max(rc, 1)
            else:
                broke = f" (broke the expired lock {r.broke.describe(now)})" if r.broke else ""
                print(f"{node}: held by {r.record.holder}: {r.record.reason}{broke}")
        else:
            print(f"{node}: {'released' if r else 'not locked'}")
    return rc
