"""`apply`, `serve`, `logs`, `exec`: the commands that act on the nodes."""
from __future__ import annotations

import os
import sys
import time

from gitkube.cli import logs_many
from gitkube.cli.common import add_source_args, fail


def register(sub) -> None:
    """Adds apply, serve, logs and exec to the gitkube command line."""
    _register_apply(sub)
    _register_serve_logs_exec(sub)


def _register_apply(sub) -> None:
    ap = sub.add_parser(
        "apply", help="one reconcile pass: revision → store → scheduler/RC → pods on nodes",
        description="Run one reconcile pass: read the revision (refused whole if invalid: the last good one stays "
        "applied), sync the state DB, heartbeat the nodes, run the ReplicationController manager and the scheduler, "
        "and bring every node's containers to the pods bound to it. Objects removed from Git are always deleted (their "
        "pods terminated gracefully): Git is the whole desired state, and `diff` lists them as \"would prune\" first. "
        "Ends with the sync and health summary of `gitkube status`, and names on stderr every node it needed that "
        "was unreachable, and why. Exit 0 on success; 1 if the revision was refused, the plan was not the expected "
        "one (--plan-fingerprint), a pod it started ends in ErrImagePull, ImagePullBackOff or CrashLoopBackOff, a node "
        "it needed was unreachable, or --wait failed; 2 on error.")
    add_source_args(ap)
    ap.add_argument("--wait", action="store_true", help="keep reconciling until every pod is Running and Ready "
                    "(or Succeeded) and every Deployment's rollout is complete; exit non-zero saying which are not, "
                    "at once when a rollout exceeds its progressDeadlineSeconds")
    ap.add_argument("--timeout", type=float, default=300.0, metavar="S", help="give up --wait after S seconds (default 300)")
    ap.add_argument("--heartbeat-timeout", type=float, default=6.0, metavar="S",
                    help="wait up to S seconds for each node's heartbeat (SSH, then Docker info) before counting it "
                    "unreachable for this pass (default 6; a node this process has not reached yet gets at least 20 s: its "
                    "first heartbeat opens the SSH connection); use the same value as the `diff` whose plan fingerprint "
                    "you pass")
    ap.add_argument("--show-plan", action="store_true", help="print the plan the first pass executed, as `diff` "
                    "prints it: pods created, deleted, bound, and each node action that was carried out")
    ap.add_argument("--plan-fingerprint", metavar="F", help="apply only if the plan is still the one `diff` printed "
                    "with this fingerprint; if the world moved since (a new revision, a pod, a node, a back-off), "
                    "change nothing and exit 1")
    _proxy_mode_arg(ap)
    ap.set_defaults(func=cmd_apply)


