"""Which files a Git revision holds under a path, read with dulwich from a working tree or a bare repo."""
from __future__ import annotations

import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dulwich.errors import NotGitRepository
from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.repo import Repo

from gitkube.api.errors import Problem

S_IFLNK = 0o120000
S_IFGITLINK = 0o160000
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json", ".yaml.age", ".yml.age", ".json.age")  # *.age: age-encrypted
MANIFEST_SUFFIXES_B = tuple(s.encode() for s in MANIFEST_SUFFIXES)


class SourceError(Exception):
    """The repository or revision cannot be read at all (not a repo, unknown revision): not a manifest problem."""


@dataclass(frozen=True)
class TreeFiles:
    """The manifest files of one revision under a path, plus what was refused while listing them."""

    sha: str
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (path relative to repo root, content)
    problems: list[Problem] = field(default_factory=list)


def open_repo(path: str) -> Repo:
    """Opens a working-tree or bare repository; raises SourceError when `path` is not one."""
    try:
        return Repo(path)
    except (NotGitRepository, FileNotFoundError, NotADirectoryError) as e:
        raise SourceError(f"{path}: not a Git repository") from e


def _peel(repo: Repo, sha: bytes) -> Commit:
    obj = repo[sha]
    while isinstance(obj, Tag):
        obj = repo[obj.object[1]]
    if not isinstance(obj, Commit):
        raise SourceError(f"{sha.decode()} is not a commit")
    return obj


def resolve(repo: Repo, rev: str | None) -> Commit:
    """Decides which commit `rev` names: a branch, tag, full or abbreviated SHA, or None for HEAD (the checked-out branch)."""
    if rev is None or rev == "HEAD":
        try:
            return _peel(repo, repo.head())
        except KeyError:
            raise SourceError("the repository has no commits (HEAD does not resolve)") from None
    raw = rev.encode()
    refs = repo.get_refs()
    for candidate in (raw, b"refs/heads/" + raw, b"refs/tags/" + raw, b"refs/remotes/" + raw):
        if candidate in refs:
            return _peel(repo, refs[candidate])
    hexdigits = set(b"0123456789abcdef")
    low = raw.lower()
    if 4 <= len(low) <= 40 and set(low) <= hexdigits:
        if len(low) == 40:
            try:
                return _peel(repo, low)
            except KeyError:
                pass
        else:
            matches = {sha for sha in repo.object_store if sha.startswith(low)}
            if len(matches) == 1:
                return _peel(repo, matches.pop())
            if len(matches) > 1:
                raise SourceError(f"revision {rev!r} is ambiguous")
    raise SourceError(f"unknown revision {rev!r}")


def _lookup(repo: Repo, tree: Tree, path: str) -> tuple[int, bytes] | None:
    mode, sha = stat.S_IFDIR, tree.id
    for part in [p for p in path.split("/") if p]:
        obj = repo[sha]
        if not isinstance(obj, Tree):
            return None
        try:
            mode, sha = obj[part.encode()]
        except KeyError:
            return None
    return mode, sha


def read_file(repo: Repo, commit: Commit, path: str) -> bytes | None:
    """Gives the content of one regular file of the revision, or None when the revision has no such file."""
    found = _lookup(repo, repo[commit.tree], path)
    if found is None or stat.S_ISDIR(found[0]) or found[0] in (S_IFLNK, S_IFGITLINK):
        return None
    blob = repo[found[1]]
    return blob.data if isinstance(blob, Blob) else None


def list_manifests(repo: Repo, commit: Commit, path: str = "manifests", max_bytes: int = 1 << 20) -> TreeFiles:
    """Decides which manifest files (.yaml/.yml/.json) lie under `path` in the revision, refusing escaping symlinks and oversized files."""
    root = posixpath.normpath(path.strip("/")) if path.strip("/") else ""
    if root == ".":
        root = ""
    out = TreeFiles(sha=commit.id.decode())
    found = _lookup(repo, repo[commit.tree], root)
    if found is None or not stat.S_ISDIR(found[0]):
        out.problems.append(Problem(root or ".", None, "", f"no such directory in revision {out.sha[:12]}"))
        return out
    stack: list[tuple[str, bytes]] = [(root, found[1])]
    while stack:
        dir_path, tree_sha = stack.pop()
        tree = repo[tree_sha]
        for entry in tree.iteritems():
            name = entry.path.decode("utf-8", "surrogateescape")
            rel = f"{dir_path}/{name}" if dir_path else name
            mode = entry.mode
            if stat.S_ISDIR(mode):
                stack.append((rel, entry.sha))
            elif mode == S_IFGITLINK:
                continue  # a submodule's content is not in this repository
            elif mode == S_IFLNK:
                target = repo[entry.sha].data.decode("utf-8", "surrogateescape")
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
                inside = not target.startswith("/") and (
                    root == "" and not resolved.startswith("..") or resolved == root
                    or resolved.startswith(root + "/"))
                if not inside:
                    out.problems.append(Problem(rel, None, "", f"symlink to {target!r} points outside {root or '.'}/"
                                                               " and is refused"))
                # A symlink inside the path names a file that is loaded in its own right; loading it
                # twice would only define the same objects twice.
            elif name.endswith(MANIFEST_SUFFIXES):
                blob = repo[entry.sha]
                size = blob.raw_length()
                if size > max_bytes:
                    out.problems.append(Problem(rel, None, "", f"file is {size} bytes, more than the limit of "
                                                               f"{max_bytes} bytes"))
                    continue
                out.files.append((rel, blob.data))
    out.files.sort()
    return out


