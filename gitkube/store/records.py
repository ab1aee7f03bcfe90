"""How a stored object's body is made from what its author wrote, for the etcd store: the rule the SQLite store's
_insert and _update_desired follow for uid, creationTimestamp, generation, resourceVersion and starting status."""
from __future__ import annotations

import json
import uuid
from collections.abc import Mapping

from gitkube.api.content import content_hash
from gitkube.store.db import DEFAULT_STATUS



def spec_hash_of(content: Mapping) -> str:
    return content_hash(content.get("spec"))


def inserted_body(kind: str, obj: Mapping, content: dict, ts: str, rv: int | None) -> dict:
    """Decides a new object's stored body: the author's content, a uid (kept if given), creationTimestamp,
    generation 1, the resourceVersion (None: the store sets it on read) and the kind's starting status."""
    uid = (obj.get("metadata") or {}).get("uid") or str(uuid.uuid4())
    created = (obj.get("metadata") or {}).get("creationTimestamp") or ts
    meta = dict(content["metadata"])
    meta.update(uid=uid, creationTimestamp=created, generation=1)
    if rv is not None:
        meta["resourceVersion"] = str(rv)
    body = {**content, "metadata": meta}
    status = DEFAULT_STATUS.get(kind)
    if status is not None:
        body["status"] = json.loads(json.dumps(status))
    return body


def updated_body(old: Mapping, old_spec_hash: str, content: dict, rv: int | None) -> tuple[dict, str]:
    """Decides an object's body after its author's content changed: uid and creationTimestamp kept, generation up
    by one when the spec changed, status kept, deletionTimestamp cleared. Returns (body, new spec hash)."""
    old_meta = old.get("metadata") or {}
    gen = int(old_meta.get("generation") or 1)
    new_spec_hash = spec_hash_of(content)
    if new_spec_hash != old_spec_hash:
        gen += 1
    meta = dict(content["metadata"])
    meta.update(uid=old_meta.get("uid"), creationTimestamp=old_meta.get("creationTimestamp"), generation=gen)
    if rv is not None:
        meta["resourceVersion"] = str(rv)
    new = {**content, "metadata": meta}
    if "status" in old:
        new["status"] = old["status"]
    return new, new_spec_hash