def _register_serve_logs_exec(sub) -> None:
    sv = sub.add_parser(
        "serve", help="reconcile continuously: on every commit/push at once, and on a schedule",
        description="Run the control loop continuously. A commit or `git push` into the watched repository triggers a "
        "pass within a second (watchdog). Each pass's plan says when work is next due (an image pull or restart "
        "back-off ending, a node's grace period or eviction time), and serve wakes then; a readiness change seen by "
        "the probes wakes it too; at the latest it runs a full pass every --resync seconds, as a safety net. A second "
        "controller on the same state dir is refused; with an etcd --store two or more serves share the store: one "
        "leads (passes, probes, node actions), the others stand by serving the read API and take over when the "
        "leader's lease expires. SIGTERM/SIGINT stop it cleanly. A pass that changed something "
        "logs one line at INFO saying what; passes with nothing to do log at DEBUG (-v).")
    add_source_args(sv)
    _proxy_mode_arg(sv)
    sv.add_argument("--resync", type=float, default=10.0, metavar="S", help="at the latest a full pass every S seconds, whatever else woke "
                    "serve (default 10)")
    sv.add_argument("--fetch-interval", type=float, default=30.0, metavar="S",
                    help="when --repo is a remote URL, fetch it every S seconds (default 30)")
    sv.add_argument("--node-grace", type=float, default=20.0, metavar="S",
                    help="a node without a heartbeat for S seconds goes NotReady (default 20)")
    sv.add_argument("--eviction-timeout", type=float, default=30.0, metavar="S",
                    help="pods of a node NotReady for S seconds are replaced elsewhere (default 30)")
    sv.add_argument("--usage-interval", type=float, default=15.0, metavar="S",
                    help="sample every node's containers' CPU and memory every S seconds for `gitkube top`, "
                    "metrics.k8s.io and /metrics (one list + one stats call per container; 0 turns it off; default 15)")
    from gitkube.cli.api_cmds import add_api_args

    add_api_args(sv, serve=True)
    sv.add_argument("--lease-ttl", type=int, default=5, metavar="S",
                    help="with an etcd --store: the leader's lease lasts S seconds unless renewed (every S/3); a "
                    "standby takes over within S seconds of the leader's death (default 5)")
    sv.add_argument("--webhook-secret-file", metavar="FILE", default=os.environ.get("GITKUBE_WEBHOOK_SECRET_FILE"),
                    help="accept POST /hooks/git on the API listener from a remote Git host (GitHub, Gitea, GitLab) "
                    "signed with the shared secret in FILE: a verified push fetches --repo and runs a pass at once "
                    "(env GITKUBE_WEBHOOK_SECRET_FILE)")
    sv.set_defaults(func=cmd_serve)

    lg = sub.add_parser("logs", help="print a container's logs", description="Print the logs of a pod's container "
                        "(read from its node over SSH). Like kubectl logs.")
    lg.add_argument("pod", nargs="?", help="pod name (or -l SELECTOR for many pods)")
    lg.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    lg.add_argument("-c", "--container", help="container name (default: the pod's only or first container)")
    lg.add_argument("-p", "--previous", action="store_true", help="logs of the previous, terminated instance")
    lg.add_argument("-f", "--follow", action="store_true", help="stream new lines until interrupted")
    lg.add_argument("--tail", type=int, default=-1, help="only the last N lines (default: all)")
    lg.add_argument("--inventory", default="inventory.yaml", help="node inventory (default: inventory.yaml)")
    logs_many.add_args(lg)
    lg.set_defaults(func=cmd_logs)

    ex = sub.add_parser("exec", help="run a command in a container", description="Run a command in a pod's container "
                        "(Docker exec over SSH) and print its output; exits with the command's exit code.")
    ex.add_argument("pod", help="pod name")
    ex.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    ex.add_argument("-c", "--container", help="container name (default: the first)")
    ex.add_argument("--inventory", default="inventory.yaml", help="node inventory (default: inventory.yaml)")
    ex.add_argument("cmd", nargs="+", help="the command and its arguments, after --")
    ex.set_defaults(func=cmd_exec)


def _source(args):
    from gitkube.controller import Source

    return Source(args.repo, args.rev, args.path, args.inventory, getattr(args, "age_identity", None))


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


PROXY_MODES = ("iptables", "haproxy")
DEFAULT_PROXY_MODE = "iptables"  # the faster one (bench/bench_services.py); HAProxy stays selectable


def _proxy_mode_arg(p) -> None:
    env = os.environ.get("GITKUBE_PROXY_MODE", "")
    p.add_argument("--proxy-mode", choices=PROXY_MODES, default=env if env in PROXY_MODES else DEFAULT_PROXY_MODE,
                   help="how nodes answer Services: iptables (kernel NAT as kube-proxy's iptables mode: DNAT per "
                        "Service, per-endpoint probability rules, NodePorts; no userspace hop) or haproxy (a "
                        "userspace proxy on every node). Default: env GITKUBE_PROXY_MODE, else " + DEFAULT_PROXY_MODE + ". Switching "
                        "removes the other mode's proxy (and its rules) from every node")


def _open_controller(args, **kw):
    from gitkube.controller import Controller
    from gitkube.store import StoreLocked

    try:
        ctrl = Controller(args.state_dir, _source(args), progress=_say, store_url=getattr(args, "store", None), **kw)
        ctrl.proxy_mode = getattr(args, "proxy_mode", None) or ctrl.proxy_mode
        return ctrl
    except StoreLocked as e:
        raise SystemExit(fail(f"{e}\nanother gitkube apply/serve is running on this state dir; stop it or use another --state-dir", 2))


# How long --wait keeps waiting for the pods of a node that is NotReady or out of reach before it gives up on them.
HOLD_AFTER = 20.0


def _unready_nodes(ctrl) -> dict[str, str]:
    """Nodes whose Ready condition is not True, with why (reason: message), from the store."""
    from gitkube.api.views import NodeView

    out = {}
    for n in ctrl.store.list("Node"):
        cond = NodeView(n).condition("Ready")
        if cond.get("status") != "True":
            out[n["metadata"]["name"]] = f"{cond.get('reason') or 'NotReady'}: {cond.get('message') or 'no status'}"
    return out


