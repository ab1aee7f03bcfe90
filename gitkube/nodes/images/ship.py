"""Shipping images to nodes over SSH with no registry: skip a node that already has the image ID."""
from __future__ import annotations

import logging

from gitkube.nodes.transport.fleet import Fleet, NodeHandle
from gitkube.nodes.images.archive import ImageArchive

log = logging.getLogger(__name__)


def node_has(h: NodeHandle, archive: ImageArchive) -> bool:
    """Whether the node holds this exact image ID under this tag."""
    return h.docker.image_id(archive.ref) == archive.image_id


def ship(fleet: Fleet, archives: list[ImageArchive], progress=print, names: list[str] | None = None) -> dict[str, list[str]]:
    """Load each archive on every node that lacks it, in parallel per node; returns node -> refs loaded."""

    def one(h: NodeHandle) -> list[str]:
        loaded = []
        for a in archives:
            if node_has(h, a):
                continue
            progress(f"images: {h.name}: loading {a.ref} ({len(a.data) / 1e6:.1f} MB, {a.image_id[7:19]})")
            for chunk in h.docker.load_image(a.data):
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise RuntimeError(f"node {h.name}: loading {a.ref} failed: {chunk['error']}")
            if not node_has(h, a):
                raise RuntimeError(f"node {h.name}: {a.ref} is not {a.image_id} after loading")
            loaded.append(a.ref)
        return loaded

    res = fleet.map(one, names, timeout=600)
    errors = {n: r for n, r in res.items() if isinstance(r, Exception)}
    if errors:
        raise RuntimeError("; ".join(f"{n}: {e}" for n, e in sorted(errors.items())))
    return res  # type: ignore[return-value]
