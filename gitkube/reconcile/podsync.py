"""The kubelet's decisions, pure: what to start, kill or remove on a node, and each pod's status, from
the pods bound to it and the containers observed there (one labelled list per node per pass)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from gitkube.api import Container, Pod
from gitkube.api.views import iso, parse_time

INFRA = "POD"  # container-name label of a pod's infra (pause) container, as the kubelet names it
BACKOFF_BASE = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0  # a container that ran this long before exiting starts its back-off afresh


@dataclass(frozen=True)
class ObservedContainer:
    """One gitkube-labelled container as the node reports it."""

    id: str
    pod_uid: str
    container: str  # container name in the pod spec, or INFRA
    spec_hash: str
    restart_count: int
    state: str  # Docker state: created, running, restarting, exited, dead, paused, removing
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    image: str = ""
    image_id: str = ""
    oom_killed: bool = False
    error: str = ""
    ip: str | None = None  # infra only: the pod IP

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting", "paused")


@dataclass(frozen=True)
class PodWork:
    """A pod bound to this node, as desired: the model, whether it is being deleted, its last known status."""

    pod: Pod
    uid: str
    deleting: bool = False
    last_status: dict = field(default_factory=dict, hash=False, compare=False)
    # container name -> digest of the ConfigMaps/Secrets its env reads (configrefs.env_digests): part of its hash
    config_digests: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.pod.metadata.namespace or 'default'}/{self.pod.metadata.name}"


# -- actions: what the runtime is asked to do, in order ---------------------------------------------------
@dataclass(frozen=True)
class EnsureSandbox:
    pod_uid: str
    replace: str | None = None  # id of a dead infra container to remove first


@dataclass(frozen=True)
class StartContainer:
    pod_uid: str
    container: str
    restart_count: int
    reason: str  # "create", "restart", "spec changed", "recreate missing"


@dataclass(frozen=True)
class KillContainer:
    pod_uid: str
    container: str
    container_id: str
    reason: str
    grace: int


@dataclass(frozen=True)
class RemoveContainer:
    pod_uid: str
    container_id: str


@dataclass(frozen=True)
class KillPod:
    """Terminate every container of a pod (preStop, grace, SIGTERM, SIGKILL) and remove them and its volumes."""

    pod_uid: str
    grace: int
    reason: str


Action = EnsureSandbox | StartContainer | KillContainer | RemoveContainer | KillPod


def container_hash(c: Container, config_digest: str = "") -> str:
    """A short digest of a container's spec, and of the config its env reads when it reads any
    (configrefs.env_config_digest): a changed spec, or changed env config, means a new container."""
    body = json.dumps(c.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((body + (f"\0{config_digest}" if config_digest else "")).encode()).hexdigest()[:16]


def exp_backoff(failures: int) -> float:
    """The kubelet's back-off after `failures` failures (restarts or image pulls): 0, then 10 s doubling to 300 s."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_BASE * (2 ** (failures - 1)), BACKOFF_MAX)


def backoff_delay(restart_count: int, ran_for: float | None) -> float:
    """How long after an exit the next start may come: 0 for the first restart, then 10 s doubling to 300 s."""
    if ran_for is not None and ran_for >= BACKOFF_RESET:
        return 0.0
    return exp_backoff(restart_count)


def should_restart(policy: str, exit_code: int | None) -> bool:
    """Whether restartPolicy restarts a container that exited with this code."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def group(observed: list[ObservedContainer]) -> dict[str, dict[str, list[ObservedContainer]]]:
    """Observed containers by pod uid, then by container name, attempts sorted oldest first."""
    out: dict[str, dict[str, list[ObservedContainer]]] = {}
    for o in observed:
        out.setdefault(o.pod_uid, {}).setdefault(o.container, []).append(o)
    for by_name in out.values():
        for attempts in by_name.values():
            attempts.sort(key=lambda o: (o.restart_count, parse_time(o.started_at) or 0.0))
    return out


def _last_container_status(work: PodWork, name: str) -> dict:
    for cs in work.last_status.get("containerStatuses") or []:
        if cs.get("name") == name:
            return cs
    return {}


def was_ready(work: PodWork, name: str, container_id: str) -> bool:
    """Whether the stored status says this very container instance was ready: what its readiness is until a probe
    of this process says otherwise. A controller that restarts (or a one-shot `apply`) then keeps a ready pod in its
    Service's endpoints instead of dropping it until its first probe; a new instance starts unready."""
    last = _last_container_status(work, name)
    return bool(last.get("ready")) and last.get("containerID") == f"docker://{container_id}"


