"""hostPath `type` checks, as the kubelet makes them before a container that mounts the path starts.

Pure: given the type asked for and what the node has at the path, say what to create or why the mount fails
(the kubelet's own messages, so `describe` reads as Kubernetes' would)."""
from __future__ import annotations

from typing import Literal

# What a node has at a path: a directory, file, socket, char/block device, something else, or nothing (None).
PathKind = Literal["directory", "file", "socket", "char", "block", "other"]
Create = Literal["directory", "file"]

_WANT: dict[str, tuple[str, str]] = {  # type -> (kind it must be, what the message says it is not)
    "DirectoryOrCreate": ("directory", "a directory"),
    "Directory": ("directory", "a directory"),
    "FileOrCreate": ("file", "a file"),
    "File": ("file", "a file"),
    "Socket": ("socket", "a socket file"),
    "CharDevice": ("char", "a character device"),
    "BlockDevice": ("block", "a block device"),
}


def host_path_check(type_: str | None, path: str, kind: PathKind | None) -> tuple[Create | None, str | None]:
    """(what to create first, or None; the mount failure, or None) for a hostPath of `type_` finding `kind`.

    The default type ("" or unset) checks nothing. DirectoryOrCreate creates a missing directory (with its
    parents, mode 0755); FileOrCreate creates a missing empty file (mode 0644) but not its parent directory."""
    if not type_:
        return None, None
    want, noun = _WANT[type_]
    if kind is None and type_ == "DirectoryOrCreate":
        return "directory", None
    if kind is None and type_ == "FileOrCreate":
        return "file", None
    if kind != want:
        return None, f"hostPath type check failed: {path} is not {noun}"
    return None, None
