"""Which objects a Git revision (or a plain directory) declares, and every problem that refuses it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from gitkube.api.errors import Problem
from gitkube.source.git import SourceError, list_manifests, open_repo, read_file, resolve
from gitkube.source.loader import DEFAULT_MAX_ALIAS_NODES, DEFAULT_MAX_BYTES, load_files

__all__ = ["Revision", "SourceError", "load_revision", "load_directory", "load_files"]


@dataclass(frozen=True)
class Revision:
    """A revision's desired objects; when `problems` is non-empty the revision is refused whole and `objects` is empty."""

    sha: str | None
    objects: list[Any] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    # (kind, namespace, name) -> (file, line) where each object is defined
    origins: dict[tuple[str, str, str], tuple[str, int | None]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Decides whether the revision is acceptable."""
        return not self.problems


def load_revision(repo: str, rev: str | None = None, path: str = "manifests",
                  extra_files: tuple[str, ...] = ("inventory.yaml",), max_bytes: int = DEFAULT_MAX_BYTES,
                  max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES) -> Revision:
    """Decides which objects revision `rev` of `repo` declares under `path`; raises SourceError if the revision cannot be read."""
    r = open_repo(repo)
    try:
        commit = resolve(r, rev)
        listed = list_manifests(r, commit, path, max_bytes)
        extras = {}
        for name in extra_files:
            data = read_file(r, commit, name)
            if data is not None:
                extras[name] = data
    finally:
        r.close()
    loaded = load_files(listed.files, max_bytes, max_alias_nodes)
    problems = sorted(listed.problems + loaded.problems, key=lambda p: (p.path, p.line or 0, p.field, p.message))
    return Revision(listed.sha, [] if problems else loaded.objects, problems, extras,
                    {} if problems else loaded.origins)


def load_directory(directory: str, max_bytes: int = DEFAULT_MAX_BYTES,
                   max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES) -> Revision:
    """Decides which objects a plain directory of manifests declares (no Git), with the same rules as a revision."""
    root = os.path.realpath(directory)
    files: list[tuple[str, bytes]] = []
    problems: list[Problem] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if os.path.islink(full):
                target = os.path.realpath(full)
                if target != root and not target.startswith(root + os.sep):
                    problems.append(Problem(rel, None, "", f"symlink to {os.readlink(full)!r} points outside the "
                                                           "directory and is refused"))
                continue  # a symlink inside is loaded through its target
            if not name.endswith((".yaml", ".yml", ".json")):
                continue
            size = os.path.getsize(full)
            if size > max_bytes:
                problems.append(Problem(rel, None, "", f"file is {size} bytes, more than the limit of "
                                                       f"{max_bytes} bytes"))
                continue
            with open(full, "rb") as f:
                files.append((rel, f.read()))
    loaded = load_files(files, max_bytes, max_alias_nodes)
    problems = sorted(problems + loaded.problems, key=lambda p: (p.path, p.line or 0, p.field, p.message))
    return Revision(None, [] if problems else loaded.objects, problems, {}, {} if problems else loaded.origins)