def _say_node_errors(rep, said: dict[str, str]) -> None:
    """Names on stderr each node this pass could not sync, and why (once per distinct reason)."""
    for node, why in sorted(rep.node_errors.items()):
        if said.get(node) != why:
            _say(f"apply: node {node} not synced: {why}")
            said[node] = why
    for node in [n for n in said if n not in rep.node_errors]:
        del said[node]


def _not_settled(ctrl, skip_nodes: dict[str, str] | None = None) -> list[str]:
    """Pods not yet where --wait wants them, with why; pods bound to `skip_nodes` are not waited for."""
    from gitkube.api.views import PodView

    out = []
    skip_nodes = skip_nodes or {}
    for p in ctrl.store.list("Pod", namespace="*"):
        v = PodView(p)
        m, st = p["metadata"], v.status
        if v.node in skip_nodes:
            continue
        if v.deleting:
            out.append(f"{m.get('namespace')}/{m['name']}: Terminating")
            continue
        phase = v.phase
        if phase == "Succeeded":
            continue
        if phase == "Failed":
            out.append(f"{m.get('namespace')}/{m['name']}: Failed")
            continue
        if phase != "Running" or not v.ready:
            why = [f"{cs['name']}: {next(iter(cs.get('state') or {'?': 0}))} {((cs.get('state') or {}).get('waiting') or {}).get('reason', '')}".strip()
                   for cs in st.get("containerStatuses") or [] if not cs.get("ready")]
            sched = v.condition("PodScheduled")
            out.append(f"{m.get('namespace')}/{m['name']}: {phase}"
                       + (f" ({sched.get('message')})" if sched.get("status") == "False" else "")
                       + (f" [{'; '.join(why)}]" if why else ""))
    rcs = ctrl.store.list("ReplicationController", namespace="*")
    for rc in rcs:
        want = (rc.get("spec") or {}).get("replicas", 1)
        have = (rc.get("status") or {}).get("readyReplicas") or 0
        if have < want and not rc["metadata"].get("deletionTimestamp"):
            out.append(f"rc {rc['metadata'].get('namespace')}/{rc['metadata']['name']}: {have}/{want} ready")
    from gitkube.api.printers import rollout_status

    for d in ctrl.store.list("Deployment", namespace="*"):
        if not d["metadata"].get("deletionTimestamp"):
            done, failed, msg = rollout_status(d)
            if not done:
                out.append(f"deployment {d['metadata'].get('namespace')}/{d['metadata']['name']}: "
                           + (DEADLINE if failed else msg))
    return out


DEADLINE = "exceeded its progress deadline"


class _ApplyRun:
    """What one `apply` did across its passes: the pods it started, the nodes it needed that did not answer."""

    def __init__(self):
        self.started: set[str] = set()
        self.unreachable: dict[str, str] = {}

    def add(self, rep) -> None:
        from gitkube.reconcile import podsync as ps

        for acts in rep.node_actions.values():
            self.started |= {a.pod_uid for a in acts if isinstance(a, (ps.StartContainer, ps.EnsureSandbox))}
        plan = rep.plan
        if plan is not None and plan.cluster is not None:
            self.started |= {c.pod["metadata"]["uid"] for c in plan.cluster.create}
        for n, e in rep.node_errors.items():
            if plan is None or plan.works.get(n) or any(b.node == n for b in getattr(plan.cluster, "bindings", ())):
                self.unreachable[n] = e
        for n in list(self.unreachable):
            if n in rep.node_actions:
                del self.unreachable[n]  # answered in a later pass

    def failures(self, ctrl) -> list[str]:
        from gitkube.api.views import PodView
        from gitkube.reconcile.health import failing_waits

        out = [f"node {n} unreachable: {e}" for n, e in sorted(self.unreachable.items())]
        for p in map(PodView, ctrl.store.list("Pod", namespace="*")):
            if p.uid in self.started and (bad := failing_waits(p)):
                out.append(f"pod {p.namespace}/{p.name}: " + ", ".join(f"{c} {r}" for c, r in sorted(bad.items())))
        return out


def _finish(args, ctrl, run: _ApplyRun, code: int) -> int:
    """The same summary as `gitkube status`, then what makes this apply fail (stderr)."""
    from gitkube.cli.state_cmds import status_summary

    summary = status_summary(args, store=ctrl.store)
    if isinstance(summary, int):
        return summary
    for line in summary.lines():
        _say(line)
    problems = run.failures(ctrl)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return code or (1 if problems else 0)


