"""The kubelet's pure decisions: restart policy, back-off, what to start/kill, and the pod's status and phase."""
from __future__ import annotations

import pytest

from gitkube.api import parse_object
from gitkube.reconcile.podsync import (
    INFRA,
    EnsureSandbox,
    KillContainer,
    KillPod,
    ObservedContainer,
    PodWork,
    RemoveContainer,
    StartContainer,
    backoff_delay,
    container_hash,
    group,
    iso,
    next_start_at,
    parse_time,
    plan_node,
    pod_finished,
    pod_status,
    should_restart,
    status_hints,
)

T0 = 1_800_000_000.0
UID = "11111111-2222-3333-4444-555555555555"


def work(restart="Always", containers=("c",), deleting=False, last_status=None, **spec) -> PodWork:
    pod = parse_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                        "spec": {"nodeName": "n1", "restartPolicy": restart, "terminationGracePeriodSeconds": 5,
                                 "containers": [{"name": n, "image": "busybox"} for n in containers], **spec}})
    return PodWork(pod, UID, deleting=deleting, last_status=last_status or {})


def ts(t: float) -> str:
    return iso(t)


def infra(state="running", ip="198.18.161.2") -> ObservedContainer:
    return ObservedContainer(id="infra", pod_uid=UID, container=INFRA, spec_hash="", restart_count=0, state=state,
                             started_at=ts(T0 - 100), ip=ip)


def app(w: PodWork, name="c", restart=0, state="running", exit_code=None, started=T0 - 50, finished=None, cid=None,
        spec_hash=None) -> ObservedContainer:
    c = next(c for c in w.pod.spec.containers if c.name == name)
    return ObservedContainer(id=cid or f"{name}-{restart}", pod_uid=UID, container=name,
                             spec_hash=spec_hash if spec_hash is not None else container_hash(c), restart_count=restart,
                             state=state, exit_code=exit_code, started_at=ts(started),
                             finished_at=ts(finished) if finished else None)


