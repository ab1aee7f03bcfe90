"""`gitkube top pods|nodes`: resource usage as kubectl top prints it, from the samples `serve` takes."""
from __future__ import annotations

import sys
import time

from gitkube.cli.common import fail

STALE_AFTER = 120.0  # seconds: older samples are printed with a warning (is `serve` running?)


def register(sub) -> None:
    tp = sub.add_parser("top", help="CPU and memory usage of pods or nodes (like kubectl top)",
                        description="Print the CPU (millicores) and memory (working set, Mi) of pods or nodes, as "
                        "`kubectl top` does. The figures are the latest sample `gitkube serve` took (every "
                        "--usage-interval seconds, default 15: one stats call per container over each node's SSH "
                        "connection); CPU is the average between its last two samples. The same figures are served "
                        "as metrics.k8s.io/v1beta1, so `kubectl top` works against `gitkube serve` too.")
    tsub = tp.add_subparsers(dest="top_kind", metavar="pods|nodes")
    pods = tsub.add_parser("pods", aliases=["pod", "po"], help="usage per pod (or per container)",
                           description="Usage per pod: NAME CPU(cores) MEMORY(bytes). Pods seen in one sample only "
                           "(just started) have no CPU figure yet and are left out, as with metrics-server.")
    pods.add_argument("name", nargs="?", help="only this pod")
    pods.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    pods.add_argument("-A", "--all-namespaces", action="store_true", help="pods of every namespace")
    pods.add_argument("-l", "--selector", help="label selector, e.g. name=frontend,tier!=cache")
    pods.add_argument("--containers", action="store_true", help="one line per container (POD NAME ...)")
    pods.add_argument("--sort-by", choices=("cpu", "memory"), help="sort by usage, highest first")
    pods.add_argument("--no-headers", action="store_true", help="no header line")
    pods.set_defaults(func=cmd_top_pods)
    nodes = tsub.add_parser("nodes", aliases=["node", "no"], help="usage per node with percentages",
                            description="Usage per node, the sum of gitkube's containers on it (pods and the "
                            "proxy/DNS), with percentages of the node's allocatable CPU and memory: NAME CPU(cores) "
                            "CPU(%%) MEMORY(bytes) MEMORY(%%).")
    nodes.add_argument("name", nargs="?", help="only this node")
    nodes.add_argument("-l", "--selector", help="label selector on the nodes' labels")
    nodes.add_argument("--sort-by", choices=("cpu", "memory"), help="sort by usage, highest first")
    nodes.add_argument("--no-headers", action="store_true", help="no header line")
    nodes.set_defaults(func=cmd_top_nodes)
    tp.set_defaults(func=lambda args: (tp.print_help(), 2)[1])


def _snapshot(store):
    from gitkube.controller.usage import stored_usage
    from gitkube.reconcile.podsync import parse_time

    snap = stored_usage(store)
    if not snap:
        raise SystemExit(fail("metrics not available yet: `gitkube serve` samples usage every --usage-interval "
                              "seconds (default 15); is it running on this state dir?", 1))
    t = parse_time(snap.get("timestamp"))
    if t is not None and time.time() - t > STALE_AFTER:
        print(f"warning: the latest usage sample is {int(time.time() - t)}s old; is `gitkube serve` running?",
              file=sys.stderr)
    return snap


def _selector(text):
    from gitkube.api.labels import parse_selector

    try:
        return parse_selector(text) if text else None
    except ValueError as e:
        raise SystemExit(fail(f"invalid selector {text!r}: {e}", 2)) from None


def _print(head, rows, args, sort_cols) -> None:
    from gitkube.api.printers import render_table
    from gitkube.api.quantity import parse_quantity

    if args.sort_by:
        col = sort_cols[args.sort_by]
        rows.sort(key=lambda r: parse_quantity(r[col]) if r[col] != "<unknown>" else -1, reverse=True)
    text = render_table(head, rows)
    if args.no_headers:
        text = "\n".join(text.splitlines()[1:])
    if text.strip():
        print(text.rstrip("\n"))


def cmd_top_pods(args) -> int:
    """Prints pod usage; exit 1 when there is none to print (as kubectl top)."""
    from gitkube.reconcile.usage import top_pod_rows
    from gitkube.store import open_store

    sel = _selector(args.selector)
    with open_store(args.state_dir, url=getattr(args, "store", None)) as store:
        snap = _snapshot(store)
        pods = store.list("Pod", namespace=None if args.all_namespaces else args.namespace, selector=sel)
    if args.name:
        pods = [p for p in pods if p["metadata"]["name"] == args.name]
        if not pods:
            return fail(f'pods "{args.name}" not found in namespace {args.namespace}', 1)
    head, rows = top_pod_rows(snap, pods, containers=args.containers, all_namespaces=args.all_namespaces)
    if not rows:
        return fail(f"metrics not available yet for {'pod ' + args.name if args.name else 'the pods chosen'} "
                    "(a pod needs two samples)" if pods else "No resources found", 1)
    off = (1 if args.all_namespaces else 0) + (1 if args.containers else 0)
    _print(head, rows, args, {"cpu": off + 1, "memory": off + 2})
    return 0


def cmd_top_nodes(args) -> int:
    """Prints node usage with percentages; exit 1 for an unknown node."""
    from gitkube.reconcile.usage import top_node_rows
    from gitkube.store import open_store

    sel = _selector(args.selector)
    with open_store(args.state_dir, url=getattr(args, "store", None)) as store:
        snap = _snapshot(store)
        nodes = store.list("Node", selector=sel)
    names = [n["metadata"]["name"] for n in nodes]
    if args.name:
        if args.name not in names:
            return fail(f'nodes "{args.name}" not found', 1)
        names = [args.name]
    head, rows = top_node_rows(snap, names)
    _print(head, rows, args, {"cpu": 1, "memory": 3})
    return 0
