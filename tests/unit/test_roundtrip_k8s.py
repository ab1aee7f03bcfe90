"""Our Kubernetes JSON survives the official client's models without losing or renaming any field."""
from __future__ import annotations

import inspect
import json
from datetime import datetime
from pathlib import Path

import pytest
from kubernetes import client

from gitkube.api import parse_object, to_k8s
from gitkube.source import load_directory

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
CLIENT_TYPES = {
    "Pod": "V1Pod",
    "ReplicationController": "V1ReplicationController",
    "Service": "V1Service",
    "Namespace": "V1Namespace",
    "Node": "V1Node",
    "Event": "CoreV1Event",
    "Endpoints": "V1Endpoints",
    "Deployment": "V1Deployment",
    "ConfigMap": "V1ConfigMap",
    "Secret": "V1Secret",
    "ReplicaSet": "V1ReplicaSet",
}


class _FakeResponse:
    def __init__(self, data: str):
        self.data = data


def _through_client(doc: dict) -> dict:
    cfg = client.Configuration()
    cfg.client_side_validation = True
    api = client.ApiClient(cfg)
    text = json.dumps(doc)
    params = inspect.signature(api.deserialize).parameters
    if "response_text" in params:  # kubernetes >= 32 takes the body itself
        obj = api.deserialize(text, CLIENT_TYPES[doc["kind"]], "application/json")
    else:
        obj = api.deserialize(_FakeResponse(text), CLIENT_TYPES[doc["kind"]])
    return api.sanitize_for_serialization(obj)


def _normalise_times(value):
    # The client turns timestamps into datetimes and prints them as +00:00; same instant, other spelling.
    if isinstance(value, dict):
        return {k: _normalise_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise_times(v) for v in value]
    if isinstance(value, str) and len(value) >= 20 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
        except ValueError:
            return value
    return value


def _example_objects():
    from gitkube.source.secrets import load_identities

    rev = load_directory(str(MANIFESTS), identities=load_identities(str(MANIFESTS / "DEMO-ONLY-age-identity.txt")))
    assert rev.problems == [], [str(p) for p in rev.problems]
    return rev.objects


def test_every_example_manifest_is_covered() -> None:
    files = sorted(p for p in MANIFESTS.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    assert len(files) >= 11
    kinds = {o.kind for o in _example_objects()}
    assert {"Pod", "ReplicationController", "Service"} <= kinds


@pytest.mark.parametrize("obj", _example_objects(), ids=lambda o: f"{o.kind}/{o.metadata.name}")
def test_example_round_trips_through_the_official_client(obj) -> None:
    ours = to_k8s(obj)
    assert _through_client(ours) == ours
    # and back into our model unchanged (a Secret's values are redacted: not a Secret one could apply)
    if obj.kind != "Secret":
        assert parse_object(ours) == obj


FULL_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "full", "namespace": "default", "uid": "6f1c3a52-0000-4000-8000-000000000001", "generation": 2,
        "resourceVersion": "17", "creationTimestamp": "2024-05-01T10:00:00Z", "labels": {"app": "full"},
        "annotations": {"note": "x"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicationController", "name": "rc",
                             "uid": "6f1c3a52-0000-4000-8000-000000000002", "controller": True,
                             "blockOwnerDeletion": True}],
    },
    "spec": {
        "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                    {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}}],
        "containers": [{
            "name": "main", "image": "gitkube/busybox:1.36", "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh"], "args": ["-c", "sleep 1"], "workingDir": "/tmp",
            "env": [{"name": "A", "value": "1"},
                    {"name": "IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
            "ports": [{"containerPort": 8080, "hostPort": 18080, "hostIP": "0.0.0.0", "protocol": "TCP",
                       "name": "http"}],
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch", "readOnly": True, "subPath": "a"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "host": "127.0.0.1",
                                          "scheme": "HTTP", "httpHeaders": [{"name": "X", "value": "y"}]},
                              "initialDelaySeconds": 3, "periodSeconds": 5, "timeoutSeconds": 2,
                              "successThreshold": 1, "failureThreshold": 4},
            "readinessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 0, "periodSeconds": 10,
                               "timeoutSeconds": 1, "successThreshold": 2, "failureThreshold": 3},
            "lifecycle": {"postStart": {"exec": {"command": ["true"]}},
                          "preStop": {"httpGet": {"path": "/stop", "port": 8080, "scheme": "HTTP"}}},
            "stdin": True, "tty": True,
        }],
        "restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 5, "activeDeadlineSeconds": 600,
        "dnsPolicy": "ClusterFirst", "nodeSelector": {"disk": "ssd"}, "nodeName": "node-1",
        "hostNetwork": False, "shareProcessNamespace": True, "hostname": "full", "subdomain": "sub",
        "serviceAccountName": "default",
    },
    "status": {
        "phase": "Running", "podIP": "198.18.101.5", "hostIP": "198.18.0.11", "startTime": "2024-05-01T10:00:01Z",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:05Z"}],
        "containerStatuses": [{
            "name": "main", "ready": True, "restartCount": 1, "image": "gitkube/busybox:1.36",
            "imageID": "sha256:abc", "containerID": "docker://abc", "started": True,
            "state": {"running": {"startedAt": "2024-05-01T10:00:02Z"}},
            "lastState": {"terminated": {"exitCode": 137, "signal": 9, "reason": "Error", "message": "killed",
                                         "startedAt": "2024-05-01T09:00:00Z", "finishedAt": "2024-05-01T10:00:00Z",
                                         "containerID": "docker://old"}},
        }],
    },
}

