"""The commands that read desired and stored state: validate, diff, get, describe, events."""
from __future__ import annotations

import argparse
import os
import contextlib
import gc
import json
import sqlite3
import sys
from typing import Any

from gitkube.api import printers
from gitkube.api.errors import InvalidInput
from gitkube.cli.common import add_source_args, fail

def _kinds_help() -> str:
    from gitkube.api import resources as res

    return ", ".join(f"{r.plural} ({r.short_names[0]})" if r.short_names else r.plural for r in res.RESOURCES)


_KINDS_HELP = _kinds_help()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds validate, diff, status, get, describe and events to the gitkube command line. Over 60 lines: it is the
    commands' help text, one parser after the other, read as the `--help` pages are."""
    fmt = argparse.RawDescriptionHelpFormatter

    p = subparsers.add_parser(
        "validate", formatter_class=fmt, help="check that a revision's manifests are valid",
        description="Read the manifests of a Git revision and check every object as the API server would "
                    "(kubectl --validate=strict): known kinds and fields, types, names, quantities, defaults.\n"
                    "Every problem is printed on its own line as `path:line: field: message`.",
        epilog="exit status: 0 valid, 1 invalid, 2 the revision could not be read")
    add_source_args(p)
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser(
        "diff", formatter_class=fmt, help="show how a revision differs from the stored state",
        description="Compare the objects of a Git revision with those in the state DB and print, for each object "
                    "added, changed or removed, a unified diff of its normalised YAML. Defaults are filled on both "
                    "sides and store-owned fields (uid, creationTimestamp, generation, resourceVersion, status) are "
                    "left out, so only real changes show. Then the plan `apply` would execute now, computed by the "
                    "same code: objects it would prune (removed from Git), pods created, deleted, bound, evicted, and "
                    "each node's actions, headed by the plan's fingerprint. The nodes are observed (a heartbeat and "
                    "one container list each) and nothing is written, in the state DB or on any node.",
        epilog="exit status: 0 in sync, 1 differences found, 2 error (unreadable or invalid revision, bad state DB)")
    add_source_args(p)
    p.add_argument("--heartbeat-timeout", type=float, default=6.0, metavar="S",
                   help="wait up to S seconds for each node's heartbeat (SSH, then Docker info) before counting it "
                        "unreachable (default 6; a node this process has not reached yet gets at least 20 s: its first "
                        "heartbeat opens the SSH connection)")
    p.add_argument("--objects-only", action="store_true",
                   help="only compare objects; do not probe the nodes or compute the scheduling/node plan")
    p.add_argument("--offline", action="store_true",
                   help="plan from the store's last observation (stored Node conditions and pod statuses) without "
                        "contacting any node; the plan says so")
    p.set_defaults(func=cmd_diff)

    p = subparsers.add_parser(
        "status", formatter_class=fmt, help="sync and health status (Argo CD's words)",
        description="Print the revision applied; whether the stored objects are what the revision at the source "
                    "declares (Synced / OutOfSync, with what differs, or the refused revision and its problems); and "
                    "the health of what runs (Healthy / Progressing / Degraded, with the reasons: nodes not Ready or "
                    "unreachable, pods that cannot pull their image, crash-loop, fail or cannot be scheduled; pods "
                    "still starting). Health is read from the state DB as the last pass observed it: no node is "
                    "contacted.",
        epilog="exit status: 0 Synced and Healthy, 1 OutOfSync, refused, Progressing or Degraded, 2 error")
    add_source_args(p)
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser(
        "get", formatter_class=fmt, help="list objects from the state DB, kubectl-style",
        description=f"Print objects kept in the state DB as kubectl does (the same objects the API server serves).\n"
                    f"KINDS: {_KINDS_HELP}; several as KIND1,KIND2; `all` for pods, rcs, services, deployments and replicasets.",
        epilog="examples:\n  gitkube get pods -o wide\n  gitkube get rc frontend -o yaml\n"
               "  gitkube get svc -A -l app=guestbook\n  gitkube get pods,svc --show-labels\n"
               "  gitkube get pods --field-selector status.phase=Running\n  gitkube get pods -w\n"
               "  gitkube get pods -o json   # a v1 List")
    p.add_argument("kind", metavar="KIND", help="resource kind(s): KIND, KIND1,KIND2, all (KIND/NAME also accepted)")
    p.add_argument("names", metavar="NAME", nargs="*", help="object names (default: all)")
    _scope_args(p)
    p.add_argument("-l", "--selector", metavar="SELECTOR",
                   help="label selector: equality (app=web, tier!=db) and set-based (env in (a,b), !canary)")
    p.add_argument("--field-selector", metavar="SELECTOR",
                   help="field selector, e.g. status.phase=Running,spec.nodeName=n1 (metadata.name, "
                        "metadata.namespace and the fields the API server supports per kind)")
    p.add_argument("-o", "--output", choices=["wide", "json", "yaml", "name"],
                   help="wide: extra columns; json/yaml: Kubernetes-shaped objects (a List for several); "
                        "name: kind/name")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column (table output)")
    p.add_argument("--no-headers", action="store_true", help="leave out the header line (table output)")
    p.add_argument("-w", "--watch", action="store_true",
                   help="after the list, print each change (a row, or an object with -o json/yaml) until "
                        "interrupted or --timeout")
    p.add_argument("--timeout", type=float, metavar="S", help="with -w: stop watching after S seconds")
    p.add_argument("--inventory", default="inventory.yaml", metavar="FILE",
                   help="for nodes: the inventory whose nodes are probed live over SSH+Docker (default: inventory.yaml)")
    p.add_argument("--no-probe", action="store_true",
                   help="for nodes: show what the state DB last recorded instead of probing the nodes now")
    p.set_defaults(func=cmd_get)

    p = subparsers.add_parser(
        "describe", formatter_class=fmt, help="show one object in detail, with its events",
        description="Print a kubectl-like description of objects from the state DB, followed by their events.\n"
                    "KINDS: pods (po), replicationcontrollers (rc), deployments (deploy), replicasets (rs), services (svc), "
                    "nodes (no), namespaces (ns), configmaps (cm), secrets (keys and sizes only).")
    p.add_argument("kind", metavar="KIND", help="resource kind (KIND/NAME also accepted)")
    p.add_argument("names", metavar="NAME", nargs="*", help="object names (default: all in the namespace)")
    _scope_args(p)
    p.add_argument("--inventory", default="inventory.yaml", metavar="FILE",
                   help="for nodes: probe these inventory nodes live, as `get nodes` does (default: inventory.yaml)")
    p.add_argument("--no-probe", action="store_true",
                   help="for nodes: describe what the state DB last recorded instead of probing the nodes now")
    p.set_defaults(func=cmd_describe)

    p = subparsers.add_parser(
        "events", formatter_class=fmt, help="list events, oldest first",
        description="List recorded events (scheduling, container lifecycle, refused revisions…) oldest first; a "
                    "repeated event is shown once with its count.")
    _scope_args(p)
    p.add_argument("--for", dest="for_object", metavar="KIND/NAME",
                   help="only events about this object, e.g. pod/web or node/n1")
    p.add_argument("-o", "--output", choices=["json", "yaml"], help="print a v1 List of Event objects")
    p.set_defaults(func=cmd_events)


