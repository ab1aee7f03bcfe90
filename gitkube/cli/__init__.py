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
    "gitkube.cli.rollout_cmd", # rollout status/history
    "gitkube.cli.api_cmds",    # api, kubeconfig (and the API server serve starts)
    "gitkube.cli.secret_cmd",  # secret encrypt
    "gitkube.cli.top_cmd",     # top pods|nodes (usage sampled by serve)
    "gitkube.cli.statedb_cmd", # state check/rebuild
    "gitkube.cli.lock_cmd",    # lock status/acquire/release
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
    p.add_argument(
        "--store",
        default=os.environ.get("GITKUBE_STORE") or None,
        metavar="URL",
        help="where state is kept: sqlite://DIR (the default, DIR being --state-dir: one controller) or "
        "etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (an etcd v3 cluster shared by two or more `serve`s: one leader, "
        "the others standby; PREFIX default gitkube) (env GITKUBE_STORE)",
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
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the one place every failure becomes a sentence
        return report_failure(e, args)
    return int(rc or 0)


# Exit status of a failure gitkube did not expect (a bug): a crash report file names the details.
EXIT_CRASH = 70


def expected_failure(e: BaseException) -> str | None:
    """The one-line (or problem-list) message for a failure gitkube expects (bad input, a corrupt or locked state
    DB, an unreachable node, Docker's refusals), or None when `e` is a bug that deserves a crash report."""
    import json
    import sqlite3

    from gitkube.api.errors import InvalidInput

    if isinstance(e, InvalidInput):
        return str(e)
    if isinstance(e, RecursionError):
        return "input nested too deeply to process (Python's recursion limit was reached)"
    if isinstance(e, sqlite3.DatabaseError):
        return (f"state DB: {e} (run `gitkube state check`; `gitkube state rebuild` rebuilds it from the nodes)")
    if isinstance(e, json.JSONDecodeError):
        return f"state DB holds unreadable data: {e} (run `gitkube state check`)"
    expected_types = []
    for mod, names in (("gitkube.store.db", ("StoreLocked", "StoreCorrupt", "ReadOnlyStore", "StoreURLError")),
                       ("gitkube.store.etcd", ("StoreUnavailable", "Fenced", "Conflict")),
                       ("gitkube.store.schema", ("SchemaTooNew",)),
                       ("gitkube.source.git", ("SourceError",)),
                       ("gitkube.source.secrets", ("IdentityError",)),
                       ("gitkube.nodes.transport.ssh", ("SSHError",)),
                       ("gitkube.nodes.transport.docker_api", ("APIError", "DockerUnavailable")),
                       ("gitkube.nodes.fleetlock", ("FleetLocked", "LockError")),
                       ("gitkube.nodes.dataplane.proxy", ("ProxyError",))):
        m = sys.modules.get(mod)  # a failure can only be of a type whose module was imported
        expected_types += [getattr(m, n) for n in names if m is not None and hasattr(m, n)]
    docker_errors = sys.modules.get("docker.errors")
    if docker_errors is not None:
        expected_types.append(docker_errors.DockerException)
    if isinstance(e, tuple(expected_types)):
        what = getattr(e, "explanation", None) or str(e) or type(e).__name__
        return f"{what}"
    if isinstance(e, OSError):  # a file, socket or connection the command needed
        if e.strerror and e.filename:
            return f"{e.filename}: {e.strerror}"
        return str(e) or type(e).__name__
    return None


def report_failure(e: BaseException, args) -> int:
    """Prints `error: …` and returns 2 for an expected failure; for anything else writes a crash report (the
    traceback, command line and versions) and names it, returning EXIT_CRASH."""
    msg = expected_failure(e)
    if msg is not None:
        print(f"error: {msg}", file=sys.stderr)
        return 2
    path = write_crash_report(e, getattr(args, "state_dir", None))
    print(f"error: unexpected {type(e).__name__}: {e}", file=sys.stderr)
    print(f"error: this is a gitkube bug; the crash report is {path}", file=sys.stderr)
    return EXIT_CRASH


def write_crash_report(e: BaseException, state_dir: str | None) -> str:
    """Writes the crash report into the state dir (or the temp dir if that is not writable); returns its path."""
    import platform
    import tempfile
    import time
    import traceback

    import gitkube

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = (f"gitkube {getattr(gitkube, '__version__', '?')} crash report {stamp}\n"
            f"command: {' '.join(sys.argv)}\npython: {platform.python_version()} on {platform.platform()}\n\n"
            + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    for d in (state_dir, tempfile.gettempdir()):
        if not d:
            continue
        path = os.path.join(d, f"crash-{stamp}-{os.getpid()}.txt")
        try:
            os.makedirs(d, exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return "(could not be written)"


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
