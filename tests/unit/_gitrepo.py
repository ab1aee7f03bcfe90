"""Test helper: a real Git repository built with dulwich, committing given files (and symlinks)."""
from __future__ import annotations

import os
import time

from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.repo import Repo

SYMLINK = 0o120000
FILE = 0o100644
DIR = 0o040000


class Link(str):
    """A symlink's target, to commit a symlink instead of a file."""


def _tree(repo: Repo, entries: dict[str, object]) -> bytes:
    tree = Tree()
    for name, value in entries.items():
        if isinstance(value, dict):
            tree.add(name.encode(), DIR, _tree(repo, value))
        else:
            blob = Blob.from_string(value.encode() if isinstance(value, str) else value)  # type: ignore[arg-type]
            repo.object_store.add_object(blob)
            tree.add(name.encode(), SYMLINK if isinstance(value, Link) else FILE, blob.id)
    repo.object_store.add_object(tree)
    return tree.id


def commit_files(repo_path: str, files: dict[str, bytes | str], branch: str = "main", message: str = "test",
                 bare: bool = False, tag: str | None = None) -> str:
    """Commits `files` (path -> content, or Link(target)) as the whole tree on `branch`; returns the commit SHA."""
    if not os.path.exists(os.path.join(repo_path, ".git")) and not os.path.exists(os.path.join(repo_path, "HEAD")):
        os.makedirs(repo_path, exist_ok=True)
        repo = Repo.init_bare(repo_path) if bare else Repo.init(repo_path)
        repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/" + branch.encode())
    else:
        repo = Repo(repo_path)
    nested: dict[str, object] = {}
    for path, content in files.items():
        parts = path.split("/")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})  # type: ignore[assignment]
        node[parts[-1]] = content
    c = Commit()
    c.tree = _tree(repo, nested)
    ref = b"refs/heads/" + branch.encode()
    try:
        c.parents = [repo.refs[ref]]
    except KeyError:
        c.parents = []
    c.author = c.committer = b"Test <test@example.com>"
    c.author_time = c.commit_time = int(time.time())
    c.author_timezone = c.commit_timezone = 0
    c.message = message.encode()
    repo.object_store.add_object(c)
    repo.refs[ref] = c.id
    if tag:
        t = Tag()
        t.tagger = c.author
        t.message = b"tag"
        t.name = tag.encode()
        t.object = (Commit, c.id)
        t.tag_time = c.commit_time
        t.tag_timezone = 0
        repo.object_store.add_object(t)
        repo.refs[b"refs/tags/" + tag.encode()] = t.id
    repo.close()
    return c.id.decode()
