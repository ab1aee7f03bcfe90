"""Where the controller gets ConfigMap and Secret values: from the revision it applies, held in memory only
(never the state DB), and, for a process whose current revision is refused, from the revision last applied."""
from __future__ import annotations

import logging

from gitkube.source import SourceError, load_revision
from gitkube.source.secrets import Identities

log = logging.getLogger(__name__)


def config_at_applied(store, source, identities: Identities) -> dict | None:
    """The values of the last applied revision (re-read from Git), or None when it cannot be read or decrypted
    (then pods that read config keep what they run, and new ones wait)."""
    sha = store.applied_revision()
    if not sha:
        return {}
    try:
        rev = load_revision(source.repo, sha, source.path, extra_files=(), identities=identities)
    except SourceError as e:
        log.warning("config of the applied revision %s cannot be read: %s", sha[:12], e)
        return None
    if rev.problems:
        log.warning("config of the applied revision %s cannot be read: %s", sha[:12], rev.problems[0])
        return None
    return rev.config