# -- restart policy and back-off --------------------------------------------------------------------------
@pytest.mark.parametrize("policy,code,want", [
    ("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False), ("OnFailure", 1, True),
    ("OnFailure", 137, True), ("Never", 0, False), ("Never", 1, False),
])
def test_should_restart_follows_restart_policy(policy, code, want):
    assert should_restart(policy, code) is want


def test_backoff_is_immediate_then_10s_doubling_capped_at_300s_and_reset_after_10_minutes():
    assert [backoff_delay(n, 1.0) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert backoff_delay(5, 600.0) == 0.0  # ran 10 minutes cleanly: back-off starts afresh
    assert backoff_delay(5, None) == 160


def test_next_start_at_uses_finish_time_plus_back_off():
    w = work()
    assert next_start_at("Always", app(w, restart=2, state="exited", exit_code=1, started=T0, finished=T0 + 1)) == T0 + 1 + 20
    assert next_start_at("Never", app(w, restart=0, state="exited", exit_code=1, started=T0, finished=T0 + 1)) is None
    assert next_start_at("Always", app(w)) is None  # running


def test_parse_time_reads_dockers_nanosecond_timestamps_and_zero_time():
    assert parse_time("2027-01-15T08:00:00.123456789Z") == pytest.approx(parse_time("2027-01-15T08:00:00Z") + 0.123456789)
    assert parse_time("2027-01-15T10:00:00+02:00") == parse_time("2027-01-15T08:00:00Z")
    assert parse_time("0001-01-01T00:00:00Z") is None and parse_time(None) is None


# -- planning ------------------------------------------------------------------------------------------------
def test_new_pod_gets_a_sandbox_then_its_containers():
    w = work(containers=("a", "b"))
    acts = plan_node([w], [], T0)
    assert acts == [EnsureSandbox(UID), StartContainer(UID, "a", 0, "create"), StartContainer(UID, "b", 0, "create")]


def test_crashed_container_restarts_at_once_first_then_waits_out_the_back_off():
    w = work("Always")
    first = app(w, restart=0, state="exited", exit_code=1, started=T0, finished=T0 + 1)
    assert plan_node([w], [infra(), first], T0 + 1.5) == [StartContainer(UID, "c", 1, "restart")]
    second = app(w, restart=1, state="exited", exit_code=1, started=T0 + 2, finished=T0 + 3)
    assert plan_node([w], [infra(), first, second], T0 + 12) == []  # 10 s back-off not over
    assert plan_node([w], [infra(), first, second], T0 + 13) == [RemoveContainer(UID, "c-0"), StartContainer(UID, "c", 2, "restart")]


@pytest.mark.parametrize("policy,code,restarts", [("Never", 1, False), ("Never", 0, False), ("OnFailure", 0, False),
                                                  ("OnFailure", 2, True), ("Always", 0, True)])
def test_exited_container_is_restarted_only_per_policy(policy, code, restarts):
    w = work(policy)
    done = app(w, state="exited", exit_code=code, started=T0, finished=T0 + 1)
    acts = plan_node([w], [infra(), done], T0 + 2)
    assert (acts == [StartContainer(UID, "c", 1, "restart")]) is restarts


def test_changed_spec_kills_and_starts_again_with_the_next_restart_count():
    w = work()
    acts = plan_node([w], [infra(), app(w, restart=3, spec_hash="old")], T0)
    assert acts == [KillContainer(UID, "c", "c-3", "spec changed", grace=5), StartContainer(UID, "c", 4, "spec changed")]


def test_dead_sandbox_restarts_every_container_in_a_new_one():
    w = work(containers=("a",))
    acts = plan_node([w], [infra(state="exited"), app(w, "a")], T0)
    assert acts == [KillContainer(UID, "a", "a-0", "pod sandbox changed", grace=5), EnsureSandbox(UID, replace="infra"),
                    StartContainer(UID, "a", 1, "restart")]


def test_deleted_pod_and_orphans_are_killed_whole():
    w = work(deleting=True)
    assert plan_node([w], [infra(), app(w)], T0) == [KillPod(UID, grace=5, reason="deleted")]
    assert plan_node([w], [], T0) == []
    stray = ObservedContainer(id="x", pod_uid="gone", container="c", spec_hash="", restart_count=0, state="running")
    assert plan_node([], [stray], T0) == [KillPod("gone", grace=30, reason="pod no longer bound to this node")]


def test_container_removed_by_hand_is_recreated_unless_restart_policy_is_never():
    running = {"containerStatuses": [{"name": "c", "restartCount": 2, "state": {"running": {"startedAt": ts(T0)}}}]}
    assert plan_node([work("Always", last_status=running)], [infra()], T0) == [StartContainer(UID, "c", 3, "recreate missing")]
    assert plan_node([work("OnFailure", last_status=running)], [infra()], T0) == [StartContainer(UID, "c", 3, "recreate missing")]
    assert plan_node([work("Never", last_status=running)], [infra()], T0) == []


def test_container_removed_by_hand_under_never_stays_gone_once_its_status_is_recorded():
    """Regression: the status after the removal said `waiting: ContainerCreating`, which the next pass read as
    "never ran" and created the container again under restartPolicy Never."""
    running = {"containerStatuses": [{"name": "c", "restartCount": 0, "containerID": "docker://c-0",
                                      "state": {"running": {"startedAt": ts(T0)}}}]}
    w = work("Never", last_status=running)
    st = pod_status(w, group([infra()]).get(UID, {}), T0 + 5, "198.18.6.11")
    cs = st["containerStatuses"][0]
    assert cs["state"]["terminated"]["reason"] == "ContainerStatusUnknown" and cs["state"]["terminated"]["exitCode"] == 137
    assert cs["containerID"] == "docker://c-0"
    assert st["phase"] == "Failed"
    w2 = work("Never", last_status=st)
    assert plan_node([w2], [infra()], T0 + 10) == []
    assert pod_status(w2, group([infra()]).get(UID, {}), T0 + 10, "198.18.6.11")["phase"] == "Failed"


# -- status and phase -----------------------------------------------------------------------------------------
def status_of(w, *observed, now=T0):
    return pod_status(w, group(list(observed)).get(UID, {}), now, "198.18.6.11")


def test_running_pod_is_ready_with_ip_conditions_and_start_time():
    w = work()
    st = status_of(w, infra(), app(w))
    assert st["phase"] == "Running" and st["podIP"] == "198.18.161.2" and st["hostIP"] == "198.18.6.11"
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"Initialized": "True", "Ready": "True",
                                                                  "ContainersReady": "True", "PodScheduled": "True"}
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["state"]["running"]["startedAt"] == ts(T0 - 50) and cs["containerID"] == "docker://c-0"
    assert st["startTime"] == ts(T0 - 100)


def test_readiness_until_a_probe_of_this_process_is_the_stored_one_of_the_same_container():
    """A restarted controller (or a one-shot apply) has no probe result yet: a container the stored status showed
    ready stays ready (no endpoint dropped); a new instance of it starts unready; a probe result wins."""
    def probed(last_status):
        pod = parse_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox", "readinessProbe":
                                                                        {"httpGet": {"path": "/", "port": 80}}}]}})
        return PodWork(pod, UID, last_status=last_status)

    w = probed({"containerStatuses": [{"name": "c", "ready": True, "containerID": "docker://c-0"}]})
    ready = lambda st: st["containerStatuses"][0]["ready"]  # noqa: E731
    assert ready(pod_status(w, group([infra(), app(w)]).get(UID, {}), T0, "198.18.6.11", {}))
    assert not ready(pod_status(w, group([infra(), app(w, restart=1)]).get(UID, {}), T0, "198.18.6.11", {}))
    assert not ready(pod_status(w, group([infra(), app(w)]).get(UID, {}), T0, "198.18.6.11", {(UID, "c"): False}))
    unready = probed({"containerStatuses": [{"name": "c", "ready": False, "containerID": "docker://c-0"}]})
    assert not ready(pod_status(unready, group([infra(), app(unready)]).get(UID, {}), T0, "198.18.6.11", {}))


