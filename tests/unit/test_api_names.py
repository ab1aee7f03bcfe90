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
