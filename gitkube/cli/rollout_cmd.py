"""`gitkube rollout status|history deployment/NAME`: follow a Deployment's rollout, list its revisions."""
from __future__ import annotations

import argparse
import sys
import time

from gitkube.api import printers
from gitkube.api.views import PodView
from gitkube.cli.common import fail


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("rollout", formatter_class=fmt, help="follow a Deployment's rollout and list its revisions",
                       description="Rollouts of Deployments (apps/v1), as kubectl rollout does. A rollout is carried "
                       "out by the reconcile passes of `gitkube serve` (or `gitkube apply --wait`); these commands "
                       "read the state DB.")
    ss = p.add_subparsers(dest="rollout_cmd", metavar="ACTION")

    st = ss.add_parser("status", formatter_class=fmt, help="wait until a rollout completes or exceeds its deadline",
                       description="Print the rollout's progress as it changes until it completes (exit 0) or its "
                       "Deployment reports Progressing=False, ProgressDeadlineExceeded (exit 1), as kubectl rollout "
                       "status does. The rollout itself advances only while `gitkube serve` (or `apply --wait`) runs "
                       "on this state dir.",
                       epilog="exit status: 0 rolled out, 1 progress deadline exceeded (or --timeout), 2 error\n"
                              "example: gitkube rollout status deployment/frontend")
    _target(st)
    st.add_argument("-w", "--watch", default="true", choices=["true", "false"],
                    help="keep waiting until the rollout finishes (default true); false: print the status once")
    st.add_argument("--timeout", type=float, default=0, metavar="S",
                    help="give up after S seconds, exit 1 (default 0: no limit)")
    st.set_defaults(func=cmd_status)

    hi = ss.add_parser("history", formatter_class=fmt, help="list a Deployment's revisions",
                       description="List the revisions of a Deployment: one per ReplicaSet it owns "
                       "(deployment.kubernetes.io/revision), with the Git commit that introduced it, its images, its "
                       "replicas and the change cause (the kubernetes.io/change-cause annotation, else the commit's "
                       "subject when --repo is a Git repository).",
                       epilog="example: gitkube rollout history deployment/frontend --repo .")
    _target(hi)
    hi.add_argument("--repo", default=".", help="Git repository whose commit subjects serve as change cause "
                    "(default: .)")
    hi.add_argument("--revision", type=int, metavar="N", help="only revision N, with its pod template")
    hi.set_defaults(func=cmd_history)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _target(p) -> None:
    p.add_argument("target", metavar="deployment/NAME", help="the Deployment (deployment/NAME, deploy/NAME or NAME)")
    p.add_argument("-n", "--namespace", default="default", metavar="NS", help="namespace (default: default)")


def _name(target: str) -> str | None:
    kind, _, name = target.rpartition("/")
    if kind and kind.lower() not in ("deployment", "deployments", "deploy", "deployment.apps"):
        return None
    return name


def cmd_status(args) -> int:
    """Polls the stored Deployment's status: exit 0 rolled out, 1 deadline exceeded or timed out."""
    from gitkube.store import open_store

    name = _name(args.target)
    if not name:
        return fail(f"rollout status supports deployments only, not {args.target!r}", 2)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    last = None
    while True:
        with open_store(args.state_dir, url=getattr(args, "store", None)) as store:
            d = store.get("Deployment", args.namespace, name)
        if d is None:
            return fail(f'Error from server (NotFound): deployments.apps "{name}" not found', 1)
        done, failed, msg = printers.rollout_status(d)
        if failed:
            return fail(f"error: {msg}", 1)
        if msg != last:
            print(msg, flush=True)
            last = msg
        if done:
            return 0
        if args.watch == "false":
            return 0
        if deadline is not None and time.monotonic() > deadline:
            return fail(f"error: timed out waiting for the rollout of deployment {name!r}", 1)
        time.sleep(0.5)


def _subjects(repo: str, shas: set[str]) -> dict[str, str]:
    """The first line of each commit's message, for the shas the repository has."""
    out: dict[str, str] = {}
    try:
        from gitkube.source.git import open_repo

        r = open_repo(repo)
    except Exception:  # noqa: BLE001 - no repository here: no subjects
        return out
    for sha in shas:
        try:
            out[sha] = r[sha.encode()].message.decode("utf-8", "replace").strip().splitlines()[0]
        except Exception:  # noqa: BLE001 - unknown commit, or one without a message
            continue
    return out