def _had_run(last: dict) -> bool:
    """Whether a container's last known status shows it ran (now gone from the node) rather than never started."""
    st = last.get("state") or {}
    return bool(st.get("running") or st.get("terminated") or last.get("lastState"))


def next_start_at(policy: str, latest: ObservedContainer) -> float | None:
    """When an exited attempt may be started again (None: restartPolicy says never)."""
    if latest.running or not should_restart(policy, latest.exit_code):
        return None
    started, finished = parse_time(latest.started_at), parse_time(latest.finished_at)
    ran_for = finished - started if started and finished else None
    return (finished or 0.0) + backoff_delay(latest.restart_count, ran_for)


def plan_node(works: list[PodWork], observed: list[ObservedContainer], now: float,
              blocked: dict[tuple[str, str], str] | None = None) -> list[Action]:
    """Actions that bring one node's containers to the pods bound to it (orphans are terminated)."""
    blocked = blocked or {}
    by_pod = group(observed)
    actions: list[Action] = []
    wanted = {w.uid: w for w in works}
    for uid in sorted(set(by_pod) - set(wanted)):
        actions.append(KillPod(uid, grace=30, reason="pod no longer bound to this node"))
    for w in works:
        actions += plan_pod(w, by_pod.get(w.uid, {}), now, blocked)
    return actions


def plan_pod(w: PodWork, seen: dict[str, list[ObservedContainer]], now: float,
             blocked: dict[tuple[str, str], str]) -> list[Action]:
    """Actions for one pod: sandbox first, then each container by its restartPolicy and back-off."""
    spec = w.pod.spec
    if w.deleting:
        return [KillPod(w.uid, grace=spec.terminationGracePeriodSeconds, reason="deleted")] if seen else []
    if pod_finished(w, seen):
        return []
    actions: list[Action] = []
    infra = (seen.get(INFRA) or [None])[-1]
    sandbox_new = infra is None or not infra.running
    if sandbox_new:
        # A pod's namespaces died with its infra container: every app container must start again in the new one.
        for name, attempts in seen.items():
            if name != INFRA and attempts[-1].running:
                actions.append(KillContainer(w.uid, name, attempts[-1].id, "pod sandbox changed", grace=spec.terminationGracePeriodSeconds))
        actions.append(EnsureSandbox(w.uid, replace=infra.id if infra else None))
    for c in spec.containers:
        attempts = seen.get(c.name, [])
        latest = attempts[-1] if attempts else None
        if (w.uid, c.name) in blocked:
            continue  # image missing and not pullable: the runtime reports the waiting reason
        if latest is None:
            last = _last_container_status(w, c.name)
            if last.get("state", {}).get("terminated") and not should_restart(spec.restartPolicy, last["state"]["terminated"].get("exitCode")):
                continue  # it finished before its container was removed by hand: done is done
            had_run = _had_run(last)
            if had_run and spec.restartPolicy == "Never":
                continue
            actions.append(StartContainer(w.uid, c.name, int(last.get("restartCount", -1)) + 1 if had_run else 0,
                                          "recreate missing" if had_run else "create"))
            continue
        desired_hash = container_hash(c, w.config_digests.get(c.name, ""))
        if latest.running:
            if sandbox_new:
                actions.append(StartContainer(w.uid, c.name, latest.restart_count + 1, "restart"))
            elif latest.spec_hash != desired_hash:
                actions.append(KillContainer(w.uid, c.name, latest.id, "spec changed", grace=spec.terminationGracePeriodSeconds))
                actions.append(StartContainer(w.uid, c.name, latest.restart_count + 1, "spec changed"))
            continue
        if latest.state == "created":
            # Created but never started (a pass died in between): not a restart. Replace it under the same
            # restart count, so a crash of gitkube neither leaves it behind nor counts as a container restart.
            actions.append(RemoveContainer(w.uid, latest.id))
            actions.append(StartContainer(w.uid, c.name, latest.restart_count, "resume interrupted start"))
            continue
        due = next_start_at(spec.restartPolicy, latest)
        if sandbox_new and due is not None:
            due = now
        if due is not None and now >= due:
            actions += [RemoveContainer(w.uid, o.id) for o in attempts[:-1]]  # keep the latest for --previous
            actions.append(StartContainer(w.uid, c.name, latest.restart_count + 1, "restart"))
    return actions


