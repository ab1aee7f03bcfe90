"""Which objects a Git revision (or a plain directory) declares, and every problem that refuses it."""
from __future__ import annotations

import os
from typing import Any

from gitkube.api import to_k8s
from gitkube.api.config import ConfigData, config_data, redact_model
from gitkube.api.content import CLUSTER_SCOPED, authored_content, content_hash, dict_key
from gitkube.api.errors import Problem
from gitkube.source.cache import ManifestCache, cacheable_path, open_cache
from gitkube.source.git import SourceError, Walk, open_repo, read_file, resolve, walk_manifests
from gitkube.source.loader import (DEFAULT_MAX_ALIAS_NODES, DEFAULT_MAX_BYTES, Entry, FileObjects, assemble,
                                   gc_paused, load_files, parse_file)
from gitkube.source.secrets import PLAINTEXT_MARKER, Identities, decrypt_files, is_encrypted_name

# Kinds whose content is never written to the manifest cache (it is kept in plain text).
SECRET_KINDS = frozenset({"Secret"})

__all__ = ["Revision", "SourceError", "load_revision", "load_directory", "load_files"]


class Revision:
    """A revision's desired objects; when `problems` is non-empty the revision is refused whole and has no objects.

    Objects read from the manifest cache are known by identity and hash first; their Kubernetes JSON and models
    are made only when asked for (`documents`, `objects`), so comparing an unchanged revision reads neither."""

    def __init__(self, sha: str | None, objects: list[Any] | None = None, problems: list[Problem] | None = None,
                 files: dict[str, bytes] | None = None,
                 origins: dict[tuple[str, str, str], tuple[str, int | None]] | None = None,
                 entries: list[Entry] | None = None, contents: _Contents | None = None,
                 config: dict[tuple[str, str, str], ConfigData] | None = None):
        self.sha = sha
        self.problems = list(problems or [])
        self.files = dict(files or {})
        # (kind, namespace, name) -> (file, line) where each object is defined
        self.origins = dict(origins or {}) if not self.problems else {}
        self._objects = None if entries is not None else list(objects or [])
        self.entries: list[Entry] = [] if self.problems else list(entries or [])
        self._contents = contents
        # (kind, namespace, name) -> the values of each ConfigMap and Secret (`objects` holds Secrets redacted)
        self.config = dict(config or {}) if not self.problems else {}

    @property
    def ok(self) -> bool:
        """Decides whether the revision is acceptable."""
        return not self.problems

    @property
    def objects(self) -> list[Any]:
        """The validated models, in file order."""
        if self._objects is None:
            self._fill(self.entries)
            self._objects = [e.obj() for e in self.entries]
        return self._objects

    def digests(self) -> dict[tuple[str, str, str], str]:
        """Per store key (kind, namespace or 'default', '' for cluster-scoped), the hash of the authored content."""
        if self._objects is not None and not self.entries:
            return {dict_key(d): content_hash(authored_content(d)) for d in map(to_k8s, self._objects)}
        return {_store_key(e): e.hash() for e in self.entries}

    def kinds(self) -> dict[str, int]:
        """How many objects of each kind the revision declares."""
        counts: dict[str, int] = {}
        for kind in (e.kind for e in self.entries) if self.entries else (o.kind for o in self.objects):
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def documents(self, skip: set | frozenset = frozenset()) -> list[dict]:
        """The objects' Kubernetes JSON in file order, but for those whose store key is in `skip`."""
        if self._objects is not None and not self.entries:
            return [d for d in map(to_k8s, self._objects) if dict_key(d) not in skip]
        wanted = [e for e in self.entries if _store_key(e) not in skip] if skip else self.entries
        self._fill(wanted)
        return [e.k8s() for e in wanted]

    def _fill(self, entries: list[Entry]) -> None:
        if self._contents is not None and any(e.doc is None and e.model is None for e in entries):
            self._contents.fill(entries)


def _store_key(e: Entry) -> tuple[str, str, str]:
    return e.kind, "" if e.kind in CLUSTER_SCOPED else (e.namespace or "default"), e.name


class _Contents:
    """Where the content of cached objects comes from when it is asked for: the cache, else the repository."""

    def __init__(self, repo: str, cache_dir: str | None, params: tuple, files: list[tuple[str, str, list[Entry]]]):
        self.repo, self.cache_dir, self.params, self.files = repo, cache_dir, params, files

    def fill(self, entries: list[Entry]) -> None:
        """Gives the entries (and the rest of their files) their Kubernetes JSON."""
        wanted = {id(e) for e in entries}
        files = [f for f in self.files if any(id(e) in wanted and e.doc is None and e.model is None for e in f[2])]
        cache = open_cache(self.cache_dir, self.params)
        try:
            if cache is not None:
                cache.fill_docs(files)
        finally:
            if cache is not None:
                cache.close()
        missing = [f for f in files if any(e.doc is None and e.model is None for e in f[2])]
        if not missing:
            return
        # The cache lost them in the meantime (damaged, removed): parse those files from the repository.
        r = open_repo(self.repo)
        try:
            for path, blob_id, old in missing:
                fresh = parse_file(path, r[blob_id.encode()].data, *self.params, with_docs=True)
                if fresh.problems or len(fresh.entries) != len(old):
                    raise SourceError(f"{path}: blob {blob_id} no longer reads as it did")
                for o, n in zip(old, fresh.entries):
                    o.model, o.doc = n.model, n.doc
        finally:
            r.close()