def cmd_history(args) -> int:
    """Prints REVISION GIT-COMMIT IMAGES REPLICAS CHANGE-CAUSE for every ReplicaSet of the Deployment."""
    from gitkube.store import open_store

    name = _name(args.target)
    if not name:
        return fail(f"rollout history supports deployments only, not {args.target!r}", 2)
    with open_store(args.state_dir, url=getattr(args, "store", None)) as store:
        d = store.get("Deployment", args.namespace, name)
        if d is None:
            return fail(f'Error from server (NotFound): deployments.apps "{name}" not found', 1)
        uid = d["metadata"].get("uid")
        rss = [r for r in store.list("ReplicaSet", namespace=args.namespace)
               if any(o.get("uid") == uid and o.get("controller") for o in r["metadata"].get("ownerReferences") or [])]
    def ann(r):
        return r["metadata"].get("annotations") or {}

    def rev(r):
        try:
            return int(ann(r).get("deployment.kubernetes.io/revision", "0"))
        except ValueError:
            return 0
    rss.sort(key=rev)
    subjects = _subjects(args.repo, {ann(r)["gitkube.io/git-commit"] for r in rss if ann(r).get("gitkube.io/git-commit")})
    if args.revision is not None:
        rss = [r for r in rss if rev(r) == args.revision]
        if not rss:
            return fail(f"error: unable to find the specified revision {args.revision}", 1)
    print(f"deployment.apps/{name}")
    rows = []
    for r in rss:
        commit = ann(r).get("gitkube.io/git-commit") or ""
        cause = ann(r).get("kubernetes.io/change-cause") or subjects.get(commit) or printers.NONE
        if ann(r).get("gitkube.io/rolled-back-generation"):
            cause += " (rolled back: exceeded its progress deadline)"
        rows.append([str(rev(r)), commit[:12] or printers.NONE, printers.template_images((r.get("spec") or {}).get("template")),
                     f"{(r.get('status') or {}).get('readyReplicas', 0)}/{(r.get('spec') or {}).get('replicas', 0)}", cause])
    sys.stdout.write(printers.render_table(["REVISION", "GIT-COMMIT", "IMAGES", "READY", "CHANGE-CAUSE"], rows))
    return 0


def diff_notes(changes, store) -> list[str]:
    """What `diff` adds about rollouts: for each Deployment whose template changed, the rollout apply would start;
    for an RC whose template changed, that its running pods keep the old template; and every Deployment whose Git
    template was rolled back (out of sync until a new commit)."""
    from gitkube.reconcile import apps, deployment as dep

    lines = []
    stored = {(d["metadata"].get("namespace") or "default", d["metadata"]["name"]): d
              for d in store.list("Deployment", namespace="*")}
    rss = store.list("ReplicaSet", namespace="*")

    def owned(d):
        uid = d["metadata"].get("uid")
        return [r for r in rss if PodView(r).owner_uid == uid and not r["metadata"].get("deletionTimestamp")]

    for c in changes:
        if c.action != "change":
            continue
        before_t = ((c.before or {}).get("spec") or {}).get("template")
        after_t = ((c.after or {}).get("spec") or {}).get("template")
        if c.kind == "ReplicationController" and before_t != after_t:
            lines.append(f"! replicationcontroller {c.namespace}/{c.name}: its pod template changed "
                         f"({printers.template_images(before_t)} → {printers.template_images(after_t)}); the running pods "
                         "keep the old template (a ReplicationController only uses it for pods it creates from now on). "
                         "A Deployment (apps/v1) rolls them.")
        if c.kind == "Deployment" and (c.namespace, c.name) in stored:
            view = apps.deployment_view(c.after, None)
            mine = owned(stored[(c.namespace, c.name)])
            views = [apps.rs_view(r, [], 0, 0.0) for r in mine]
            labels = {apps.rs_view(r, [], 0, 0.0).template_hash: printers.template_images((r.get("spec") or {}).get("template"))
                      for r in mine}
            labels[view.template_hash] = printers.template_images(after_t)
            text = dep.rollout_summary(view, views, labels)
            if text:
                lines.append(f"~ rollout {c.namespace}/{text}")
    for (ns, name), d in sorted(stored.items()):
        if d["metadata"].get("deletionTimestamp"):
            continue
        h = apps.template_hash(d)
        gen = str(d["metadata"].get("generation", 1))
        for r in owned(d):
            a = r["metadata"].get("annotations") or {}
            if (r["metadata"].get("labels") or {}).get(dep.TEMPLATE_HASH_LABEL) == h and a.get(dep.ROLLED_BACK_GENERATION) == gen:
                commit = (a.get(dep.GIT_COMMIT) or "")[:12] or "unknown"
                lines.append(f"! deployment {ns}/{name}: OutOfSync: the template of Git commit {commit} (revision "
                             f"{a.get(dep.REVISION, '?')}) exceeded its progress deadline and was rolled back "
                             f"({dep.ROLLBACK_ON_FAILURE}); Git's template is not what runs until a new commit changes it")
    return lines