def pod_finished(w: PodWork, seen: dict[str, list[ObservedContainer]]) -> bool:
    """A pod is done when every container has exited and restartPolicy restarts none of them."""
    policy = w.pod.spec.restartPolicy
    if policy == "Always":
        return False
    for c in w.pod.spec.containers:
        attempts = seen.get(c.name)
        if attempts:
            latest = attempts[-1]
            if latest.running or latest.state == "created" or should_restart(policy, latest.exit_code):
                return False
        else:
            last = _last_container_status(w, c.name).get("state", {}).get("terminated")
            if not last or should_restart(policy, last.get("exitCode")):
                return False
    return True


# -- what the last status says, for a process that has not inspected anything yet -------------------------
def status_hints(works: list[PodWork]) -> dict[str, dict]:
    """status_hints_of for pods as works."""
    return status_hints_of((w.uid, w.last_status) for w in works)


def status_hints_of(statuses) -> dict[str, dict]:
    """Container facts the stored statuses recorded (the last report of the kubelet's job), by container id, and
    the sandbox start by "infra:<pod uid>". A fresh process (every `apply`) rebuilds its view from the one list
    call plus these, instead of an inspect per container; a container whose Docker state word no longer matches
    its hint is inspected as before (the hint only stands for a container that has not changed since)."""
    out: dict[str, dict] = {}

    def cid(x) -> str:
        return str(x or "").removeprefix("docker://")

    def term(t: dict, image_id: str) -> dict:
        return {"state": "exited", "exit_code": int(t.get("exitCode", 0)), "started_at": t.get("startedAt"),
                "finished_at": t.get("finishedAt"), "oom_killed": t.get("reason") == "OOMKilled",
                "error": t.get("message", ""), "image_id": image_id}

    for uid, st in statuses:
        st = st or {}
        for cs in st.get("containerStatuses") or ():
            cur, image_id = cid(cs.get("containerID")), cs.get("imageID", "")
            state, last = cs.get("state") or {}, cs.get("lastState") or {}
            if cur and "running" in state and state["running"].get("startedAt"):
                out[cur] = {"state": "running", "started_at": state["running"]["startedAt"], "image_id": image_id}
            if "terminated" in state and (k := cid(state["terminated"].get("containerID")) or cur):
                out[k] = term(state["terminated"], image_id)
            if "terminated" in last and (k := cid(last["terminated"].get("containerID"))):
                out.setdefault(k, term(last["terminated"], image_id))
        if st.get("startTime"):
            out[f"infra:{uid}"] = {"state": "running", "started_at": st["startTime"]}
    return out


# -- status ------------------------------------------------------------------------------------------
def _terminated(o: ObservedContainer) -> dict:
    reason = "OOMKilled" if o.oom_killed else ("Completed" if o.exit_code == 0 else "Error")
    t = {"exitCode": o.exit_code if o.exit_code is not None else 0, "reason": reason,
         "startedAt": iso(parse_time(o.started_at)), "finishedAt": iso(parse_time(o.finished_at)),
         "containerID": f"docker://{o.id}"}
    if o.error:
        t["message"] = o.error
    if o.exit_code and o.exit_code > 128:
        t["signal"] = o.exit_code - 128
    return {k: v for k, v in t.items() if v is not None}


