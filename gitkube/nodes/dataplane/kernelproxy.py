"""The kernel proxy on a node (proxy mode `iptables`, as kube-proxy's): Services answered by the kernel's NAT rules
that `gitkube.reconcile.iptables` renders, with no userspace hop.

The rules are applied by a long-lived host-network container with NET_ADMIN and NET_RAW running Debian's
xtables-nft-multi (the NET_ADMIN path of `netprep`, kept running). Its /run/gk is a directory of the node
(`~/.gitkube/kube-proxy/<token>` of the SSH user, named in the container's label): a new rules file is written
there over SFTP, a line written to the FIFO `trigger` there (SIGHUP as the fallback) makes the container apply it
in one `iptables-restore --noflush` transaction, and it writes the file's tag and iptables' exit code to
`status`, read back over SFTP until the new tag shows.
Measured here under load: a short-lived container per change took 0.3-0.5 s, `docker exec` 0.13-0.25 s,
put_archive/get_archive 0.12-0.3 s each, a Docker kill call 30-80 ms; SFTP writes and reads take a few ms each.
Removing the rules (leaving the mode, or the fleet) is a one-shot container running the image's teardown.
"""
from __future__ import annotations

import logging
import time
import uuid

from gitkube.nodes.dataplane.netprep import NetPrepError, run_host_tool
from gitkube.nodes.images import app as appimages
from gitkube.nodes.transport.docker_api import ImageNotFound
from gitkube.nodes.transport.fleet import NodeHandle

log = logging.getLogger(__name__)

KERNEL_PROXY_NAME = "gitkube-kube-proxy"
KERNEL_PROXY_ROLE = "kube-proxy"
TEARDOWN_ROLE = "kube-proxy-teardown"
RULES_DIR = "/run/gk"  # inside the container; bind-mounted from the node directory named by DIR_LABEL
RULES_FILE = f"{RULES_DIR}/rules"
DIR_LABEL = "io.gitkube.kube-proxy.dir"
# How long new rules may take to show in the status before the proxy is signalled again, then restarted.
APPLY_SECONDS = 3.0


class KernelProxyError(Exception):
    """The node's rules could not be brought to the desired state; says why (iptables' own words)."""


def node_dir(h: NodeHandle) -> str:
    """A new directory on the node for one kernel-proxy container (its files never mix with another's)."""
    path = f"{h.ssh.home().rstrip('/')}/.gitkube/kube-proxy/{uuid.uuid4().hex[:16]}"
    h.ssh.make_dirs(path, 0o700)
    return path


def write_rules(h: NodeHandle, directory: str, text: str) -> None:
    """Put the rules file where the node's kernel proxy reads it."""
    h.ssh.write_file(f"{directory}/rules", text.encode())


def reload_rules(h: NodeHandle, cid: str, directory: str, text: str) -> None:
    """Write new rules and tell the proxy to apply them (in one transaction): a line to its trigger FIFO, over the
    same SFTP session (SIGHUP, a Docker call, is the fallback when the new rules do not show)."""
    write_rules(h, directory, text)
    try:
        h.ssh.append_file(f"{directory}/trigger", b"rules\n")
    except Exception as e:  # noqa: BLE001 - the signal does the same, slower
        log.info("node %s: writing the kernel proxy's trigger failed (%s); signalling it", h.name, e)
        h.docker.kill(cid, "SIGHUP")


def applied(h: NodeHandle, directory: str) -> tuple[str, int] | None:
    """The tag of the rules the node applied last and iptables' exit code (None: none applied yet)."""
    data = h.ssh.read_file(f"{directory}/status")
    parts = data.decode(errors="replace").split() if data else []
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
        return None
    return parts[0], int(parts[1])