def cmd_apply(args) -> int:
    from gitkube.source import SourceError

    ctrl = _open_controller(args, probe_timeout=args.heartbeat_timeout)
    run = _ApplyRun()
    try:
        try:
            rep = ctrl.reconcile(expect_fingerprint=args.plan_fingerprint)
        except SourceError as e:
            return fail(str(e), 2)
        if rep.refused_fingerprint:
            return fail(f"the plan is now {rep.refused_fingerprint}, not {args.plan_fingerprint}: the world moved since "
                        "that diff; nothing was changed (run diff again)", 1)
        run.add(rep)
        if args.show_plan:
            print("\n".join(_executed_lines(rep)))
        for prob in rep.refused:
            print(prob, file=sys.stderr)
        _say(f"apply: {rep.summary()} ({rep.seconds:.2f}s)")
        said: dict[str, str] = {}
        _say_node_errors(rep, said)
        if rep.refused:
            return _finish(args, ctrl, run, 1)
        if not args.wait:
            return _finish(args, ctrl, run, 0)
        return _finish(args, ctrl, run, _wait(args, ctrl, run, said))
    finally:
        ctrl.close()


def _executed_lines(rep) -> list[str]:
    """The plan of a pass as `diff` prints it, with the node actions that were executed (not merely planned)."""
    from gitkube.reconcile.plan import render_action, render_plan

    if rep.plan is None:
        return []
    lines = [f"# plan {rep.plan.fingerprint}: executed"]
    lines += [ln for ln in render_plan(rep.plan) if not ln.startswith(("  node ", "# "))]
    for node in sorted(rep.node_actions):
        lines += ["  " + render_action(rep.plan, node, a) for a in rep.node_actions[node]]
    return lines


def _wait(args, ctrl, run: _ApplyRun, said: dict[str, str]) -> int:
    """Reconcile until every pod is Running and Ready (or Succeeded) and every rollout is complete; an exit code.
    Pods of a node NotReady or unreachable for HOLD_AFTER seconds are not waited for (said which, and why)."""
    ctrl.start_probes(on_event=_probe_event(ctrl), wake=lambda: None)
    deadline = time.monotonic() + args.timeout
    last = None
    held_since: dict[str, float] = {}
    while True:
        rep = ctrl.reconcile()
        run.add(rep)
        _say_node_errors(rep, said)
        # A node that is NotReady, or that this pass could not reach, has pods whose stored status is only what
        # it said last: they are not settled. After HOLD_AFTER seconds of this wait they are not waited for.
        doubtful = {n: f"it is NotReady ({why})" for n, why in _unready_nodes(ctrl).items()}
        doubtful.update({n: f"the passes could not sync it ({why})" for n, why in rep.node_errors.items()
                         if n not in doubtful and not why.startswith("services: ")})
        bound = {(p.get("spec") or {}).get("nodeName") for p in ctrl.store.list("Pod", namespace="*")}
        now = time.monotonic()
        held_since = {n: held_since.get(n, now) for n in doubtful if n in bound}
        held = {n: doubtful[n] for n in held_since if now - held_since[n] >= HOLD_AFTER}
        pending = _not_settled(ctrl, {n: "" for n in held_since})
        pending += [f"pods of node {n}: {doubtful[n]}" for n in sorted(held_since) if n not in held]
        if not pending and held:
            for node, why in sorted(held.items()):
                _say(f"apply: not waiting for the pods of node {node}: {why}")
            return fail("the pods of node(s) " + ", ".join(sorted(held)) + " are not known to run; the others are "
                        "Running and Ready", 1)
        if not pending:
            # Readiness seen in a pass moves Endpoints, the node proxies and DNS in that same pass: "Ready" on
            # return also means "receives its Services' traffic".
            _say("apply: all pods Running and Ready")
            return 0
        msg = f"apply: waiting for {len(pending)}: " + "; ".join(pending[:6]) + (" …" if len(pending) > 6 else "")
        if msg != last:
            _say(msg)
            last = msg
        if any(p.endswith(": Failed") for p in pending):
            return fail("pods failed: " + "; ".join(p for p in pending if p.endswith(": Failed")), 1)
        if any(p.endswith(DEADLINE) for p in pending):
            return fail("rollouts failed: " + "; ".join(p for p in pending if p.endswith(DEADLINE)), 1)
        if time.monotonic() > deadline:
            return fail(f"timed out after {args.timeout:.0f}s; not ready: " + "; ".join(pending), 1)
        time.sleep(1.0)


