"""The kubelet's decisions, pure: what to start, kill or remove on a node, and each pod's status, from
the pods bound to it and the containers observed there (one labelled list per node per pass)."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from gitkube.api import Container, Pod

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


def parse_time(ts: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (Docker's nanosecond form too), None when unset."""
    if not ts or ts.startswith("0001-01-01"):
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", ts)
    if not m:
        return None
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    frac = float("0" + m.group(2)) if m.group(2) else 0.0
    tz = m.group(3) or "Z"
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        base -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return base + frac


def iso(t: float | None) -> str | None:
    """RFC 3339 (seconds) of an epoch time, as Kubernetes prints timestamps."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def backoff_delay(restart_count: int, ran_for: float | None) -> float:
    """How long after an exit the next start may come: 0 for the first restart, then 10 s doubling to 300 s."""
    if ran_for is not None and ran_for >= BACKOFF_RESET:
        return 0.0
    if restart_count <= 0:
        return 0.0
    return min(BACKOFF_BASE * (2 ** (restart_count - 1)), BACKOFF_MAX)


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

    for w in works:
        st = w.last_status or {}
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
            out[f"infra:{w.uid}"] = {"state": "running", "started_at": st["startTime"]}
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


def pod_status(w: PodWork, seen: dict[str, list[ObservedContainer]], now: float, host_ip: str,
               ready: dict[tuple[str, str], bool] | None = None,
               waiting: dict[tuple[str, str], tuple[str, str]] | None = None) -> dict:
    """The pod's Kubernetes status from its containers on the node, probe results and runtime waits."""
    ready = ready or {}
    waiting = waiting or {}
    spec = w.pod.spec
    prev = w.last_status
    now_s = iso(now)
    infra = (seen.get(INFRA) or [None])[-1]
    statuses = []
    running = terminated_ok = terminated_bad = waiting_n = 0
    for c in spec.containers:
        attempts = seen.get(c.name, [])
        latest = attempts[-1] if attempts else None
        previous = attempts[-2] if len(attempts) > 1 else None
        last_known = _last_container_status(w, c.name)
        cs: dict = {"name": c.name, "image": c.image, "ready": False, "restartCount": 0, "started": False}
        if latest is None:
            if last_known.get("state", {}).get("terminated"):
                cs = {**last_known, "ready": False}
                code = last_known["state"]["terminated"].get("exitCode")
                terminated_ok += code == 0
                terminated_bad += code != 0
            elif spec.restartPolicy == "Never" and _had_run(last_known):
                # It ran and vanished from the node (removed by hand): it will not run again, and the kubelet
                # reports it terminated (not waiting: that would read as never started and get it created anew).
                cs["restartCount"] = int(last_known.get("restartCount", 0))
                cs["state"] = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                              "message": "The container could not be located when the pod was terminated"}}
                for k in ("lastState", "containerID", "imageID"):
                    if last_known.get(k):
                        cs[k] = last_known[k]
                terminated_bad += 1
            else:
                reason, msg = waiting.get((w.uid, c.name), ("ContainerCreating", ""))
                cs["state"] = {"waiting": {k: v for k, v in (("reason", reason), ("message", msg)) if v}}
                cs["restartCount"] = int(last_known.get("restartCount", 0))
                waiting_n += 1
            statuses.append(cs)
            continue
        cs["restartCount"] = latest.restart_count
        cs["imageID"] = latest.image_id
        cs["containerID"] = f"docker://{latest.id}"
        if latest.running:
            cs["state"] = {"running": {"startedAt": iso(parse_time(latest.started_at))}}
            cs["started"] = True
            has_probe = c.readinessProbe is not None
            cs["ready"] = bool(ready.get((w.uid, c.name), not has_probe))
            running += 1
            if previous is not None and not previous.running:
                cs["lastState"] = {"terminated": _terminated(previous)}
        elif latest.state == "created":
            cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
            waiting_n += 1
        else:
            term = _terminated(latest)
            due = next_start_at(spec.restartPolicy, latest)
            if due is not None:
                # It will run again: kubelet shows the wait (back-off) and the exit as lastState.
                reason = "CrashLoopBackOff" if now < due else "ContainerCreating"
                msg = f"back-off {int(due - (parse_time(latest.finished_at) or now))}s restarting failed container={c.name} pod={w.pod.metadata.name}_{w.pod.metadata.namespace}({w.uid})" if now < due else ""
                cs["state"] = {"waiting": {k: v for k, v in (("reason", reason), ("message", msg)) if v}}
                cs["lastState"] = {"terminated": term}
                running += 1  # a restarting container keeps the pod Running, as in Kubernetes
            else:
                cs["state"] = {"terminated": term}
                terminated_ok += latest.exit_code == 0
                terminated_bad += latest.exit_code != 0
        if (w.uid, c.name) in waiting and latest is not None and not latest.running:
            reason, msg = waiting[(w.uid, c.name)]
            cs["state"] = {"waiting": {k: v for k, v in (("reason", reason), ("message", msg)) if v}}
        statuses.append(cs)
    n = len(spec.containers)
    if terminated_ok == n:
        phase = "Succeeded"
    elif terminated_ok + terminated_bad == n:
        phase = "Failed"
    elif running and running + terminated_ok + terminated_bad == n and infra is not None:
        phase = "Running"
    else:
        phase = "Pending"
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
    ip = host_ip if spec.hostNetwork else (infra.ip if infra is not None and infra.running else prev.get("podIP"))
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    start = prev.get("startTime") or (iso(parse_time(infra.started_at)) if infra is not None else None)
    if start:
        status["startTime"] = start
    return status