def _scope_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-n", "--namespace", default="default", metavar="NS", help="namespace (default: default)")
    g.add_argument("-A", "--all-namespaces", action="store_true", help="all namespaces")


def _open_reader(args):
    from gitkube.store import open_store

    return open_store(args.state_dir, writer=False, url=getattr(args, "store", None))


def _load(args):
    from gitkube.source import load_revision

    from gitkube.source.secrets import identity_path, load_identities

    return load_revision(args.repo, args.rev, args.path, extra_files=(args.inventory,),
                         identities=load_identities(identity_path(args.age_identity)), cache_dir=args.state_dir)


@contextlib.contextmanager
def _gc_paused():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# ---- validate / diff --------------------------------------------------------------------------------
def cmd_validate(args) -> int:
    """Decides whether a revision is valid: prints each problem, exit 0 valid / 1 invalid / 2 unreadable."""
    from gitkube.source import SourceError

    try:
        rev = _load(args)
    except SourceError as e:
        return fail(str(e), 2)
    if rev.problems:
        for problem in rev.problems:
            print(problem)
        print(f"revision {(rev.sha or '')[:12]} is invalid: {len(rev.problems)} problem(s)", file=sys.stderr)
        return 1
    counts = rev.kinds()
    detail = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"revision {(rev.sha or '')[:12]} is valid: {sum(counts.values())} object(s)" + (f" ({detail})" if detail else ""))
    return 0


