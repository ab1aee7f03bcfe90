"""Which objects a Git revision (or a plain directory) declares, and every problem that refuses it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from gitkube.api.config import ConfigData, config_data, redact_model
from gitkube.api.errors import Problem
from gitkube.source.git import SourceError, list_manifests, open_repo, read_file, resolve
from gitkube.source.loader import DEFAULT_MAX_ALIAS_NODES, DEFAULT_MAX_BYTES, Loaded, load_files
from gitkube.source.secrets import PLAINTEXT_MARKER, Identities, decrypt_files

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
    # (kind, namespace, name) -> the values of each ConfigMap and Secret (`objects` holds Secrets redacted)
    config: dict[tuple[str, str, str], ConfigData] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """Decides whether the revision is acceptable."""
        return not self.problems


def _split_config(loaded: Loaded, ids: Identities) -> tuple[list[Any], dict]:
    """The objects with every Secret redacted, and the values of every ConfigMap and Secret beside them."""
    config = {}
    objects = []
    for o in loaded.objects:
        if o.kind in ("ConfigMap", "Secret"):
            config[(o.kind, o.metadata.namespace or "default", o.metadata.name)] = config_data(o, ids.digest_key)
        objects.append(redact_model(o, ids.digest_key))
    return objects, config


def load_revision(repo: str, rev: str | None = None, path: str = "manifests",
                  extra_files: tuple[str, ...] = ("inventory.yaml",), max_bytes: int = DEFAULT_MAX_BYTES,
                  max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES, identities: Identities | None = None) -> Revision:
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
        root = path.strip("/")
        plaintext_ok = any(read_file(r, commit, m) is not None
                           for m in (PLAINTEXT_MARKER, f"{root}/{PLAINTEXT_MARKER}" if root else PLAINTEXT_MARKER))
    finally:
        r.close()
    ids = identities or Identities()
    files, undecryptable = decrypt_files(listed.files, ids)
    loaded = load_files(files, max_bytes, max_alias_nodes, plaintext_ok)
    problems = sorted(listed.problems + undecryptable + loaded.problems,
                      key=lambda p: (p.path, p.line or 0, p.field, p.message))
    objects, config = _split_config(loaded, ids) if not problems else ([], {})
    return Revision(listed.sha, objects, problems, extras, {} if problems else loaded.origins, config)


def load_directory(directory: str, max_bytes: int = DEFAULT_MAX_BYTES,
                   max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES, identities: Identities | None = None) -> Revision:
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
            if not name.endswith((".yaml", ".yml", ".json", ".yaml.age", ".yml.age", ".json.age")):
                continue
            size = os.path.getsize(full)
            if size > max_bytes:
                problems.append(Problem(rel, None, "", f"file is {size} bytes, more than the limit of "
                                                       f"{max_bytes} bytes"))
                continue
            with open(full, "rb") as f:
                files.append((rel, f.read()))
    ids = identities or Identities()
    files, undecryptable = decrypt_files(files, ids)
    loaded = load_files(files, max_bytes, max_alias_nodes, os.path.exists(os.path.join(root, PLAINTEXT_MARKER)))
    problems = sorted(problems + undecryptable + loaded.problems,
                      key=lambda p: (p.path, p.line or 0, p.field, p.message))
    objects, config = _split_config(loaded, ids) if not problems else ([], {})
    return Revision(None, objects, problems, {}, {} if problems else loaded.origins, config)
