"""hostPath type checks: what the kubelet creates, and its messages when the node has the wrong thing."""
import pytest

from gitkube.reconcile.volumes import host_path_check

P = "/srv/data"


@pytest.mark.parametrize("type_", [None, ""])
@pytest.mark.parametrize("kind", [None, "directory", "file", "socket", "other"])
def test_default_type_checks_nothing(type_, kind):
    assert host_path_check(type_, P, kind) == (None, None)


@pytest.mark.parametrize("type_,kind,expect", [
    ("DirectoryOrCreate", None, ("directory", None)),
    ("DirectoryOrCreate", "directory", (None, None)),
    ("DirectoryOrCreate", "file", (None, f"hostPath type check failed: {P} is not a directory")),
    ("Directory", "directory", (None, None)),
    ("Directory", None, (None, f"hostPath type check failed: {P} is not a directory")),
    ("Directory", "file", (None, f"hostPath type check failed: {P} is not a directory")),
    ("FileOrCreate", None, ("file", None)),
    ("FileOrCreate", "file", (None, None)),
    ("FileOrCreate", "directory", (None, f"hostPath type check failed: {P} is not a file")),
    ("File", None, (None, f"hostPath type check failed: {P} is not a file")),
    ("File", "file", (None, None)),
    ("Socket", "socket", (None, None)),
    ("Socket", "file", (None, f"hostPath type check failed: {P} is not a socket file")),
    ("CharDevice", "char", (None, None)),
    ("CharDevice", "block", (None, f"hostPath type check failed: {P} is not a character device")),
    ("BlockDevice", "block", (None, None)),
    ("BlockDevice", None, (None, f"hostPath type check failed: {P} is not a block device")),
])
def test_typed_host_paths(type_, kind, expect):
    assert host_path_check(type_, P, kind) == expect