def _object_changes(args, rev):
    """The object-level differences between the revision and the store, and the rollouts they would start
    (None: the store could not be read)."""
    from gitkube.cli.rollout_cmd import diff_notes

    # Thousands of small dicts would trigger many full GC passes that find no garbage: pause GC meanwhile.
    with _gc_paused():
        try:
            with _open_reader(args) as store:
                changes = _changes_in(store, rev)
                return changes, diff_notes(changes, store)
        except (sqlite3.Error, RuntimeError) as e:
            fail(f"cannot read the state DB in {args.state_dir}: {e}", 2)
            return None, None


def cmd_diff(args) -> int:
    """Decides whether the store is in sync with a revision: prints unified diffs and the plan apply would carry
    out, exit 0 same / 1 differs / 2 error."""
    from gitkube.reconcile.objdiff import render_changes, summarise
    from gitkube.source import SourceError

    try:
        rev = _load(args)
    except SourceError as e:
        return fail(str(e), 2)
    if rev.problems:
        for problem in rev.problems:
            print(problem, file=sys.stderr)
        return fail(f"revision {(rev.sha or '')[:12]} is invalid ({len(rev.problems)} problem(s)); nothing to diff", 2)
    changes, rollouts = _object_changes(args, rev)
    if changes is None:
        return 2
    sys.stdout.write(render_changes(changes, desired=f"git@{(rev.sha or '')[:12]}"))
    config_lines = _config_effects(changes, rev)
    if config_lines:
        print("# ConfigMaps and Secrets changed: who reads them")
        print("\n".join(config_lines))
    print(summarise(changes), file=sys.stderr)
    if rollouts:
        print("# rollouts")
        print("\n".join(rollouts))
    node_lines = [] if args.objects_only else _node_plan_lines(args)
    if node_lines is None:
        return 2
    if node_lines:
        print("\n".join(node_lines))
    return 1 if changes or len(node_lines) > 1 or rollouts else 0


def _config_effects(changes, rev) -> list[str]:
    """Lines naming the pods and controllers (anything with a pod template) that a ConfigMap/Secret change affects."""
    from gitkube.reconcile.configrefs import affected

    changed = [(c.kind, c.namespace or "default", c.name) for c in changes if c.kind in ("ConfigMap", "Secret")]
    if not changed:
        return []  # the revision's models are made only when needed (a cached revision has none yet)
    users = []
    for o in rev.objects:
        ns = o.metadata.namespace or "default"
        if o.kind == "Pod":
            users.append((o.kind, ns, o.metadata.name, o.spec))
        else:
            tmpl = getattr(getattr(o, "spec", None), "template", None)
            if tmpl is not None and getattr(tmpl, "spec", None) is not None:
                users.append((o.kind, ns, o.metadata.name, tmpl.spec))
    return affected(changed, users)


def _differing(rev, store) -> tuple[list[dict], list[dict]]:
    """The desired and stored Git objects that may differ: an object whose authored content hashes the same as
    what the store last synced is left out on both sides, so an unchanged revision costs a hash comparison."""
    digests = rev.digests()
    stored_digests = store.git_digests()
    same = {k for k, h in digests.items() if stored_digests.get(k) == h}
    desired = rev.documents(skip=same)
    others = [k for k in stored_digests if k not in same]
    if len(others) > 500:
        stored = [o for o in store.list(origin="git") if _dict_key(o) not in same]
    else:
        stored = [o for o in (store.get(*k) for k in others) if o is not None]
    return desired, stored


