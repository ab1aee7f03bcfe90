"""One pass as data, on the real sandbox: `diff` observes and changes nothing on any node (their Docker event streams
prove it); `apply --plan-fingerprint` executes exactly the plan `diff` printed, or nothing when the world moved;
`diff --offline` plans with a node cut off; `status` in each sync and health state, through the CLI."""
from __future__ import annotations

import time

import yaml

from tests.integration.conftest import eventually
from tests.integration.test_control_loops import (
    NODES,
    Cluster,
    WorkTree,
    cleaned_up,
    pod_yaml,
    rc_yaml,
    running,
)

MUTATING = {"create", "start", "stop", "kill", "die", "destroy", "restart", "pause", "unpause", "rename", "update"}


def docker_events(fleet, node: str, since: float, until: float) -> list[str]:
    """Container events on a node's engine between two times (the test's own docker CLI, not gitkube)."""
    r = fleet.docker(node, "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--filter", "type=container",
                     "--format", "{{.Action}} {{.Actor.Attributes.name}}")
    assert r.returncode == 0, r.stderr
    return [ln for ln in r.stdout.splitlines() if ln.strip()]


def plan_lines(out: str) -> tuple[str, list[str]]:
    """The fingerprint and the node-action lines of a printed plan."""
    fp = next(ln.split()[2].rstrip(":") for ln in out.splitlines() if ln.startswith("# plan "))
    return fp, sorted(ln.strip() for ln in out.splitlines() if ln.startswith("  node "))


def bad_image_pod(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                               {"name": "app", "image": "198.18.0.1:1/gitkube-test/absent:1",
                                "imagePullPolicy": "IfNotPresent"}]}})


