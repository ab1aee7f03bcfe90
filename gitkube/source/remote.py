"""A local bare mirror of a remote repository, refreshed with dulwich (for `serve --repo URL`)."""
from __future__ import annotations

import os

from dulwich.client import get_transport_and_path
from dulwich.repo import Repo


def is_remote(repo: str) -> bool:
    """Whether --repo names a remote URL rather than a local path."""
    return "://" in repo or (repo.count(":") == 1 and "@" in repo.split(":")[0])


def sync_mirror(url: str, mirror: str) -> bool:
    """Fetch the remote's branches and tags into a bare mirror; returns whether any ref moved."""
    if not os.path.isdir(mirror):
        os.makedirs(mirror, exist_ok=True)
        repo = Repo.init_bare(mirror)
    else:
        repo = Repo(mirror)
    try:
        client, path = get_transport_and_path(url)
        result = client.fetch(path, repo)
        changed = False
        have = repo.refs.as_dict()  # dulwich's refs container has no .get()
        for ref, sha in (result.refs or {}).items():
            if sha is None or not (ref.startswith(b"refs/heads/") or ref.startswith(b"refs/tags/")):
                continue
            if have.get(ref) != sha:
                repo.refs[ref] = sha
                changed = True
        head = (result.symrefs or {}).get(b"HEAD")
        if head and repo.refs.read_ref(b"HEAD") != b"ref: " + head:
            repo.refs.set_symbolic_ref(b"HEAD", head)
            changed = True
        return changed
    finally:
        repo.close()