def _dict_key(obj: dict) -> tuple[str, str, str]:
    from gitkube.api.content import dict_key

    return dict_key(obj)


def _node_plan_lines(args) -> list[str] | None:
    """The plan `apply` would execute now (observe + plan, nothing written anywhere), its fingerprint first."""
    from gitkube.controller import Controller, Source
    from gitkube.reconcile.plan import render_plan

    if not os.path.exists(args.inventory) and not os.path.exists(os.path.join(args.repo, args.inventory)):
        print(f"note: no inventory ({args.inventory}): objects only, no scheduling or node plan", file=sys.stderr)
        return []
    ctrl = Controller(args.state_dir, Source(args.repo, args.rev, args.path, args.inventory, args.age_identity),
                      writer=False, probe_timeout=args.heartbeat_timeout, store_url=getattr(args, "store", None))
    try:
        obs, _ = ctrl.observe(offline=args.offline)
        if obs.refused_what == "inventory":
            for prob in obs.problems:
                print(prob, file=sys.stderr)
            fail("the inventory is invalid; fix it, or pass --objects-only to diff the objects alone", 2)
            return None
        plan = ctrl.plan(obs)
    finally:
        ctrl.close()
    lines = render_plan(plan)
    head = (f"# plan {plan.fingerprint}: what apply would do now"
            f"{' (offline: from the store, no node contacted)' if plan.offline else ''}; "
            f"`apply --plan-fingerprint {plan.fingerprint}` applies it only if it is still the plan")
    print(f"plan fingerprint: {plan.fingerprint}", file=sys.stderr)
    return [head] + [ln for ln in lines if not ln.startswith("# offline")]


def cmd_status(args) -> int:
    """Decides the sync and health status: prints them, exit 0 Synced and Healthy / 1 otherwise / 2 error."""
    summary = status_summary(args)
    if isinstance(summary, int):
        return summary
    print("\n".join(summary.lines()))
    from gitkube.cli.leader_cmd import leader_lines

    with _open_reader(args) as st:  # which store, and with etcd which serve leads
        print("\n".join(leader_lines(st)))
    return summary.exit_code


def status_summary(args, store=None):
    """The Summary of sync (revision vs store) and health (stored objects, as last observed); an exit code on error."""
    from gitkube.reconcile import health as hl
    from gitkube.source import SourceError

    try:
        rev = _load(args)
    except SourceError as e:
        return fail(str(e), 2)
    try:
        reader = contextlib.nullcontext(store) if store is not None else _open_reader(args)
        with reader as st:
            applied = st.applied_revision()
            objs = {k: st.list(k, namespace="*") for k in ("Pod", "Node", "ReplicationController")}
            heartbeats = st.kv_get("heartbeats", {}) or {}
    except (sqlite3.Error, RuntimeError) as e:
        return fail(f"cannot read the state DB in {args.state_dir}: {e}", 2)
    if rev.problems:
        sync = hl.SyncStatus(hl.OUT_OF_SYNC, applied, rev.sha, refused=tuple(str(p) for p in rev.problems))
    else:
        changes = _object_changes(args, rev)[0] if store is None else _changes_in(store, rev)
        if changes is None:
            return 2
        diffs = tuple(f"{ {'add': 'missing', 'change': 'differs', 'remove': 'to prune'}[c.action]}: {c.ref}"
                      for c in changes)
        sync = hl.SyncStatus(hl.OUT_OF_SYNC if diffs else hl.SYNCED, applied, rev.sha, diffs)
    return hl.Summary(sync, hl.health(objs["Pod"], objs["Node"], objs["ReplicationController"], heartbeats))


def _changes_in(store, rev):
    """The revision's objects that differ from the store's (only those whose authored content hashes differently
    are read and compared), controller-owned fields left out."""
    from gitkube.api.content import without_controller_fields
    from gitkube.reconcile.objdiff import object_changes

    desired, stored = _differing(rev, store)  # Secrets redacted: keys, sizes and keyed digests
    return object_changes(desired, without_controller_fields(stored, desired))