@pytest.mark.parametrize("policy,codes,phase", [
    ("Never", (1,), "Failed"), ("Never", (0,), "Succeeded"), ("OnFailure", (0,), "Succeeded"),
    ("Never", (0, 1), "Failed"), ("Never", (0, 0), "Succeeded"),
])
def test_phase_of_finished_pods(policy, codes, phase):
    names = tuple(f"c{i}" for i in range(len(codes)))
    w = work(policy, containers=names)
    seen = [app(w, n, state="exited", exit_code=code, started=T0, finished=T0 + 1) for n, code in zip(names, codes)]
    st = status_of(w, infra(), *seen, now=T0 + 2)
    assert st["phase"] == phase
    assert pod_finished(w, group([infra(), *seen])[UID])
    reasons = [cs["state"]["terminated"]["reason"] for cs in st["containerStatuses"]]
    assert reasons == ["Completed" if c == 0 else "Error" for c in codes]


def test_crash_loop_shows_back_off_waiting_with_the_last_exit_and_keeps_the_pod_running():
    w = work("Always")
    a0 = app(w, restart=0, state="exited", exit_code=1, started=T0, finished=T0 + 1)
    a1 = app(w, restart=1, state="exited", exit_code=1, started=T0 + 2, finished=T0 + 3)
    st = status_of(w, infra(), a0, a1, now=T0 + 5)
    cs = st["containerStatuses"][0]
    assert st["phase"] == "Running" and cs["restartCount"] == 1 and not cs["ready"]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "back-off 10s" in cs["state"]["waiting"]["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 1 and cs["lastState"]["terminated"]["startedAt"] == ts(T0 + 2)
    assert status_of(w, infra(), a0, a1, now=T0 + 14)["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"


def test_running_after_a_restart_reports_the_previous_exit_as_last_state():
    w = work("Always")
    a0 = app(w, restart=0, state="exited", exit_code=2, started=T0, finished=T0 + 1)
    a1 = app(w, restart=1, started=T0 + 2)
    cs = status_of(w, infra(), a0, a1, now=T0 + 3)["containerStatuses"][0]
    assert "running" in cs["state"] and cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 2 and cs["lastState"]["terminated"]["startedAt"] == ts(T0)


def test_killed_by_signal_and_oom_reasons():
    w = work("Never")
    o = ObservedContainer(id="c", pod_uid=UID, container="c", spec_hash="", restart_count=0, state="exited",
                          exit_code=137, started_at=ts(T0), finished_at=ts(T0 + 1), oom_killed=True)
    t = status_of(w, infra(), o)["containerStatuses"][0]["state"]["terminated"]
    assert t["reason"] == "OOMKilled" and t["signal"] == 9


def test_pending_until_created_and_runtime_waits_are_reported():
    w = work()
    st = pod_status(w, {}, T0, "198.18.6.11", waiting={(UID, "c"): ("ErrImageNeverPull", "not present")})
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"]["waiting"] == {"reason": "ErrImageNeverPull", "message": "not present"}


def test_host_network_pod_ip_is_the_host_ip():
    w = work(hostNetwork=True)
    assert status_of(w, infra(ip=None), app(w))["podIP"] == "198.18.6.11"


def test_never_started_container_is_replaced_under_the_same_restart_count():
    """A pass killed between `docker create` and `docker start` leaves a Created container: it is replaced, not kept."""
    from gitkube.api import parse_object
    from gitkube.reconcile.podsync import ObservedContainer, PodWork, RemoveContainer, StartContainer, plan_node

    pod = parse_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                        "spec": {"containers": [{"name": "c", "image": "gitkube/busybox:latest"}]}})
    infra = ObservedContainer(id="i", pod_uid="u", container="POD", spec_hash="", restart_count=0, state="running",
                              started_at="2026-01-01T00:00:00Z", ip="198.18.101.2")
    created = ObservedContainer(id="x", pod_uid="u", container="c", spec_hash="h", restart_count=0, state="created")
    acts = plan_node([PodWork(pod, "u")], [infra, created], now=1e9)
    assert acts == [RemoveContainer("u", "x"), StartContainer("u", "c", 0, "resume interrupted start")]