def load_revision(repo: str, rev: str | None = None, path: str = "manifests",
                  extra_files: tuple[str, ...] = ("inventory.yaml",), max_bytes: int = DEFAULT_MAX_BYTES,
                  max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES, identities: Identities | None = None,
                  cache_dir: str | None = None, reuse: Revision | None = None) -> Revision:
    """Decides which objects revision `rev` of `repo` declares under `path`; raises SourceError if the revision
    cannot be read. With `cache_dir` (a state dir), files and trees already parsed are taken from its manifest cache.
    `reuse`: a Revision this caller loaded before with the same arguments; returned as it is when `rev` still names
    its commit (a commit's content never changes), so an unchanged revision costs one ref lookup."""
    params = (max_bytes, max_alias_nodes)  # everything besides the bytes that decides what a file defines
    cache = None
    pause = gc_paused()
    pause.__enter__()
    try:
        r = open_repo(repo)
        try:
            commit = resolve(r, rev)
            if reuse is not None and reuse.sha == commit.id.decode():
                return reuse
            cache = open_cache(cache_dir, params)  # not before: an unchanged commit needs no cache
            walk = walk_manifests(r, commit, path, max_bytes, cache.tree if cache else None,
                                  cache.blobs if cache else None)
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
        parsed, undecryptable = _parse_walk(walk, cache, params, ids, plaintext_ok)
        loaded = assemble(sorted(parsed, key=lambda f: f.path))
        problems = sorted(walk.problems + undecryptable + loaded.problems,
                          key=lambda p: (p.path, p.line or 0, p.field, p.message))
        contents = _Contents(repo, cache_dir, params, [(w.path, w.blob, f.entries)
                                                       for w, f in zip(walk.files, parsed) if w.known is not None])
        config = _split_config(loaded.entries, ids, contents) if not problems else {}
        return Revision(walk.sha, None, problems, extras, loaded.origins, loaded.entries, contents, config)
    finally:
        if cache is not None:
            cache.close()
        pause.__exit__()


def _split_config(entries: list[Entry], ids: Identities, contents: _Contents | None) -> dict:
    """The values of every ConfigMap and Secret; each Secret's entry left with its values redacted."""
    config = {}
    wanted = [e for e in entries if e.kind in ("ConfigMap", "Secret")]
    if contents is not None and any(e.doc is None and e.model is None for e in wanted):
        contents.fill(wanted)
    for e in wanted:
        o = e.obj()
        config[(o.kind, o.metadata.namespace or "default", o.metadata.name)] = config_data(o, ids.digest_key)
        if e.kind == "Secret":  # never cached: its plain values live only in `config`
            e.model, e.doc, e.digest = redact_model(o, ids.digest_key), None, ""
    return config


def _parse_walk(walk: Walk, cache: ManifestCache | None, params: tuple, ids: Identities,
                plaintext_ok: bool) -> tuple[list[FileObjects], list[Problem]]:
    """Parses the files the cache did not know (in walk order; `*.age` ones decrypted first) and keeps the clean
    ones, and the clean trees, in it. Returns what each file defines and the files that could not be decrypted."""
    parsed: list[FileObjects] = []
    keep: list[bool] = []
    new_blobs = []
    undecryptable: list[Problem] = []
    for w in walk.files:
        if w.known is not None:
            parsed.append(FileObjects(w.path, w.known))
            keep.append(True)
            continue
        assert w.data is not None
        data = w.data
        if is_encrypted_name(w.path):
            plain, bad = decrypt_files([(w.path, data)], ids)
            if bad:
                undecryptable.extend(bad)
                parsed.append(FileObjects(w.path))
                keep.append(False)
                continue
            data = plain[0][1]
        f = parse_file(w.path, data, *params, with_docs=cache is not None, plaintext_secrets=plaintext_ok)
        parsed.append(f)
        ok = (cache is not None and not f.problems and cacheable_path(w.path)
              and not any(e.kind in SECRET_KINDS for e in f.entries))
        keep.append(ok)
        if ok:
            new_blobs.append((w.blob, w.path, f.entries))
    if cache is not None:
        cache.put_blobs(new_blobs)
        trees = []
        for tree_id, dir_path, start, end, subtrees in walk.trees:
            if all(keep[start:end]):
                cut = len(dir_path) + 1 if dir_path else 0
                own = [(walk.files[i].path[cut:], walk.files[i].blob, parsed[i].entries) for i in range(start, end)
                       if "/" not in walk.files[i].path[cut:]]
                trees.append((tree_id, own, subtrees))
        cache.put_trees(trees)
    return parsed, undecryptable


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
    config = _split_config(loaded.entries, ids, None) if not problems else {}
    return Revision(None, None, problems, {}, loaded.origins, loaded.entries, None, config)
