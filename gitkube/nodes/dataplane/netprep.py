"""Node network preparation without an agent: which service addresses are bound on a node's `lo`.

A short-lived host-network busybox container with NET_ADMIN (`--privileged` fails on these hosts) runs a fixed
script; the addresses are its arguments, never part of a shell string. The addresses gitkube binds carry the
`lo:gk` label, so the script can tell them from the operator's and removes only its own leftovers.
"""
from __future__ import annotations

import ipaddress
import logging

from gitkube.nodes.transport.docker_api import APIError, ImageNotFound, NotFound
from gitkube.nodes.transport.fleet import NodeHandle
from gitkube.nodes.images.archive import BUSYBOX_IMAGE, MANAGED_LABEL, busybox_image

log = logging.getLogger(__name__)

ROLE_LABEL = "io.gitkube.role"
LO_LABEL = "lo:gk"

# $@: the addresses to hold. Prints `add IP` / `del IP` for what it changed, `have N` at the end.
LO_SCRIPT = r"""
set -e
want=" $* "
for cidr in $(ip -o -4 addr show dev lo label lo:gk | awk '{print $4}'); do
  a=${cidr%/*}
  case "$want" in *" $a "*) ;; *) ip addr del "$cidr" dev lo; echo "del $a" ;; esac
done
have=" $(ip -o -4 addr show dev lo | awk '{print $4}' | tr '\n' ' ') "
for a in "$@"; do
  case "$have" in *" $a/32 "*) ;; *) ip addr add "$a/32" dev lo label lo:gk; echo "add $a" ;; esac
done
echo "have $#"
"""


class NetPrepError(Exception):
    """The node's addresses could not be set; the message carries the container's output."""


def run_host_tool(h: NodeHandle, argv: list[str], role: str, cap_add: tuple[str, ...] = ("NET_ADMIN",),
                  image: str = BUSYBOX_IMAGE, timeout: float = 30.0) -> tuple[int, str]:
    """Run argv in a short-lived host-network container (removed afterwards); returns (exit code, output)."""
    d = h.docker
    kw = dict(name=None, command=argv, labels={MANAGED_LABEL: "true", ROLE_LABEL: role},
              host={"network_mode": "host", "cap_add": list(cap_add)}, network_disabled=False)
    try:
        cid = d.create(image, **kw)
    except ImageNotFound:
        if image != BUSYBOX_IMAGE:
            raise
        for chunk in d.load_image(busybox_image().data):
            if isinstance(chunk, dict) and chunk.get("error"):
                raise NetPrepError(f"node {h.name}: loading {image}: {chunk['error']}")
        cid = d.create(image, **kw)
    try:
        d.start(cid)
        res = d.wait(cid, timeout=timeout)
        out = d.logs(cid, stdout=True, stderr=True).decode(errors="replace")
        return int(res.get("StatusCode", -1)), out
    finally:
        try:
            d.remove(cid)
        except (NotFound, APIError):
            pass


def sync_lo_addresses(h: NodeHandle, addresses: list[str]) -> dict[str, list[str]]:
    """Make gitkube's /32 addresses on the node's `lo` exactly `addresses`; returns {"added": [...], "removed": [...]}."""
    addrs = sorted({str(ipaddress.IPv4Address(a)) for a in addresses}, key=ipaddress.IPv4Address)
    code, out = run_host_tool(h, ["sh", "-c", LO_SCRIPT, "gk-lo", *addrs], role="netprep")
    if code != 0:
        raise NetPrepError(f"node {h.name}: binding service addresses on lo failed ({code}): {out.strip()[-500:]}")
    added = [line[4:] for line in out.splitlines() if line.startswith("add ")]
    removed = [line[4:] for line in out.splitlines() if line.startswith("del ")]
    if added or removed:
        log.info("node %s: lo addresses +%s -%s", h.name, added, removed)
    return {"added": added, "removed": removed}
