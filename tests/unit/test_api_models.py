"""Documents become models with Kubernetes' defaults, or are refused with every error and its field path."""
import pytest

from gitkube.api import (
    KINDS, ObjectInvalid, Pod, ReplicationController, Service, default_pull_policy, format_path, parse_object, to_k8s,
)


def pod(**spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def errors(doc):
    with pytest.raises(ObjectInvalid) as e:
        parse_object(doc)
    return e.value.errors


@pytest.mark.parametrize("image,policy", [
    ("busybox", "Always"), ("busybox:latest", "Always"), ("busybox:1.36", "IfNotPresent"),
    ("localhost:5000/busybox", "Always"), ("localhost:5000/busybox:1", "IfNotPresent"),
    ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy_default(image, policy) -> None:
    assert default_pull_policy(image) == policy


def test_pod_defaults_are_kubernetes_defaults() -> None:
    doc = pod()
    doc["spec"]["containers"][0].update(
        ports=[{"containerPort": 80}],
        livenessProbe={"httpGet": {"port": 80}},
        readinessProbe={"tcpSocket": {"port": 80}},
    )
    p = parse_object(doc)
    assert isinstance(p, Pod)
    assert p.metadata.namespace == "default"
    assert p.spec.restartPolicy == "Always"
    assert p.spec.terminationGracePeriodSeconds == 30
    assert p.spec.dnsPolicy == "ClusterFirst"
    c = p.spec.containers[0]
    assert c.imagePullPolicy == "Always"
    assert c.ports[0].protocol == "TCP"
    lp = c.livenessProbe
    assert (lp.initialDelaySeconds, lp.periodSeconds, lp.timeoutSeconds, lp.successThreshold, lp.failureThreshold) == (
        0, 10, 1, 1, 3)
    assert lp.httpGet.path == "/" and lp.httpGet.scheme == "HTTP"
    assert to_k8s(p)["spec"]["containers"][0]["livenessProbe"]["httpGet"] == {"path": "/", "port": 80, "scheme": "HTTP"}


def test_rc_and_service_defaults() -> None:
    rc = parse_object({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "r"},
                       "spec": {"template": {"metadata": {"labels": {"app": "x"}},
                                             "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}})
    assert isinstance(rc, ReplicationController)
    assert rc.spec.replicas == 1 and rc.spec.selector == {"app": "x"}
    svc = parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                        "spec": {"selector": {"app": "x"}, "ports": [{"port": 6379}]}})
    assert isinstance(svc, Service)
    assert svc.spec.type == "ClusterIP" and svc.spec.sessionAffinity == "None"
    assert svc.spec.ports[0].targetPort == 6379 and svc.spec.ports[0].protocol == "TCP"


def test_models_are_frozen() -> None:
    p = parse_object(pod())
    with pytest.raises(Exception):
        p.spec.nodeName = "x"  # type: ignore[misc]


def test_all_errors_are_reported_with_paths() -> None:
    doc = pod()
    doc["spec"]["containers"] = [
        {"name": "c", "image": "i", "imagee": "x", "ports": [{"containerPort": 0}]},
        {"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 65536}]},
    ]
    doc["spec"]["containers"][0]["ports"][0]["containerPort"] = "80"
    got = dict(errors(doc))
    assert set(got) == {"spec.containers[0].imagee", "spec.containers[0].ports[0].containerPort"}
    doc["spec"]["containers"][0].pop("imagee")
    doc["spec"]["containers"][0]["ports"][0]["containerPort"] = 0
    got = dict(errors(doc))
    assert set(got) == {"spec.containers[0].ports[0].containerPort", "spec.containers[1].name",
                        "spec.containers[1].ports[0].hostPort"}


@pytest.mark.parametrize("mutate,path", [
    (lambda d: d.update(apiVersion="apps/v1"), "apiVersion"),
    (lambda d: d.update(kind="StatefulSet"), "kind"),
    (lambda d: d["metadata"].update(name="Bad_Name"), "metadata.name"),
    (lambda d: d["metadata"].pop("name"), "metadata.name"),
    (lambda d: d["metadata"].update(labels={"a": "b c"}), "metadata.labels.a"),
    (lambda d: d["metadata"].update(labels={"example.com/x": "b c"}), "metadata.labels[example.com/x]"),
    (lambda d: d["spec"].update(hostNetwork="yes"), "spec.hostNetwork"),
    (lambda d: d["spec"].update(restartPolicy="Sometimes"), "spec.restartPolicy"),
    (lambda d: d["spec"]["containers"][0].update(env=[{"name": "1A", "value": "x"}]), "spec.containers[0].env[0].name"),
    (lambda d: d["spec"].update(volumes=[{"name": "v"}]), "spec.volumes[0]"),
    (lambda d: d["spec"].update(volumes=[{"name": "v", "gitRepo": {}}]), "spec.volumes[0].gitRepo"),
    (lambda d: d["spec"]["containers"][0].update(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
     "spec.containers[0].resources.requests.cpu"),
    (lambda d: d["spec"]["containers"][0].update(resources={"requests": {"gpu": "1"}}),
     "spec.containers[0].resources.requests.gpu"),
    (lambda d: d["spec"]["containers"][0].update(readinessProbe={"exec": {"command": ["x"]}, "periodSeconds": 0}),
     "spec.containers[0].readinessProbe.periodSeconds"),
    (lambda d: d["spec"]["containers"][0].update(livenessProbe={"httpGet": {"port": 1.5}}),
     "spec.containers[0].livenessProbe.httpGet.port"),
    (lambda d: d["spec"]["containers"][0].update(ports=[{"containerPort": 80, "name": "HTTP"}]),
     "spec.containers[0].ports[0].name"),
])
def test_refusals_name_the_field(mutate, path) -> None:
    doc = pod()
    mutate(doc)
    assert path in dict(errors(doc))


def test_service_rules() -> None:
    base = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    import copy
    d = copy.deepcopy(base)
    d["spec"]["ports"][0]["nodePort"] = 30001  # nodePort on a ClusterIP service
    assert "spec.ports[0].nodePort" in dict(errors(d))
    d = copy.deepcopy(base)
    d["spec"]["ports"].append({"port": 81})  # two ports need names
    assert "spec.ports[0].name" in dict(errors(d))
    d = copy.deepcopy(base)
    d["metadata"]["name"] = "1svc"  # Service names are DNS-1035 labels
    assert "metadata.name" in dict(errors(d))
    d = copy.deepcopy(base)
    d["spec"]["type"] = "NodePort"
    d["spec"]["ports"][0]["nodePort"] = 32767
    assert parse_object(d).spec.ports[0].nodePort == 32767


def test_cluster_scoped_kinds_get_no_namespace() -> None:
    ns = parse_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "staging"}})
    assert ns.metadata.namespace is None
    assert "metadata.name" in dict(errors({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}))
    assert set(KINDS) >= {"Pod", "ReplicationController", "Service", "Namespace", "Node", "Event", "Endpoints"}


def test_format_path() -> None:
    assert format_path(("spec", "containers", 0, "ports", 1, "hostPort")) == "spec.containers[0].ports[1].hostPort"
    assert format_path(("metadata", "labels", "app.kubernetes.io/name")) == "metadata.labels[app.kubernetes.io/name]"


def test_not_a_mapping() -> None:
    assert errors([1, 2]) == [("", "expected an object (a mapping), got list")]