# -- hints: what a fresh process takes from the stored status instead of inspecting -----------------------------
def test_status_hints_carry_what_the_status_was_computed_from():
    w = work(containers=("c", "d"))
    obs = [infra(), app(w, "c", restart=1, started=T0 - 20),
           app(w, "c", restart=0, state="exited", exit_code=3, started=T0 - 60, finished=T0 - 30),
           app(w, "d", restart=0, state="exited", exit_code=137, started=T0 - 60, finished=T0 - 5)]
    obs[3] = ObservedContainer(**{**obs[3].__dict__, "oom_killed": True, "image_id": "docker-pullable://sha256:ab"})
    st = pod_status(w, group(obs)[UID], T0, "198.18.6.11")
    hints = status_hints([PodWork(w.pod, UID, last_status=st)])
    assert hints["c-1"] == {"state": "running", "started_at": ts(T0 - 20), "image_id": ""}
    assert hints["c-0"] == {"state": "exited", "exit_code": 3, "started_at": ts(T0 - 60), "finished_at": ts(T0 - 30),
                            "oom_killed": False, "error": "", "image_id": ""}
    assert hints["d-0"]["exit_code"] == 137 and hints["d-0"]["oom_killed"] is True
    assert hints["d-0"]["image_id"] == "docker-pullable://sha256:ab"
    assert hints[f"infra:{UID}"] == {"state": "running", "started_at": ts(T0 - 100)}
    # Rebuilt from the hints, the same containers give the same status: a cold pass writes nothing new.
    rebuilt = [ObservedContainer(id=o.id, pod_uid=UID, container=o.container, spec_hash=o.spec_hash,
                                 restart_count=o.restart_count, state=o.state, ip=o.ip,
                                 **{k: v for k, v in hints[o.id if o.container != INFRA else f"infra:{UID}"].items()
                                    if k != "state"}) for o in obs]
    w2 = PodWork(w.pod, UID, last_status=st)
    assert pod_status(w2, group(rebuilt)[UID], T0, "198.18.6.11") == pod_status(w2, group(obs)[UID], T0, "198.18.6.11")


def test_no_status_no_hints():
    assert status_hints([work()]) == {}
