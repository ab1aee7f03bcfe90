"""`gitkube sandbox`: a local test fleet of network-namespace nodes, each with its own sshd and dockerd."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path


def _sid(args) -> int:
    return int(args.id if args.id is not None else os.environ.get("GITKUBE_SANDBOX_ID", "0"))


def register(sub) -> None:
    p = sub.add_parser(
        "sandbox",
        help="a local test fleet (needs root): network namespaces with their own sshd and dockerd",
        description="Manage a local test fleet. Each node is a network namespace on a shared bridge with its own "
        "sshd and dockerd, reachable over real SSH with pinned host keys. All addresses are in 198.18.0.0/15: "
        "sandbox K puts node i at 198.18.K.(10+i) with pod subnet 198.18.(100+10K+i).0/24. `up` writes an "
        "inventory (printed) and loads the gitkube/busybox:latest and gitkube/pause:3 images into every node.",
    )
    p.add_argument("--id", type=int, default=None, help="sandbox number 0-9 (env GITKUBE_SANDBOX_ID, default 0); "
                   "several sandboxes can coexist")
    ss = p.add_subparsers(dest="sandbox_cmd", metavar="ACTION")
    up = ss.add_parser("up", help="create the fleet (idempotent) and print the inventory path",
                       description="Create or complete the fleet; running it twice is fine.")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes, 1-45 (default 3); prints the time it took "
                    "and the memory the nodes hold")
    up.add_argument("--no-images", action="store_true", help="do not load the base images into the nodes")
    up.set_defaults(func=cmd_up)
    dn = ss.add_parser("down", help="remove everything up made, and nothing else",
                       description="Stop each node's sshd and dockerd (and its containers), delete namespaces, links, "
                       "the bridge, routes, iptables rules and the sandbox directory.")
    dn.set_defaults(func=cmd_down)
    st = ss.add_parser("status", help="show the nodes and their processes", description="Show each node's state.")
    st.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    st.set_defaults(func=cmd_status)
    nd = ss.add_parser("node", help="stop|start|cut|heal one node, for fault tests",
                       description="stop/start: stop or start the node's dockerd and sshd. cut/heal: take its network "
                       "link down or up (its processes keep running).")
    nd.add_argument("name", help="node name, e.g. n2")
    nd.add_argument("action", choices=["stop", "start", "cut", "heal"])
    nd.set_defaults(func=cmd_node)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _sandbox(args):
    from gitkube.sandbox.netns import Sandbox

    return Sandbox(_sid(args))


def _fail(e) -> int:
    print(f"error: {e}", file=sys.stderr)
    return 2


def cmd_up(args) -> int:
    from gitkube.sandbox.netns import SandboxError

    sb = _sandbox(args)
    t0 = time.monotonic()
    try:
        inv = sb.up(args.nodes, progress=lambda m: print(m, file=sys.stderr))
    except SandboxError as e:
        return _fail(e)
    started = time.monotonic() - t0
    state = Path(args.state_dir)
    (state / "sandbox").mkdir(parents=True, exist_ok=True)
    copy = state / "sandbox" / "inventory.yaml"
    shutil.copyfile(inv, copy)
    if not args.no_images:
        from gitkube.nodes.transport.fleet import Fleet
        from gitkube.nodes.images.archive import busybox_image, pause_image
        from gitkube.nodes.images.ship import ship
        from gitkube.nodes.inventory import load_inventory

        fleet = Fleet(load_inventory(inv))
        try:
            ship(fleet, [pause_image(), busybox_image()], progress=lambda m: print(m, file=sys.stderr))
        except Exception as e:  # noqa: BLE001
            return _fail(f"loading base images: {e}")
        finally:
            fleet.close()
    mem = sb.memory()
    total = sum(mem.values())
    print(f"sandbox {sb.sid}: {len(mem)} node(s) up in {started:.1f}s (images included: "
          f"{time.monotonic() - t0:.1f}s); memory {total / 2**20:.0f} MiB, "
          f"{total / max(len(mem), 1) / 2**20:.0f} MiB per node", file=sys.stderr)
    print(copy)
    return 0


def cmd_down(args) -> int:
    from gitkube.sandbox.netns import SandboxError

    try:
        _sandbox(args).down(progress=lambda m: print(m, file=sys.stderr))
    except SandboxError as e:
        return _fail(e)
    copy = Path(args.state_dir) / "sandbox" / "inventory.yaml"
    if copy.exists():
        copy.unlink()
    return 0


def cmd_status(args) -> int:
    rows = _sandbox(args).status()
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no sandbox nodes")
        return 0
    print(f"{'NAME':6} {'ADDRESS':14} {'POD-CIDR':17} {'NETNS':6} {'DOCKERD':8} {'SSHD':6} LINK")
    for r in rows:
        yn = lambda b: "yes" if b else "no"  # noqa: E731
        print(f"{r['name']:6} {r['address']:14} {r['podCIDR']:17} {yn(r['netns']):6} {yn(r['dockerd']):8} {yn(r['sshd']):6} {r['link']}")
    return 0


def cmd_node(args) -> int:
    from gitkube.sandbox.netns import SandboxError

    sb = _sandbox(args)
    try:
        i = int(args.name.lstrip("n"))
        if i not in sb.recorded_nodes():
            return _fail(f"no sandbox node {args.name} (have: {', '.join(f'n{j}' for j in sb.recorded_nodes()) or 'none'})")
        {"stop": sb.stop_node, "start": sb.start_node, "cut": sb.cut, "heal": sb.heal}[args.action](i)
    except (SandboxError, ValueError) as e:
        return _fail(e)
    return 0
