"""apps/v1 Deployment and ReplicaSet: defaults and validation as the apiserver does them."""
from __future__ import annotations

import pytest

from gitkube.api import ObjectInvalid, parse_object, to_k8s


def doc(**spec) -> dict:
    base = {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {**base, **spec}}


def errors(d) -> dict:
    with pytest.raises(ObjectInvalid) as e:
        parse_object(d)
    return dict(e.value.errors)


def test_defaults_as_kubernetes():
    spec = to_k8s(parse_object(doc()))["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (spec["replicas"], spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"], spec["minReadySeconds"]) == (1, 10, 600, 0)
    assert to_k8s(parse_object(doc(strategy={"type": "Recreate"})))["spec"]["strategy"] == {"type": "Recreate"}


def test_both_zero_refused_and_percent_checked():
    e = errors(doc(strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}))
    assert "may not be 0 when `maxSurge` is 0" in e["spec.strategy.rollingUpdate.maxUnavailable"]
    e = errors(doc(strategy={"rollingUpdate": {"maxSurge": "1x", "maxUnavailable": "150%"}}))
    assert "valid percent string" in e["spec.strategy.rollingUpdate.maxSurge"]
    assert "must not be greater than 100%" in e["spec.strategy.rollingUpdate.maxUnavailable"]
    e = errors(doc(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}))
    assert "may not be specified when strategy `type` is 'Recreate'" in e["spec.strategy.rollingUpdate"]


def test_selector_rules():
    e = errors(doc(selector={"matchLabels": {"app": "other"}}))
    assert "does not match template `labels`" in e["spec.template.metadata.labels"]
    e = errors(doc(selector={}))
    assert "empty selector is invalid" in e["spec.selector"]
    e = errors(doc(selector={"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}))
    assert "may not be specified" in e["spec.selector.matchExpressions[0].values"]
    ok = parse_object(doc(selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}))
    assert ok.spec.selector.matchExpressions[0].operator == "In"


def test_deadline_after_min_ready_and_api_version():
    e = errors(doc(minReadySeconds=10, progressDeadlineSeconds=5))
    assert "must be greater than minReadySeconds" in e["spec.progressDeadlineSeconds"]
    e = errors({**doc(), "apiVersion": "v1"})
    assert e["apiVersion"] == 'Unsupported value: "v1": supported values: "apps/v1"'
    rs = {**doc(), "kind": "ReplicaSet"}
    rs["spec"] = {k: v for k, v in rs["spec"].items() if k in ("selector", "template")}
    assert parse_object(rs).kind == "ReplicaSet"