OBSERVED = [
    FULL_POD,
    {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "labels": {"disk": "ssd"}},
     "spec": {"unschedulable": True},
     "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "allocatable": {"cpu": "2"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "lastHeartbeatTime": "2024-05-01T10:00:00Z"}],
                "addresses": [{"type": "InternalIP", "address": "198.18.0.11"}],
                "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1",
                             "osImage": "Debian", "containerRuntimeVersion": "docker://24", "kubeletVersion": "gitkube",
                             "kubeProxyVersion": "gitkube", "operatingSystem": "linux", "architecture": "amd64"}}},
    {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "full.1", "namespace": "default"},
     "involvedObject": {"kind": "Pod", "namespace": "default", "name": "full", "uid": "u", "apiVersion": "v1"},
     "reason": "Started", "message": "Started container main", "type": "Normal", "count": 2,
     "firstTimestamp": "2024-05-01T10:00:00Z", "lastTimestamp": "2024-05-01T10:01:00Z",
     "source": {"component": "gitkube", "host": "node-1"}},
    {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
     "subsets": [{"addresses": [{"ip": "198.18.101.5", "nodeName": "node-1",
                                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "full"}}],
                  "notReadyAddresses": [{"ip": "198.18.102.7"}],
                  "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]},
    {"apiVersion": "v1", "kind": "ReplicationController",
     "metadata": {"name": "rc", "namespace": "default", "generation": 3},
     "spec": {"replicas": 2, "selector": {"app": "x"},
              "template": {"metadata": {"labels": {"app": "x"}},
                           "spec": {"containers": [{"name": "c", "image": "i:1", "imagePullPolicy": "IfNotPresent"}],
                                    "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                                    "dnsPolicy": "ClusterFirst"}}},
     "status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1, "availableReplicas": 1,
                "observedGeneration": 3}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "staging"}, "status": {"phase": "Active"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
     "spec": {"type": "NodePort", "clusterIP": "198.19.0.10", "selector": {"app": "x"}, "sessionAffinity": "None",
              "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http", "nodePort": 30080},
                        {"name": "alt", "protocol": "TCP", "port": 81, "targetPort": 8081}]}},
]


@pytest.mark.parametrize("doc", OBSERVED, ids=lambda d: d["kind"])
def test_every_supported_field_survives_the_official_client(doc) -> None:
    ours = to_k8s(parse_object(doc))
    assert ours == doc, "a fully specified object must come out of our model as it went in"
    assert _normalise_times(_through_client(ours)) == _normalise_times(ours)


@pytest.mark.parametrize("doc", OBSERVED, ids=lambda d: d["kind"])
def test_every_kind_as_served_survives_the_official_client(doc) -> None:
    """What `get -o json` and the API server give out (derived fields added) is what the client reads back."""
    from gitkube.api.printers import kube_object

    served = kube_object(to_k8s(parse_object(doc)))
    assert to_k8s(parse_object(served)) == served, "served fields are all in our model"
    assert _normalise_times(_through_client(served)) == _normalise_times(served)
    if doc["kind"] == "Pod":
        assert served["status"]["qosClass"] == "Burstable"
        assert served["status"]["hostIPs"] == [{"ip": "198.18.0.11"}]
    if doc["kind"] == "Service":
        assert served["spec"]["clusterIPs"] == ["198.19.0.10"] and served["spec"]["ipFamilies"] == ["IPv4"]


# Kinds the examples above do not carry with a status, as the store holds them after a pass.
SERVED_MORE = [
    {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "web", "namespace": "default", "uid": "6f1c3a52-0000-4000-8000-000000000010",
                  "resourceVersion": "40", "generation": 2, "creationTimestamp": "2024-05-01T10:00:00Z",
                  "labels": {"app": "web"}, "annotations": {"deployment.kubernetes.io/revision": "2"}},
     "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{"name": "c", "image": "i:2", "imagePullPolicy": "IfNotPresent"}]}}},
     "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
                "availableReplicas": 3,
                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                "message": "Deployment has minimum availability.",
                                "lastUpdateTime": "2024-05-01T10:01:00Z", "lastTransitionTime": "2024-05-01T10:01:00Z"}]}},
    {"apiVersion": "apps/v1", "kind": "ReplicaSet",
     "metadata": {"name": "web-5d8f7c9b4", "namespace": "default", "resourceVersion": "41",
                  "labels": {"app": "web", "pod-template-hash": "5d8f7c9b4"},
                  "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                       "uid": "6f1c3a52-0000-4000-8000-000000000010", "controller": True,
                                       "blockOwnerDeletion": True}]},
     "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f7c9b4"}},
              "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "5d8f7c9b4"}},
                           "spec": {"containers": [{"name": "c", "image": "i:2", "imagePullPolicy": "IfNotPresent"}]}}},
     "status": {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                "observedGeneration": 1}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf", "namespace": "default"},
     "data": {"app.properties": "mode=production\n"}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"},
     "type": "Opaque", "data": {"password": "c2VjcmV0"}},
]
CLIENT_TYPES.setdefault("ConfigMap", "V1ConfigMap")
CLIENT_TYPES.setdefault("Secret", "V1Secret")


def test_every_kind_gitkube_serves_has_a_round_trip_case() -> None:
    from gitkube.api import resources

    covered = {d["kind"] for d in OBSERVED + SERVED_MORE}
    assert {r.kind for r in resources.RESOURCES} <= covered, "add a served object of the new kind to this file"
    assert any(d["kind"] == "Node" and d["status"]["nodeInfo"]["bootID"] for d in OBSERVED)


@pytest.mark.parametrize("doc", SERVED_MORE, ids=lambda d: d["kind"])
def test_more_kinds_as_served_survive_the_official_client(doc) -> None:
    from gitkube.api.printers import kube_object

    served = kube_object(to_k8s(parse_object(doc)))
    assert _normalise_times(_through_client(served)) == _normalise_times(served)