def await_rules(h: NodeHandle, cid: str, directory: str, want: str) -> str | None:
    """Wait until the node reports the rules tagged `want` applied; signal again, then restart, if it does not.

    Returns None when the first signal took, else what it took; raises when iptables refuses the rules."""
    for attempt in ("", "signalled twice", "restarted"):
        if attempt == "signalled twice":
            log.warning("node %s: new rules not applied within %gs; signalling again", h.name, APPLY_SECONDS)
            h.docker.kill(cid, "SIGHUP")
        elif attempt == "restarted":
            log.warning("node %s: the kernel proxy still reports older rules; restarting it", h.name)
            h.docker.restart(cid, timeout=1)
        deadline = time.monotonic() + APPLY_SECONDS * (2 if attempt == "restarted" else 1)
        seen = None
        start = time.monotonic()
        while time.monotonic() < deadline:
            seen = applied(h, directory)
            if seen is not None and seen[0] == want:
                if seen[1] != 0:
                    err = (h.ssh.read_file(f"{directory}/error") or b"").decode(errors="replace").strip()
                    raise KernelProxyError(f"node {h.name}: iptables-restore refused the rules (exit {seen[1]}): "
                                           f"{err[-800:]}")
                return attempt or None
            # An apply takes 10-50 ms: look every 3 ms at first (a read costs ~1 ms), then every 20 ms.
            time.sleep(0.003 if time.monotonic() - start < 0.25 else 0.02)
    raise KernelProxyError(f"node {h.name}: the kernel proxy does not report the new rules {want!r} (it reports "
                           f"{seen!r}) even after a restart")


def sync_rules(h: NodeHandle, files: dict, c: dict | None, create, rules: str) -> dict:
    """Bring the node's kernel proxy to `rules`: create it (`create(directory)` gives a new container, not
    started), start a stopped one, or write and signal; `files` is what this process saw in effect."""
    tag = rules.split("\n", 1)[0].rsplit(" ", 1)[-1]
    if c is None:
        directory = node_dir(h)
        write_rules(h, directory, rules)
        cid = create(directory)
        h.docker.start(cid)
        await_rules(h, cid, directory, tag)
        files[(cid, RULES_FILE)] = tag
        return {KERNEL_PROXY_ROLE: "created"}
    cid, directory = c["Id"], (c.get("Labels") or {}).get(DIR_LABEL, "")
    out: dict = {}
    if c.get("State") != "running":
        files.pop((cid, RULES_FILE), None)
        h.docker.restart(cid, timeout=1)  # the loop applies the rules file at start
        out[KERNEL_PROXY_ROLE] = "started"
    known = files.get((cid, RULES_FILE))
    if known is None and not out:
        seen = applied(h, directory)
        known = seen[0] if seen is not None and seen[1] == 0 else ""
    if known != tag:
        reload_rules(h, cid, directory, rules)
        out.setdefault(KERNEL_PROXY_ROLE, "reloaded")
    if out:
        how = await_rules(h, cid, directory, tag)
        if how:
            out[KERNEL_PROXY_ROLE] = how
    files[(cid, RULES_FILE)] = tag  # only once it is in effect: a failed apply is tried again next pass
    return out


def forget_dir(h: NodeHandle, c: dict) -> None:
    """Remove a removed kernel-proxy container's node directory (best effort)."""
    directory = (c.get("Labels") or {}).get(DIR_LABEL)
    if directory and "/.gitkube/kube-proxy/" in directory:
        try:
            h.ssh.remove_tree(directory)
        except Exception as e:  # noqa: BLE001 - leftovers are a few small files
            log.info("node %s: could not remove %s: %s", h.name, directory, e)


def remove_rules(h: NodeHandle) -> str:
    """Remove gitkube's chains and the jumps into them from the node (a one-shot NET_ADMIN container)."""
    image = appimages.build("iptables")
    try:
        code, out = run_host_tool(h, ["/bin/sh", "/gk/teardown"], role=TEARDOWN_ROLE,
                                  cap_add=("NET_ADMIN", "NET_RAW"), image=image.ref)
    except ImageNotFound:
        for chunk in h.docker.load_image(image.data):
            if isinstance(chunk, dict) and chunk.get("error"):
                raise NetPrepError(f"node {h.name}: loading {image.ref}: {chunk['error']}") from None
        code, out = run_host_tool(h, ["/bin/sh", "/gk/teardown"], role=TEARDOWN_ROLE,
                                  cap_add=("NET_ADMIN", "NET_RAW"), image=image.ref)
    if code != 0:
        raise NetPrepError(f"node {h.name}: removing gitkube's iptables rules failed ({code}): {out.strip()[-500:]}")
    return "removed"
