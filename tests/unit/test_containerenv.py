"""A container's environment and command line as Kubernetes computes them (design §6)."""
from __future__ import annotations

import pytest

from gitkube.api import parse_object
from gitkube.reconcile.containerenv import EnvService, command_line, container_env, expand, service_env


@pytest.mark.parametrize("text,want", [
    ("$(A)", "alpha"),
    ("pre-$(A)-post", "pre-alpha-post"),
    ("$$(A)", "$(A)"),  # escaped
    ("$$$(A)", "$alpha"),
    ("$(NOPE)", "$(NOPE)"),  # unknown: as written
    ("$A ${A}", "$A ${A}"),  # not Kubernetes syntax
    ("$(A", "$(A"),  # unterminated
    ("foo$(EMPTY)bar", "foobar"),
    ("$", "$"),
    ("a$", "a$"),
    ("$(A)$(B)", "alphabeta"),
    ("", ""),
])
def test_expand_cases(text, want):
    assert expand(text, {"A": "alpha", "B": "beta", "EMPTY": ""}) == want


def pod(env=None, command=None, args=None):
    c = {"name": "c", "image": "busybox", "env": env or []}
    if command is not None:
        c["command"] = command
    if args is not None:
        c["args"] = args
    p = parse_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop",
                                                                      "labels": {"app": "w"}},
                      "spec": {"containers": [c], "serviceAccountName": "robot"}})
    return p, p.spec.containers[0]


def env_of(p, c, services=()):
    return dict(container_env(p, "uid-1", c, "n2", "198.18.162.5", "198.18.6.12", list(services)))


def test_field_refs():
    fr = lambda path: {"fieldRef": {"fieldPath": path}}  # noqa: E731
    p, c = pod([{"name": k, "valueFrom": fr(v)} for k, v in (
        ("N", "metadata.name"), ("NS", "metadata.namespace"), ("U", "metadata.uid"), ("NODE", "spec.nodeName"),
        ("PIP", "status.podIP"), ("HIP", "status.hostIP"), ("SA", "spec.serviceAccountName"))])
    assert env_of(p, c) == {"N": "web", "NS": "shop", "U": "uid-1", "NODE": "n2", "PIP": "198.18.162.5",
                            "HIP": "198.18.6.12", "SA": "robot"}


def test_env_expands_against_earlier_entries_only():
    p, c = pod([{"name": "LATE", "value": "$(B)"}, {"name": "A", "value": "a"}, {"name": "B", "value": "$(A)-b"},
                {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "C", "value": "$(N)/$(B)"}])
    assert env_of(p, c) == {"LATE": "$(B)", "A": "a", "B": "a-b", "N": "web", "C": "web/a-b"}


def test_service_variables_docker_links_style():
    svc = EnvService("redis-master", "10.0.0.11", (("db", 6379, "TCP"), (None, 9121, "TCP")))
    env = dict(service_env([svc]))
    assert env == {
        "REDIS_MASTER_SERVICE_HOST": "10.0.0.11", "REDIS_MASTER_SERVICE_PORT": "6379",
        "REDIS_MASTER_SERVICE_PORT_DB": "6379", "REDIS_MASTER_PORT": "tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP": "tcp://10.0.0.11:6379", "REDIS_MASTER_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_MASTER_PORT_6379_TCP_PORT": "6379", "REDIS_MASTER_PORT_6379_TCP_ADDR": "10.0.0.11",
        "REDIS_MASTER_PORT_9121_TCP": "tcp://10.0.0.11:9121", "REDIS_MASTER_PORT_9121_TCP_PROTO": "tcp",
        "REDIS_MASTER_PORT_9121_TCP_PORT": "9121", "REDIS_MASTER_PORT_9121_TCP_ADDR": "10.0.0.11",
    }
    assert service_env([EnvService("headless", "None", ((None, 80, "TCP"),))]) == []


def test_service_variables_feed_expansion_and_never_override_the_pods_own_names():
    svc = EnvService("db", "10.0.0.7", ((None, 5432, "TCP"),))
    p, c = pod([{"name": "DB_SERVICE_PORT", "value": "1"}, {"name": "URL", "value": "pg://$(DB_SERVICE_HOST):$(DB_SERVICE_PORT)"}])
    env = env_of(p, c, [svc])
    assert env["DB_SERVICE_HOST"] == "10.0.0.7" and env["DB_SERVICE_PORT"] == "1"
    assert env["URL"] == "pg://10.0.0.7:1"


@pytest.mark.parametrize("command,args,want", [
    (None, None, (None, None)),  # image ENTRYPOINT and CMD
    (None, ["a", "$(A)"], (None, ["a", "alpha"])),  # args replace CMD, ENTRYPOINT kept
    (["run", "$(A)"], None, (["run", "alpha"], [])),  # command replaces ENTRYPOINT and drops CMD
    (["run"], ["$$(A)", "$(NOPE)"], (["run"], ["$(A)", "$(NOPE)"])),
])
def test_command_line_vs_image_entrypoint(command, args, want):
    p, c = pod(command=command, args=args)
    assert command_line(c, {"A": "alpha"}) == want
