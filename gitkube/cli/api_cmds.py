"""`api` (the read-only API server alone) and `kubeconfig`; and the API server that `serve` starts beside its loop."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

from gitkube.cli.common import add_source_args, fail

log = logging.getLogger("gitkube.api")

LISTEN_HELP = ("where the Kubernetes API listens, HOST:PORT (default 127.0.0.1:6443; port 0 picks a free one). "
               "Beyond loopback it serves HTTPS with a self-signed certificate and requires the bearer token "
               "(both kept in STATE_DIR/api/; `gitkube kubeconfig` prints them for kubectl)")


def add_api_args(p, serve: bool = False) -> None:
    """--api-listen and --api-tls (and --no-api for serve)."""
    from gitkube.server.listener import DEFAULT_LISTEN

    g = p.add_argument_group("API server (read-only Kubernetes API for kubectl and the official clients)")
    g.add_argument("--api-listen", default=DEFAULT_LISTEN, metavar="HOST:PORT", help=LISTEN_HELP)
    g.add_argument("--api-tls", action="store_true",
                   help="serve HTTPS with the bearer token required even on loopback")
    if serve:
        g.add_argument("--no-api", action="store_true", help="do not serve the API (the control loop alone)")


def register(sub) -> None:
    ap = sub.add_parser(
        "api", help="serve the read-only Kubernetes API of a state dir (no writer lock)",
        description="Serve the Kubernetes API (discovery, list/get/watch with label and field selectors, Tables, "
        "pods/log) over the state DB, read-only and without the writer lock, so it can run beside `gitkube apply` "
        "or after `serve` stopped. `gitkube serve` runs the same server by itself. Writes are refused: desired "
        "state is the Git repository. Stops on SIGTERM/SIGINT.",
        epilog="example:\n  gitkube api &\n  KUBECONFIG=<(gitkube kubeconfig) kubectl get pods -o wide")
    add_source_args(ap)
    add_api_args(ap)
    ap.set_defaults(func=cmd_api)

    kc = sub.add_parser(
        "kubeconfig", help="print a kubeconfig for this state dir's API server",
        description="Print a kubeconfig (YAML) for the API server of this state dir: the address it listens on "
        "(as the running server recorded it, else --server or http://127.0.0.1:6443), and for HTTPS its "
        "certificate and bearer token.",
        epilog="example:\n  KUBECONFIG=<(gitkube kubeconfig) kubectl get pods\n"
               "  gitkube kubeconfig > ~/.kube/gitkube.yaml")
    kc.add_argument("--server", metavar="URL", help="address to put in the kubeconfig instead of the recorded one")
    kc.set_defaults(func=cmd_kubeconfig)


class InventoryReader:
    """The nodes of the inventory as `apply` reads it (from the revision when it holds the file, else from disk),
    re-read at most every `ttl` seconds: what pods/log uses to reach a pod's node."""

    def __init__(self, repo: str, rev: str | None, path: str, inventory: str, ttl: float = 10.0):
        self.repo, self.rev, self.path, self.inventory, self.ttl = repo, rev, path, inventory, ttl
        self._cached: tuple[float, list] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> list:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl:
                return self._cached[1]
            nodes = self._read()
            self._cached = (time.monotonic(), nodes)
            return nodes

    def _read(self) -> list:
        from gitkube.nodes.inventory import load_inventory

        if os.path.exists(self.inventory):
            return load_inventory(self.inventory)
        from gitkube.source import load_revision

        rev = load_revision(self.repo, self.rev, self.path, extra_files=(self.inventory,))
        text = (rev.files or {}).get(self.inventory)
        return load_inventory(self.inventory, text=text.decode() if isinstance(text, bytes) else text)


def desired_state_text(args) -> str:
    """How a refused write names the desired state: the repository and the manifests' path in it."""
    from gitkube.source.remote import is_remote

    repo = args.repo if is_remote(args.repo) else os.path.abspath(args.repo)
    return f"the Git repository {repo} ({args.path}/{'@' + args.rev if args.rev else ''})"


def start_api(args, nodes=None, webhook=None):
    """Start the API server for a command's arguments; returns it (call .stop()), or None when --no-api."""
    from gitkube.server.context import ApiContext
    from gitkube.server.listener import ApiServer

    if getattr(args, "no_api", False):
        return None
    ctx = ApiContext(args.state_dir, desired_state_text(args),
                     nodes=nodes or InventoryReader(args.repo, args.rev, args.path, args.inventory),
                     store_url=getattr(args, "store", None), webhook=webhook)
    server = ApiServer(ctx, args.api_listen, tls=args.api_tls)
    server.start()
    return server


def cmd_api(args) -> int:
    from gitkube.server.listener import ListenError

    try:
        server = start_api(args)
    except ListenError as e:
        return fail(str(e), 2)
    except OSError as e:
        return fail(f"cannot serve the API on {args.api_listen}: {e.strerror or e}", 2)
    print(f"gitkube api: serving {server.url} (read-only); KUBECONFIG=<(gitkube --state-dir {args.state_dir} "
          f"kubeconfig) kubectl get pods", flush=True)
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.stop()
    return 0


def cmd_kubeconfig(args) -> int:
    from gitkube.server.listener import kubeconfig

    print(kubeconfig(args.state_dir, args.server), end="")
    return 0


def start_beside_serve(args, webhook=None):
    """For `serve`: the API server beside the loop. One that cannot bind (the port taken) is logged and the loop
    runs without it: the control loop is serve's job, the API a view of it."""
    from gitkube.server.listener import ListenError

    try:
        return start_api(args, webhook=webhook)
    except ListenError:
        raise
    except OSError as e:
        log.error("API server not started on %s: %s (serve goes on without it; pick another --api-listen)",
                  args.api_listen, e.strerror or e)
        return None