def _condition(typ: str, ok: bool, prev: dict, now_s: str, reason: str | None = None) -> dict:
    status = "True" if ok else "False"
    old = next((c for c in prev.get("conditions") or [] if c.get("type") == typ), {})
    cond = {"type": typ, "status": status,
            "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == status else now_s}
    if reason and not ok:
        cond["reason"] = reason
    return cond


def _waiting_state(reason: str, msg: str = "") -> dict:
    return {"waiting": {k: v for k, v in (("reason", reason), ("message", msg)) if v}}


def _gone_container_status(w: PodWork, c, last_known: dict, waiting: Waiting) -> tuple[dict, str]:
    """A container with no instance on the node: done, vanished (restartPolicy Never) or waiting to be created.
    Also how it counts for the phase: "ok", "bad" (terminated) or "waiting"."""
    cs: dict = {"name": c.name, "image": c.image, "ready": False, "restartCount": 0, "started": False}
    if last_known.get("state", {}).get("terminated"):
        code = last_known["state"]["terminated"].get("exitCode")
        return {**last_known, "ready": False}, "ok" if code == 0 else "bad"
    if w.pod.spec.restartPolicy == "Never" and _had_run(last_known):
        # It ran and vanished from the node (removed by hand): it will not run again, and the kubelet
        # reports it terminated (not waiting: that would read as never started and get it created anew).
        cs["restartCount"] = int(last_known.get("restartCount", 0))
        cs["state"] = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                      "message": "The container could not be located when the pod was terminated"}}
        for k in ("lastState", "containerID", "imageID"):
            if last_known.get(k):
                cs[k] = last_known[k]
        return cs, "bad"
    cs["state"] = _waiting_state(*waiting.get((w.uid, c.name), ("ContainerCreating", "")))
    cs["restartCount"] = int(last_known.get("restartCount", 0))
    return cs, "waiting"


def _container_status(w: PodWork, c, attempts: list[ObservedContainer], now: float, ready: dict,
                      waiting: Waiting) -> tuple[dict, str]:
    """One container's status from its attempts on the node, and how it counts for the pod's phase ("running",
    "ok", "bad", "waiting")."""
    if not attempts:
        return _gone_container_status(w, c, _last_container_status(w, c.name), waiting)
    latest, previous = attempts[-1], (attempts[-2] if len(attempts) > 1 else None)
    cs: dict = {"name": c.name, "image": c.image, "ready": False, "restartCount": latest.restart_count,
                "started": False, "imageID": latest.image_id, "containerID": f"docker://{latest.id}"}
    if latest.running:
        cs["state"] = {"running": {"startedAt": iso(parse_time(latest.started_at))}}
        cs["started"] = True
        cs["ready"] = bool(ready.get((w.uid, c.name), c.readinessProbe is None or was_ready(w, c.name, latest.id)))
        if previous is not None and not previous.running:
            cs["lastState"] = {"terminated": _terminated(previous)}
        return cs, "running"
    if latest.state == "created":
        cs["state"], kind = {"waiting": {"reason": "ContainerCreating"}}, "waiting"
    else:
        term = _terminated(latest)
        due = next_start_at(w.pod.spec.restartPolicy, latest)
        if due is not None:
            # It will run again: kubelet shows the wait (back-off) and the exit as lastState.
            m = w.pod.metadata
            msg = (f"back-off {int(due - (parse_time(latest.finished_at) or now))}s restarting failed container="
                   f"{c.name} pod={m.name}_{m.namespace}({w.uid})")
            cs["state"] = _waiting_state("CrashLoopBackOff", msg) if now < due else _waiting_state("ContainerCreating")
            cs["lastState"] = {"terminated": term}
            kind = "running"  # a restarting container keeps the pod Running, as in Kubernetes
        else:
            cs["state"], kind = {"terminated": term}, "ok" if latest.exit_code == 0 else "bad"
    if (w.uid, c.name) in waiting:
        cs["state"] = _waiting_state(*waiting[(w.uid, c.name)])
    return cs, kind


def _phase(kinds: list[str], has_sandbox: bool) -> str:
    n, ok, bad, running = len(kinds), kinds.count("ok"), kinds.count("bad"), kinds.count("running")
    if ok == n:
        return "Succeeded"
    if ok + bad == n:
        return "Failed"
    if running and running + ok + bad == n and has_sandbox:
        return "Running"
    return "Pending"


