"""Names, label keys and values follow apimachinery's rules."""
import pytest

from gitkube.api import names


@pytest.mark.parametrize("value,ok", [
    ("a", True), ("redis-master", True), ("a1", True), ("1a", True), ("-a", False), ("a-", False), ("A", False),
    ("a.b", False), ("a_b", False), ("a" * 63, True), ("a" * 64, False), ("", False),
])
def test_dns1123_label(value, ok) -> None:
    assert (names.dns1123_label(value) == []) is ok


@pytest.mark.parametrize("value,ok", [
    ("a.b.c", True), ("redis-master", True), ("a..b", False), (".a", False), ("a" * 253, True),
    ("a" * 254, False), ("Foo", False),
])
def test_dns1123_subdomain(value, ok) -> None:
    assert (names.dns1123_subdomain(value) == []) is ok


@pytest.mark.parametrize("value,ok", [("web", True), ("1web", False), ("web-1", True), ("web.1", False)])
def test_dns1035_label(value, ok) -> None:
    assert (names.dns1035_label(value) == []) is ok


@pytest.mark.parametrize("value,ok", [
    ("http", True), ("http-alt", True), ("8080", False), ("a--b", False), ("-http", False),
    ("a" * 15, True), ("a" * 16, False), ("HTTP", False),
])
def test_iana_svc_name(value, ok) -> None:
    assert (names.iana_svc_name(value) == []) is ok


@pytest.mark.parametrize("value,ok", [
    ("app", True), ("app.kubernetes.io/name", True), ("example.com/a_b.c", True), ("/a", False), ("a/", False),
    ("Bad.Domain/a", False), ("a" * 63, True), ("a" * 64, False), ("a b", False), ("_a", False),
])
def test_label_keys(value, ok) -> None:
    assert (names.qualified_name(value) == []) is ok


@pytest.mark.parametrize("value,ok", [("", True), ("v1.2_3-x", True), ("-x", False), ("a b", False),
                                      ("v" * 63, True), ("v" * 64, False)])
def test_label_values(value, ok) -> None:
    assert (names.label_value(value) == []) is ok


@pytest.mark.parametrize("ref", [
    "busybox", "busybox:1.36", "gitkube/busybox:latest", "registry.local:5000/team/app:v1.2_3",
    "localhost/a__b.c-d", "[::1]:5000/x", "redis@sha256:" + "a" * 64, "gcr.io/k8s/pause:3.9@sha256:" + "0" * 64,
])
def test_image_reference_accepts_docker_grammar(ref) -> None:
    assert names.image_reference(ref) == []


@pytest.mark.parametrize("ref", [
    "busybox;touch /tmp/x", "busybox touch", "Busybox", "busybox:", ":tag", "a//b", "-a", "a:b:c", "$(id)",
    "busybox@sha256:abc", "a" * 256, "busybox:" + "t" * 129, "a_-b", "a/B",
])
def test_image_reference_refuses_the_rest(ref) -> None:
    assert names.image_reference(ref)


@pytest.mark.parametrize("path,ok", [("/data", True), ("/tmp/../etc", False), ("/..", False), ("data", False),
                                     ("/a/..b/c", True), ("/a/b/..", False)])
def test_host_path(path, ok) -> None:
    assert (names.host_path(path) == []) is ok
