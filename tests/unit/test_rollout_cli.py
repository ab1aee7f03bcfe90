"""diff's rollout notes, rollout status wording and the apps tables, over a real state DB (no nodes)."""
from __future__ import annotations

import copy
import random

from gitkube.api import parse_object, printers, to_k8s
from gitkube.cli.rollout_cmd import diff_notes
from gitkube.reconcile.apps import plan_apps
from gitkube.reconcile.objdiff import object_changes
from gitkube.store import Store


def deployment(image: str) -> dict:
    return to_k8s(parse_object({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "frontend"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "fe"}},
                 "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": {"app": "fe"}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}}))


def rc(image: str) -> dict:
    return to_k8s(parse_object({
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "old"},
        "spec": {"replicas": 2, "selector": {"app": "old"},
                 "template": {"metadata": {"labels": {"app": "old"}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}}))


def test_diff_shows_the_rollout_and_the_rc_template_note(tmp_path):
    with Store.open(tmp_path, writer=True) as store:
        store.sync_revision("a" * 40, [deployment("gitkube/guestbook-frontend:v1"), rc("x:1")])
        d = store.get("Deployment", "default", "frontend")
        plan = plan_apps([d], [], [], 0.0, random.Random(1), "a" * 40)
        for r in plan.rs_create:
            store.put(r, origin="controller")
        assert [r["metadata"]["name"] for r in store.list("ReplicaSet")] == [plan.rs_create[0]["metadata"]["name"]]
        desired = [deployment("gitkube/guestbook-frontend:v2"), rc("x:2")]
        changes = object_changes(desired, store.list(origin="git"))
        notes = diff_notes(changes, store)
    assert "~ rollout default/frontend: 3 pods v1 → v2, maxSurge 1, maxUnavailable 0" in notes
    rc_note = next(n for n in notes if "replicationcontroller default/old" in n)
    assert "running pods keep the old template" in rc_note and "A Deployment (apps/v1) rolls them" in rc_note


def test_rolled_back_deployment_is_out_of_sync(tmp_path):
    with Store.open(tmp_path, writer=True) as store:
        store.sync_revision("b" * 40, [deployment("v:3")])
        d = store.get("Deployment", "default", "frontend")
        plan = plan_apps([d], [], [], 0.0, random.Random(1), "b" * 40)
        rs = copy.deepcopy(plan.rs_create[0])
        rs["metadata"]["annotations"]["gitkube.io/rolled-back-generation"] = "1"
        store.put(rs, origin="controller")
        notes = diff_notes([], store)
    assert len(notes) == 1 and "OutOfSync" in notes[0] and "bbbbbbbbbbbb" in notes[0]


def test_rollout_status_messages_as_kubectl():
    d = {"metadata": {"name": "fe", "generation": 2}, "spec": {"replicas": 3},
         "status": {"observedGeneration": 1}}
    assert printers.rollout_status(d) == (False, False, "Waiting for deployment spec update to be observed...")
    d["status"] = {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}
    assert printers.rollout_status(d)[2] == 'Waiting for deployment "fe" rollout to finish: 1 out of 3 new replicas have been updated...'
    d["status"].update(updatedReplicas=3)
    assert printers.rollout_status(d)[2] == 'Waiting for deployment "fe" rollout to finish: 1 old replicas are pending termination...'
    d["status"].update(replicas=3, availableReplicas=2)
    assert printers.rollout_status(d)[2] == 'Waiting for deployment "fe" rollout to finish: 2 of 3 updated replicas are available...'
    d["status"].update(availableReplicas=3)
    assert printers.rollout_status(d) == (True, False, 'deployment "fe" successfully rolled out')
    d["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    assert printers.rollout_status(d) == (False, True, 'deployment "fe" exceeded its progress deadline')


def test_get_deploy_and_rs_columns():
    d = deployment("x:1")
    d["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    d["status"] = {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    h, rows = printers.table_rows("Deployment", [d], wide=True)
    assert h == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows[0][:4] == ["frontend", "2/3", "3", "2"] and rows[0][5:] == ["c", "x:1", "app=fe"]
    h, _ = printers.table_rows("ReplicaSet", [d])
    assert h == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert printers.resolve_resource("deploy")[0] == "Deployment" and printers.resolve_resource("rs")[0] == "ReplicaSet"