def pod_status(w: PodWork, seen: dict[str, list[ObservedContainer]], now: float, host_ip: str,
               ready: dict[tuple[str, str], bool] | None = None,
               waiting: dict[tuple[str, str], tuple[str, str]] | None = None) -> dict:
    """The pod's Kubernetes status from its containers on the node, probe results and runtime waits."""
    prev, now_s = w.last_status, iso(now)
    infra = (seen.get(INFRA) or [None])[-1]
    pairs = [_container_status(w, c, seen.get(c.name, []), now, ready or {}, waiting or {}) for c in w.pod.spec.containers]
    statuses = [cs for cs, _ in pairs]
    phase = _phase([k for _, k in pairs], infra is not None)
    all_ready = phase == "Running" and all(s["ready"] for s in statuses)
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    unready_reason = "ContainersNotReady" if not_ready else None
    status: dict = {
        "phase": phase,
        "conditions": [
            _condition("Initialized", True, prev, now_s),
            _condition("Ready", all_ready, prev, now_s, unready_reason),
            _condition("ContainersReady", all_ready, prev, now_s, unready_reason),
            _condition("PodScheduled", True, prev, now_s),
        ],
        "hostIP": host_ip,
        "containerStatuses": statuses,
    }
    if not all_ready and not_ready:
        for cond in status["conditions"][1:3]:
            cond["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
    ip = pod_ip(w, seen, host_ip)
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    start = prev.get("startTime") or (iso(parse_time(infra.started_at)) if infra is not None else None)
    if start:
        status["startTime"] = start
    return status


# -- the node's share of a pass: image pull back-off, statuses and when the node next needs a look ----------
Waiting = dict[tuple[str, str], tuple[str, str]]  # (pod uid, container) -> (reason, message) of a container held back
PullState = dict[str, tuple[int, float, str]]  # "uid/container" -> (failed pulls, time of the last attempt, message)


@dataclass(frozen=True)
class NodePlan:
    """What one node's kubelet does in this pass: the actions, containers held back (and why), when to look again."""

    actions: tuple[Action, ...] = ()
    waiting: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = ()  # held back by the planner (back-off, config)
    next_due: float | None = None
    events: tuple["PodEvent", ...] = ()  # the planner's own (a container held for missing config, every pass)


def pull_blocked(works: list[PodWork], pulls: PullState, now: float) -> tuple[Waiting, float | None]:
    """Containers whose image pull is in back-off (ImagePullBackOff) and when the earliest back-off ends."""
    out: Waiting = {}
    due = None
    for w in works:
        for c in w.pod.spec.containers:
            st = pulls.get(f"{w.uid}/{c.name}")
            if not st or not st[0]:
                continue
            until = st[1] + exp_backoff(st[0])
            if now < until:
                out[(w.uid, c.name)] = ("ImagePullBackOff", f'Back-off pulling image "{c.image}"')
                due = until if due is None else min(due, until)
    return out, due


def pull_failed(pulls: PullState, uid: str, container: str, now: float, message: str) -> PullState:
    """The pull state after one more failed pull of a container's image."""
    fails = pulls.get(f"{uid}/{container}", (0, 0.0, ""))[0]
    return {**pulls, f"{uid}/{container}": (fails + 1, now, message)}


def restart_due(works: list[PodWork], observed: list[ObservedContainer], now: float) -> float | None:
    """The earliest time a container waiting in CrashLoopBackOff may start again (None: none waits)."""
    by_pod = group(observed)
    due = None
    for w in works:
        if w.deleting:
            continue
        seen = by_pod.get(w.uid, {})
        for c in w.pod.spec.containers:
            attempts = seen.get(c.name)
            if not attempts:
                continue
            t = next_start_at(w.pod.spec.restartPolicy, attempts[-1])
            if t is not None and t > now:
                due = t if due is None else min(due, t)
    return due


def plan_node_pass(works: list[PodWork], observed: list[ObservedContainer], now: float, pulls: PullState,
                   config_blocked: dict[tuple[str, str], tuple[str, str, str]] | None = None) -> NodePlan:
    """One node's plan: containers in image pull back-off, or whose ConfigMap/Secret is missing
    (configrefs.config_blocks: waiting reason, event reason, message), are held back; the rest as plan_node
    decides."""
    blocked, pull_due = pull_blocked(works, pulls, now)
    events = []
    for key, (reason, ev_reason, msg) in sorted((config_blocked or {}).items()):
        blocked[key] = (reason, msg.removeprefix("Error: "))
        events.append(PodEvent(key[0], ev_reason, msg, "Warning"))
    actions = plan_node(works, observed, now, {k: v[1] for k, v in blocked.items()})
    dues = [t for t in (pull_due, restart_due(works, observed, now)) if t is not None]
    return NodePlan(tuple(actions), tuple(sorted(blocked.items())), min(dues) if dues else None, tuple(events))


def pod_ip(w: PodWork, seen: dict[str, list[ObservedContainer]], host_ip: str) -> str | None:
    """The pod's IP: the node's for hostNetwork, its running sandbox's, else the one its last status recorded."""
    if w.pod.spec.hostNetwork:
        return host_ip
    infra = (seen.get(INFRA) or [None])[-1]
    if infra is not None and infra.running and infra.ip:
        return infra.ip
    return w.last_status.get("podIP") or None


@dataclass(frozen=True)
class PodEvent:
    """An event the kubelet records about a pod (pod_uid) or its node (pod_uid None)."""

    pod_uid: str | None
    reason: str
    message: str
    type: str = "Normal"


def node_statuses(works: list[PodWork], observed: list[ObservedContainer], now: float, host_ip: str,
                  ready: dict[tuple[str, str], bool] | None, waiting: Waiting) -> tuple[dict[str, dict], list[PodEvent]]:
    """Each live pod's status from what the node shows after this pass's actions, and the BackOff events that go
    with containers in back-off (recorded on every sync that skips one, as the kubelet does; the store counts)."""
    by_pod = group(observed)
    statuses: dict[str, dict] = {}
    events: list[PodEvent] = []
    for w in works:
        if w.deleting:
            continue
        st = statuses[w.uid] = pod_status(w, by_pod.get(w.uid, {}), now, host_ip, ready, waiting)
        for cs in st.get("containerStatuses") or ():
            if ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff":
                m = w.pod.metadata
                events.append(PodEvent(w.uid, "BackOff", f"Back-off restarting failed container {cs['name']} in pod "
                                       f"{m.name}_{m.namespace or 'default'}({w.uid})", "Warning"))
    return statuses, events


def observed_from_status(works: list[PodWork]) -> list[ObservedContainer]:
    """The containers the stored statuses last reported (what `diff --offline` plans from, no node asked)."""
    out = []
    for w in works:
        st = w.last_status or {}
        if st.get("startTime"):
            out.append(ObservedContainer(id=f"infra:{w.uid}", pod_uid=w.uid, container=INFRA, spec_hash="",
                                         restart_count=0, state="running", started_at=st.get("startTime"),
                                         ip=st.get("podIP")))
        specs = {c.name: c for c in w.pod.spec.containers}
        for cs in st.get("containerStatuses") or ():
            c, state = specs.get(cs.get("name")), cs.get("state") or {}
            cid = str(cs.get("containerID") or "").removeprefix("docker://")
            if c is None or not cid:
                continue
            base = dict(id=cid, pod_uid=w.uid, container=c.name, spec_hash=container_hash(c),
                        restart_count=int(cs.get("restartCount", 0)), image=c.image, image_id=cs.get("imageID", ""))
            if "running" in state:
                out.append(ObservedContainer(**base, state="running", started_at=state["running"].get("startedAt")))
            else:
                t = state.get("terminated") or ((cs.get("lastState") or {}).get("terminated")) or {}
                if t:
                    out.append(ObservedContainer(**base, state="exited", exit_code=t.get("exitCode"),
                                                 started_at=t.get("startedAt"), finished_at=t.get("finishedAt")))
    return out
