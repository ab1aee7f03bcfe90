"""Which files a Git revision holds under a path, read with dulwich from a working tree or a bare repo."""
from __future__ import annotations

import posixpath
import stat
from dataclasses import dataclass, field

from dulwich.errors import NotGitRepository
from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.repo import Repo

from gitkube.api.errors import Problem

S_IFLNK = 0o120000
S_IFGITLINK = 0o160000
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json", ".yaml.age", ".yml.age", ".json.age")  # *.age: age-encrypted


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
