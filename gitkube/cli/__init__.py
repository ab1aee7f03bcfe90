"""gitkube command line: parse, call, print. Each command group lives in its own module with a register()."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that each define register(subparsers) -> None and set `func` on their parsers.
COMMAND_MODULES = [
    "gitkube.cli.state_cmds",  # validate, diff (objects), get, describe, events
    "gitkube.cli.run_cmds",    # apply, serve, logs, exec, images
    "gitkube.cli.sandbox_cmd", # sandbox up/down/status/node
    "gitkube.cli.images_cmd",  # images build/load/list
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gitkube",
        description="The core of Kubernetes v1, run GitOps-style on plain Docker hosts over SSH. "
        "Desired state is a Git revision of Kubernetes manifests; gitkube schedules, runs and "
        "watches the pods on the nodes of inventory.yaml.",
    )
    p.add_argument(
        "--state-dir",
        default=os.environ.get("GITKUBE_STATE_DIR", ".gitkube"),
        help="directory holding the state database, lock and sandbox files "
        "(env GITKUBE_STATE_DIR; default: .gitkube)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a command group not built yet
            if e.name != name:
                raise
            continue
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import logging

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        for noisy in ("paramiko", "urllib3", "docker", "apscheduler", "watchdog"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


def entry() -> None:
    """Console entry point: run a command, flush, and exit without waiting on library threads (SSH transports,
    pools) at interpreter shutdown, where a daemon thread touching a finalised module can crash the process."""
    import os

    try:
        rc = main()
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    entry()