def never_ready_pod(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                               {"name": "app", "image": "gitkube/busybox:latest", "imagePullPolicy": "Never",
                                "command": ["sleep", "100000"],
                                "readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1}}]}})


def test_diff_touches_no_node_and_apply_executes_the_printed_plan(fleet, tmp_path):
    wt = WorkTree(tmp_path / "work")
    cl = Cluster(fleet, tmp_path, repo=wt.path)
    wt.commit({"web.yaml": rc_yaml("web", 3), "solo.yaml": pod_yaml("solo")}, "web x3 and a pod")
    with cleaned_up(cl, wt):
        for attempt in range(4):  # a node slow to answer one heartbeat (a loaded machine) changes the plan: again
            since = time.time()
            d = cl.gk("diff", *cl.src(), "--heartbeat-timeout", "30", check=False)
            assert d.returncode == 1, d.stderr
            until = time.time() + 0.5
            time.sleep(0.6)
            for node in NODES:
                acts = [e for e in docker_events(fleet, node, since, until) if e.split()[0] in MUTATING]
                assert not acts, f"diff changed node {node}: {acts}"
            fp, printed = plan_lines(d.stdout)
            if len(printed) != 8:  # a sandbox and a container for each of the 4 pods, unless a node was slow
                print(f"attempt {attempt + 1}: a node did not answer diff's heartbeat:\n{d.stdout}")
                continue
            assert "+ pod default/web-" in d.stdout and "> pod default/solo → node" in d.stdout
            t0 = time.time()
            a = cl.apply("--plan-fingerprint", fp, "--show-plan", "--heartbeat-timeout", "30", check=False)
            if a.returncode == 0 or "the world moved" not in a.stderr:
                break
            print(f"attempt {attempt + 1}: {a.stderr.strip()}")
        assert len(printed) == 8 and a.returncode == 0, d.stdout + a.stdout + a.stderr
        executed_fp, executed = plan_lines(a.stdout)
        assert executed_fp == fp and executed == printed, f"printed:\n{d.stdout}\nexecuted:\n{a.stdout}"
        time.sleep(0.6)
        creates = sum(1 for n in NODES for e in docker_events(fleet, n, t0, time.time()) if e.startswith("create "))
        assert creates == len(printed), "one container created per action printed"
        pods = {p["metadata"]["name"] for p in cl.live_pods()}
        assert {ln.split("+ pod default/")[1].split()[0] for ln in d.stdout.splitlines()
                if ln.startswith("+ pod default/")} <= pods, "apply created the very pods diff named"

        # The world moves (a new revision): the old fingerprint is refused, nothing changes.
        wt.commit({"web.yaml": rc_yaml("web", 3), "solo.yaml": pod_yaml("solo"), "two.yaml": pod_yaml("two")}, "+two")
        t1 = time.time()
        r = cl.apply("--plan-fingerprint", fp, "--heartbeat-timeout", "30", check=False)
        assert r.returncode == 1 and "the world moved" in r.stderr, r.stderr
        time.sleep(0.6)
        assert not any(e.split()[0] in MUTATING for n in NODES for e in docker_events(fleet, n, t1, time.time()))
        assert "two" not in {p["metadata"]["name"] for p in cl.pods()}


def test_diff_offline_with_a_node_cut_and_apply_names_it(fleet, tmp_path):
    wt = WorkTree(tmp_path / "work")
    cl = Cluster(fleet, tmp_path, repo=wt.path)
    wt.commit({"web.yaml": rc_yaml("web", 3)}, "web x3")
    with cleaned_up(cl, wt):
        cl.apply("--wait", "--timeout", "90", timeout=180)
        cl.gk("sandbox", "node", "n2", "cut")
        try:
            t0 = time.monotonic()
            r = cl.gk("diff", *cl.src(), "--offline", check=False)
            took = time.monotonic() - t0
            assert r.returncode == 0, r.stdout + r.stderr
            assert "offline: from the store, no node contacted" in r.stdout and took < 15, (took, r.stdout)
            online = cl.gk("diff", *cl.src(), check=False)
            assert "? node n2: not synced" in online.stdout, online.stdout
            wt.commit({"web.yaml": rc_yaml("web", 3), "x.yaml": pod_yaml("x", nodeName="n2")}, "a pod for n2")
            a = cl.apply(check=False)
            assert a.returncode == 1 and "error: node n2 unreachable" in a.stderr, a.stderr
            s = cl.gk("status", *cl.src(), check=False)
            assert s.returncode == 1 and "health: Degraded" in s.stdout and "node n2:" in s.stdout, s.stdout
        finally:
            cl.gk("sandbox", "node", "n2", "heal")
        eventually(lambda: cl.apply(check=False).returncode == 0, timeout=60, interval=2, what="apply after heal")


def test_status_in_each_state(fleet, tmp_path):
    wt = WorkTree(tmp_path / "work")
    cl = Cluster(fleet, tmp_path, repo=wt.path)

    def status():
        r = cl.gk("status", *cl.src(), check=False)
        return r.returncode, r.stdout

    def settled(health: str, also: str = ""):
        """Status once it shows `health` (re-applied meanwhile: on a loaded machine a node may miss a heartbeat,
        which status rightly reports as Degraded until the next pass reaches it)."""
        def look():
            code, out = status()
            if f"health: {health}" in out and also in out:
                return code, out
            cl.apply(check=False, timeout=120)
            return None
        return eventually(look, timeout=90, interval=1, what=f"status {health}")

    wt.commit({"ok.yaml": pod_yaml("ok")}, "one pod")
    with cleaned_up(cl, wt):
        cl.apply("--wait", "--timeout", "60", timeout=120)
        code, out = settled("Healthy")
        assert code == 0 and "sync: Synced" in out and "health: Healthy" in out, out
        sha = wt.git("rev-parse", "HEAD").strip()
        assert f"revision applied: {sha}" in out, out

        # OutOfSync: a commit not applied yet, with what differs.
        wt.commit({"ok.yaml": pod_yaml("ok"), "late.yaml": pod_yaml("late")}, "late")
        code, out = status()
        assert code == 1 and "sync: OutOfSync" in out and "missing: Pod/default/late" in out, out

        # Progressing: a pod Running but never Ready.
        wt.commit({"ok.yaml": pod_yaml("ok"), "slow.yaml": never_ready_pod("slow")}, "never ready")
        cl.apply(check=False, timeout=120)
        code, out = settled("Progressing", "pod default/slow: Running not Ready")
        assert code == 1 and "sync: Synced" in out and "health: Progressing" in out, out

        # Degraded: an image that cannot be pulled; apply itself exits 1 and names the pod.
        wt.commit({"ok.yaml": pod_yaml("ok"), "bad.yaml": bad_image_pod("bad")}, "bad image")
        a = cl.apply(check=False, timeout=120)
        assert a.returncode == 1 and "pod default/bad: app ErrImagePull" in a.stderr, a.stdout + a.stderr
        assert "health: Degraded" in a.stderr, a.stderr
        code, out = settled("Degraded", "pod default/bad")
        assert code == 1 and "health: Degraded" in out and "pod default/bad" in out, out

        # Refused: an invalid revision; the last good one stays applied and status says why.
        good = wt.git("rev-parse", "HEAD").strip()
        wt.commit({"ok.yaml": pod_yaml("ok"), "broken.yaml": "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {}\n"},
                  "broken")
        r = cl.apply(check=False)
        assert r.returncode == 1
        code, out = status()
        assert code == 1 and "refused" in out and "broken.yaml" in out and f"revision applied: {good}" in out, out
        r = cl.gk("status", "--repo", str(tmp_path / "nowhere"), "--inventory", str(fleet.inventory), check=False)
        assert r.returncode == 2, r.stdout + r.stderr


def test_quiet_passes_list_nothing_and_a_container_killed_behind_gitkubes_back_is_seen_by_its_event(fleet, tmp_path):
    """A controller (in this process, on the real nodes) whose world has settled makes quiet passes: no container
    list on any node (each engine's event stream says nothing changed) and no planning. A container killed with the
    test's own docker CLI, not through gitkube, is seen through the event stream at once (well before the 10 s
    re-list), and the next pass plans in full and restarts it."""
    from gitkube.controller import Controller, Source
    from gitkube.nodes.kubelet.runtime import RELIST_SECONDS

    wt = WorkTree(tmp_path / "work")
    cl = Cluster(fleet, tmp_path, repo=wt.path)
    wt.commit({"q1.yaml": pod_yaml("q1", nodeName="n1"), "q2.yaml": pod_yaml("q2", nodeName="n2")}, "two pods")
    with cleaned_up(cl, wt):
        cl.apply("--wait", "--timeout", "120", timeout=200)
        ctrl = Controller(str(cl.state), Source(str(wt.path), None, "manifests", str(fleet.inventory)))
        try:
            # Other tests' containers may still be going away on the nodes (each event means a list, to check);
            # once the nodes are still, passes in a row are quiet and call no node's list.
            seen, run = [], 0
            for _ in range(40):
                r = ctrl.reconcile()
                seen.append((r.quiet, r.summary(), dict(r.api_calls)))
                run = run + 1 if r.quiet and r.summary() == "no changes" and set(r.api_calls.values()) == {0} else 0
                if run == 3:
                    break
                time.sleep(0.2)
            assert run == 3, seen
            cid = fleet.docker("n1", "ps", "-q", "--no-trunc", "--filter", "label=io.gitkube.container.name=app",
                               "--filter", "label=io.gitkube.pod.name=q1").stdout.split()
            assert len(cid) == 1, cid
            t_kill = time.monotonic()
            assert fleet.docker("n1", "kill", cid[0]).returncode == 0
            seen_after = None
            while time.monotonic() - t_kill < RELIST_SECONDS:
                rep = ctrl.reconcile()
                if not rep.quiet:
                    seen_after = time.monotonic() - t_kill
                    break
                time.sleep(0.1)
            assert seen_after is not None and seen_after < RELIST_SECONDS / 2, seen_after
            print(f"\nquiet pass: killed container seen {seen_after:.2f}s after the kill")

            def restarted():
                ctrl.reconcile()
                p = next(p for p in cl.pods() if p["metadata"]["name"] == "q1")
                return running(p) and p["status"]["containerStatuses"][0]["restartCount"] == 1

            eventually(restarted, timeout=60, interval=0.5, what="q1 restarted by a full pass")
        finally:
            ctrl.close()