@dataclass
class WalkedFile:
    """One manifest file met by a tree walk: its path and blob id, and either what a cache already knows about
    it (`known`) or its content to parse."""

    path: str
    blob: str
    data: bytes | None = None
    known: Any = None


@dataclass
class Walk:
    """The manifest files of one revision under a path, found by a tree walk that skips what a cache knows."""

    sha: str
    files: list[WalkedFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Trees walked entry by entry that a cache may keep: (tree id, its path, index range of its files, its
    # subtrees as (name, tree id)). A tree holding a symlink or a refused file is left out: what those mean
    # depends on where the tree sits.
    trees: list[tuple[str, str, int, int, list[tuple[str, str]]]] = field(default_factory=list)


def walk_manifests(repo: Repo, commit: Commit, path: str = "manifests", max_bytes: int = 1 << 20,
                   known_tree: Callable[[str], list[tuple[str, str, Any]] | None] | None = None,
                   known_blobs: Callable[[list[tuple[str, str]]], dict[str, Any]] | None = None) -> Walk:
    """Decides which manifest files lie under `path` (the rules of list_manifests), comparing tree ids first: a
    tree `known_tree` knows is not opened, and a blob `known_blobs` knows (asked per tree with (blob id, path)
    pairs, answering by blob id) is not read."""
    root = posixpath.normpath(path.strip("/")) if path.strip("/") else ""
    if root == ".":
        root = ""
    out = Walk(sha=commit.id.decode())
    found = _lookup(repo, repo[commit.tree], root)
    if found is None or not stat.S_ISDIR(found[0]):
        out.problems.append(Problem(root or ".", None, "", f"no such directory in revision {out.sha[:12]}"))
        return out
    _walk_tree(repo, root, root, found[1], max_bytes, known_tree, known_blobs, out)
    return out


def _walk_tree(repo: Repo, root: str, dir_path: str, tree_sha: bytes, max_bytes: int, known_tree: Any,
               known_blobs: Any, out: Walk) -> bool:
    """Adds a tree's manifest files to `out` in path order; True when the tree may be cached."""
    tree_id = tree_sha.decode()
    prefix = f"{dir_path}/" if dir_path else ""
    listed = known_tree(tree_id) if known_tree is not None else None
    if listed is not None:
        out.files.extend(WalkedFile(prefix + rel, blob, None, known) for rel, blob, known in listed)
        return True
    start, clean, subtrees = len(out.files), True, []
    entries = sorted(repo[tree_sha].iteritems(), key=lambda e: e.path)
    known: dict[str, Any] = {}
    if known_blobs is not None:
        known = known_blobs([(e.sha.decode(), prefix + e.path.decode("utf-8", "surrogateescape")) for e in entries
                             if e.mode not in (S_IFLNK, S_IFGITLINK) and not stat.S_ISDIR(e.mode)
                             and e.path.endswith(MANIFEST_SUFFIXES_B)])
    for entry in entries:
        name = entry.path.decode("utf-8", "surrogateescape")
        rel = prefix + name
        mode = entry.mode
        if stat.S_ISDIR(mode):
            clean = _walk_tree(repo, root, rel, entry.sha, max_bytes, known_tree, known_blobs, out) and clean
            subtrees.append((name, entry.sha.decode()))
        elif mode == S_IFGITLINK:
            continue  # a submodule's content is not in this repository
        elif mode == S_IFLNK:
            clean = False
            target = repo[entry.sha].data.decode("utf-8", "surrogateescape")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
            inside = not target.startswith("/") and (
                root == "" and not resolved.startswith("..") or resolved == root or resolved.startswith(root + "/"))
            if not inside:
                out.problems.append(Problem(rel, None, "", f"symlink to {target!r} points outside {root or '.'}/"
                                                           " and is refused"))
        elif name.endswith(MANIFEST_SUFFIXES):
            blob_id = entry.sha.decode()
            if blob_id in known:
                out.files.append(WalkedFile(rel, blob_id, None, known[blob_id]))
                continue
            blob = repo[entry.sha]
            size = blob.raw_length()
            if size > max_bytes:
                clean = False
                out.problems.append(Problem(rel, None, "", f"file is {size} bytes, more than the limit of "
                                                           f"{max_bytes} bytes"))
                continue
            out.files.append(WalkedFile(rel, blob_id, blob.data))
    if clean:
        out.trees.append((tree_id, dir_path, start, len(out.files), subtrees))
    return clean