def _probe_event(ctrl):
    def on_event(node, pod_uid, pod_key, reason, message, type_="Normal"):
        with ctrl.lock:
            if pod_key:
                ns, name = pod_key.split("/", 1)
                involved = {"kind": "Pod", "namespace": ns, "name": name, "uid": pod_uid}
            else:
                involved = {"kind": "Node", "namespace": "", "name": node}
            ctrl.store.record_event(involved, reason, message, type_, host=node)
    return on_event


def cmd_serve(args) -> int:
    from gitkube.controller.serve import serve

    from gitkube.cli.api_cmds import start_beside_serve
    from gitkube.server.listener import ListenError, parse_listen

    try:
        parse_listen(args.api_listen)
    except ListenError as e:
        return fail(str(e), 2)
    webhook = None
    if args.webhook_secret_file:
        from gitkube.server.hooks import Webhook

        try:
            webhook = Webhook.from_file(args.webhook_secret_file)
        except (OSError, ValueError) as e:
            return fail(f"--webhook-secret-file: {getattr(e, 'strerror', None) or e}", 2)
        if args.no_api:
            return fail("--webhook-secret-file needs the API listener (it serves POST /hooks/git); drop --no-api", 2)
    ctrl = _open_controller(args, grace_period=args.node_grace, eviction_timeout=args.eviction_timeout, elect=False)
    api = start_beside_serve(args, webhook=webhook)  # the read-only Kubernetes API over the same store
    try:
        return serve(ctrl, args, on_event=_probe_event(ctrl), webhook=webhook)
    finally:
        if api is not None:
            api.stop()
        ctrl.close()


def _find_pod(args):
    from gitkube.store import open_store

    with open_store(args.state_dir, url=args.store) as store:
        pod = store.get("Pod", args.namespace, args.pod)
    if pod is None:
        raise SystemExit(fail(f'pods "{args.pod}" not found in namespace {args.namespace}', 1))
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        raise SystemExit(fail(f"pod {args.pod} is not scheduled to a node yet", 1))
    names = [c["name"] for c in pod["spec"]["containers"]]
    c = args.container or names[0]
    if c not in names:
        raise SystemExit(fail(f"container {c} is not valid for pod {args.pod}: choose one of {names}", 1))
    return pod, node, c


def _node_handle(args, node):
    from gitkube.nodes.transport.fleet import Fleet
    from gitkube.nodes.inventory import load_inventory

    nodes = [n for n in load_inventory(args.inventory) if n.name == node]
    if not nodes:
        raise SystemExit(fail(f"node {node} is not in {args.inventory}", 2))
    return Fleet(nodes)[node]


def cmd_logs(args) -> int:
    from gitkube.nodes.kubelet.podio import container_for, stream_logs

    if args.selector or args.all_containers or args.prefix or args.since or args.timestamps or not args.pod:
        if bool(args.selector) == bool(args.pod):
            return fail("logs: give a pod name or -l SELECTOR (one of them)", 2)
        return logs_many.cmd_logs_many(args)
    pod, node, c = _find_pod(args)
    h = _node_handle(args, node)
    cid = container_for(h, pod["metadata"]["uid"], c, previous=args.previous)
    if cid is None:
        what = "previous terminated container" if args.previous else "container"
        return fail(f'{what} "{c}" in pod "{args.pod}" not found', 1)
    for chunk in stream_logs(h, cid, follow=args.follow, tail=args.tail):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    return 0


def cmd_exec(args) -> int:
    from gitkube.nodes.kubelet.podio import container_for, exec_stream

    pod, node, c = _find_pod(args)
    h = _node_handle(args, node)
    cid = container_for(h, pod["metadata"]["uid"], c, previous=False)
    if cid is None:
        return fail(f'container "{c}" in pod "{args.pod}" is not running', 1)
    state = (h.docker.call(h.docker.api.inspect_container, cid).get("State") or {})
    if not state.get("Running"):
        return fail(f'cannot exec in container "{c}" of pod "{args.pod}": it is not running ({state.get("Status", "?")}, '
                    f'exit code {state.get("ExitCode")}); its output: gitkube logs {args.pod} -c {c}', 1)
    return exec_stream(h, cid, args.cmd, sys.stdout.buffer, sys.stderr.buffer)