# ---- get / describe / events ------------------------------------------------------------------------
def _kind_and_names(args) -> tuple[str, bool, list[str]]:
    resource, names = args.kind, list(args.names)
    if "/" in resource:
        resource, first = resource.split("/", 1)
        names.insert(0, first)
    kind, namespaced = printers.resolve_resource(resource)
    return kind, namespaced, names


def _resources_and_names(args) -> tuple[list, list[str]]:
    """Decides the resources (KIND, KIND1,KIND2, all) and names a get asks for; KeyError names an unknown kind."""
    from gitkube.api import resources as res

    spec, names = args.kind, list(args.names)
    if "/" in spec:
        spec, first = spec.split("/", 1)
        names.insert(0, first)
    out = []
    for part in (p for p in spec.split(",") if p):
        for r in (res.in_category(part) if part == "all" else [res.resolve(part)]):
            if r not in out:
                out.append(r)
    if not out:
        raise KeyError(f'the server doesn\'t have a resource type "{spec}"')
    return out, names


def _message(e: BaseException) -> str:
    """An exception's message as written (a KeyError's str() would quote it)."""
    return str(e.args[0]) if e.args else str(e)


def _not_found(kind: str, name: str) -> None:
    from gitkube.api import resources as res

    print(f'Error from server (NotFound): {res.BY_KIND[kind].plural} "{name}" not found', file=sys.stderr)


def _dump(obj: Any, output: str) -> str:
    if output == "json":
        # kubectl's -o json: keys sorted, four spaces
        return json.dumps(obj, indent=4, ensure_ascii=False, sort_keys=True) + "\n"
    import yaml

    try:
        dumper = yaml.CSafeDumper
    except AttributeError:  # pragma: no cover
        dumper = yaml.SafeDumper
    return yaml.dump(obj, Dumper=dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _live_nodes(inventory: str, store) -> list[dict]:
    """Node objects from a probe of every inventory node now (bounded in time; unreachable ones NotReady)."""
    from gitkube.nodes.transport.fleet import Fleet, node_object
    from gitkube.nodes.inventory import load_inventory

    import dataclasses

    nodes = load_inventory(inventory)
    fleet = Fleet(nodes)
    try:
        probes = fleet.probe()
        # the host identity (bootID, machineID, systemUUID), which heartbeats read in the background
        ok = [n for n, p in probes.items() if p.ok and p.ids is None]
        for name, ids in (fleet.map(lambda h: h.host_ids(), ok, timeout=6.0) if ok else {}).items():
            if isinstance(ids, dict):
                probes[name] = dataclasses.replace(probes[name], ids=ids)
    finally:
        fleet.close()
    return [node_object(n, probes.get(n.name), store.get("Node", "", n.name)) for n in nodes]


def _probe_nodes(args) -> bool:
    return not getattr(args, "no_probe", True) and os.path.exists(getattr(args, "inventory", "") or "")


def _objects(store, args, r, ns) -> list[dict]:
    """The (served-shape) objects of one resource a get shows: nodes probed live when an inventory is at hand,
    everything else as the API server reads it (gitkube.server.query), selectors applied."""
    from gitkube.server import query

    if r.kind == "Node" and _probe_nodes(args):
        fields = query.parse_field_selector(args.field_selector, r.kind)
        objs = [printers.kube_object(o) for o in _live_nodes(args.inventory, store)]
        return [o for o in objs if query.matches(o, args.selector, fields)]
    return query.select(store, r, ns if r.namespaced else None, args.selector, args.field_selector)


def _pick(objects: list[dict], names: list[str], kind: str) -> tuple[list[dict], int]:
    if not names:
        return objects, 0
    by_name = {o["metadata"]["name"]: o for o in objects}
    rc = 0
    picked = []
    for name in names:
        if name in by_name:
            picked.append(by_name[name])
        else:
            _not_found(kind, name)
            rc = 1
    return picked, rc


def _table_text(r, objects: list[dict], args, prefix: bool, headers_too: bool = True) -> str:
    """kubectl's table of one kind: NAMESPACE with -A, kind/ prefixes when several kinds print, LABELS."""
    headers, rows = printers.table_rows(r.kind, objects, wide=args.output == "wide",
                                        all_namespaces=bool(args.all_namespaces and r.namespaced))
    if prefix and "NAME" in headers:
        i = headers.index("NAME")
        rows = [row[:i] + [f"{r.qualified_name}/{row[i]}"] + row[i + 1:] for row in rows]
    if args.show_labels:
        headers = headers + ["LABELS"]
        rows = [row + [printers._labels_text((o.get("metadata") or {}).get("labels"))] for o, row in zip(objects, rows)]
    text = printers.render_table(headers, rows)
    if args.no_headers or not headers_too:
        text = text.split("\n", 1)[1]
    return text


def cmd_get(args) -> int:
    """Prints stored objects as kubectl get does; exit 1 when a named object is missing."""
    from gitkube.server import query

    try:
        resources, names = _resources_and_names(args)
        query.label_matcher(args.selector)
        for r in resources:
            query.parse_field_selector(args.field_selector, r.kind)
    except (KeyError, ValueError) as e:
        return fail(_message(e), 1)
    if args.watch and args.output == "name":
        return fail("-w prints rows or objects: use it with the default, wide, json or yaml output", 1)
    ns_wanted = None if args.all_namespaces else args.namespace
    rc = 0
    found: list[tuple[Any, list[dict]]] = []
    with _open_reader(args) as store:
        since = store.resource_version()
        for r in resources:
            try:
                objs = _objects(store, args, r, ns_wanted)
            except InvalidInput as e:
                for prob in e.problems:
                    print(prob, file=sys.stderr)
                return fail(f"inventory {args.inventory} is invalid; fix it or pass --no-probe", 2)
            objs, missing = _pick(objs, names, r.kind)
            rc = rc or missing
            found.append((r, objs))
    rc = _print_found(args, found, names, ns_wanted) or rc
    if args.watch:
        _watch(args, [r for r, _ in found], names, ns_wanted, since, printed=any(o for _, o in found))
    return rc


def _print_found(args, found: list, names: list[str], ns: str | None) -> int:
    out = args.output
    everything = [o for _, objs in found for o in objs]
    if out in ("json", "yaml"):
        if len(names) == 1 and len(found) == 1 and everything:
            sys.stdout.write(_dump(everything[0], out))
        elif not names or everything:
            sys.stdout.write(_dump(printers.list_object(everything), out))
        return 0
    if out == "name":
        for o in everything:
            print(printers.object_name(o))
        return 0
    if not everything:
        if not names:
            where = f" in {ns} namespace" if ns and any(r.namespaced for r, _ in found) else ""
            print(f"No resources found{where}.", file=sys.stderr)
        return 0
    texts = [_table_text(r, objs, args, prefix=len(found) > 1) for r, objs in found if objs]
    sys.stdout.write("\n".join(texts))
    sys.stdout.flush()
    return 0


def _watch(args, resources: list, names: list[str], ns: str | None, since: int, printed: bool) -> None:
    """-w: after the list, each change to a listed kind as a row (or an object), until interrupted or --timeout."""
    import time

    from gitkube.server import query

    by_kind = {r.kind: r for r in resources}
    deadline = time.monotonic() + args.timeout if args.timeout else None
    headers_done = printed
    with _open_reader(args) as store:
        try:
            while deadline is None or time.monotonic() < deadline:
                changes = store.changes_since(since, kinds=list(by_kind))
                for c in changes:
                    since = c["rv"]
                    r = by_kind[c["kind"]]
                    obj = printers.kube_object(c["object"])
                    if (ns is not None and r.namespaced and c["namespace"] != ns) or (names and c["name"] not in names):
                        continue
                    if not query.matches(obj, args.selector, query.parse_field_selector(args.field_selector, r.kind)):
                        continue
                    if args.output in ("json", "yaml"):
                        sys.stdout.write(_dump(obj, args.output))
                    else:
                        sys.stdout.write(_table_text(r, [obj], args, prefix=len(resources) > 1,
                                                     headers_too=not headers_done))
                        headers_done = True
                    sys.stdout.flush()
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass


def cmd_describe(args) -> int:
    """Prints kubectl-like descriptions of stored objects with their events; exit 1 when one is missing."""
    try:
        kind, namespaced, names = _kind_and_names(args)
    except KeyError as e:
        return fail(_message(e), 1)
    if kind in ("Event", "Endpoints"):
        return fail(f"describe does not support {kind}; use `gitkube get {kind.lower()}s -o yaml`", 1)
    ns = None if (args.all_namespaces or not namespaced) else args.namespace
    rc = 0
    pages = []
    with _open_reader(args) as store:
        # Nodes tell the same story `get nodes` does: probed now when an inventory is at hand, else as recorded.
        live = ({o["metadata"]["name"]: o for o in _live_nodes(args.inventory, store)}
                if kind == "Node" and _probe_nodes(args) else None)
        if names:
            objects = []
            for name in names:
                obj = live.get(name) if live is not None else store.get(kind, ns or "default", name) if not args.all_namespaces else next(
                    (o for o in store.list(kind) if o["metadata"]["name"] == name), None)
                if obj is None:
                    _not_found(kind, name)
                    rc = 1
                else:
                    objects.append(obj)
        else:
            objects = list(live.values()) if live is not None else store.list(kind, namespace=ns)
        for obj in objects:
            pages.append(_describe_one(store, kind, obj))
    if not objects and not names:
        print(f"No resources found{f' in {ns} namespace' if ns else ''}.", file=sys.stderr)
    sys.stdout.write("\n\n".join(p.rstrip("\n") for p in pages) + ("\n" if pages else ""))
    return rc


def _describe_one(store, kind: str, obj: dict) -> str:
    meta = obj["metadata"]
    events = store.events(involved=obj)
    if kind == "Pod":
        return printers.describe_pod(obj, events)
    if kind == "ReplicationController":
        from gitkube.api import Selector

        sel = Selector.from_dict((obj.get("spec") or {}).get("selector") or {})
        pods = [p for p in store.list("Pod", namespace=meta.get("namespace", "default"), selector=sel)
                if not p["metadata"].get("deletionTimestamp")] if not sel.empty() else []
        return printers.describe_rc(obj, pods, events)
    if kind in ("Deployment", "ReplicaSet"):
        rss = [r for r in store.list("ReplicaSet", namespace=meta.get("namespace", "default"))
               if any(o.get("uid") == meta.get("uid") for o in r["metadata"].get("ownerReferences") or [])]
        return printers.describe_deployment(obj, rss, events)
    if kind == "Service":
        ep = store.get("Endpoints", meta.get("namespace", "default"), meta["name"])
        return printers.describe_service(obj, ep, events)
    if kind == "Node":
        pods = [p for p in store.list("Pod") if (p.get("spec") or {}).get("nodeName") == meta["name"]]
        return printers.describe_node(obj, pods, events)
    if kind == "ConfigMap":
        return printers.describe_configmap(obj, events)
    if kind == "Secret":
        return printers.describe_secret(obj, events)
    return printers.describe_namespace(obj, events)


def cmd_events(args) -> int:
    """Prints events oldest first (LAST SEEN TYPE REASON OBJECT MESSAGE), optionally for one object."""
    ns = None if args.all_namespaces else args.namespace
    involved = None
    if args.for_object:
        resource, _, name = args.for_object.partition("/")
        try:
            kind, namespaced = printers.resolve_resource(resource)
        except KeyError as e:
            return fail(_message(e), 1)
        if not name:
            return fail("--for takes KIND/NAME, e.g. pod/web", 1)
        involved = (kind, (args.namespace if namespaced else ""), name)
        ns = None
    with _open_reader(args) as store:
        events = store.events(involved=involved, namespace=ns)
    if args.output:
        sys.stdout.write(_dump(printers.list_object(events), args.output))
        return 0
    if not events:
        print(f"No events found{f' in {ns} namespace' if ns else ''}.", file=sys.stderr)
        return 0
    headers, rows = printers.table_rows("Event", events, all_namespaces=args.all_namespaces)
    sys.stdout.write(printers.render_table(headers, rows))
    return 0
